"""The part of grpcurl (github.com/fullstorydev/grpcurl) the README's walk-throughs use, so the
suite can run them as written on a machine without Go's grpcurl (neither Debian nor PyPI ships it).

Like grpcurl it knows nothing of govmesh: every message type comes from the server's reflection,
requests are proto3 JSON (`-d`, `-d @` for standard input; several objects in a row for a client
stream), each response is printed as indented proto3 JSON with lowerCamelCase names, and an error
status goes to standard error as `ERROR:` / `Code:` / `Message:` with exit code 64 + the code.
`list` and `list SERVICE` list what reflection offers.

Usage: python -m tests.support.grpcurl [-plaintext] [-H 'name: value']... [-d DATA] [-max-time S]
       ADDRESS (list [SERVICE] | SERVICE/METHOD)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

STATUS_CODE_OFFSET = 64  # grpcurl's: its exit code is 64 + the status code


def _arguments(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    options: dict[str, Any] = {"headers": [], "data": None, "max_time": None}
    rest: list[str] = []
    words = iter(argv)
    for word in words:
        if word in ("-plaintext", "--plaintext"):
            continue  # the only transport these walk-throughs use
        elif word in ("-H", "-rpc-header"):
            name, _, value = next(words).partition(":")
            options["headers"].append((name.strip().lower(), value.strip()))
        elif word == "-d":
            options["data"] = next(words)
        elif word == "-max-time":
            options["max_time"] = float(next(words))
        elif word.startswith("-"):
            raise SystemExit(f"grpcurl (the suite's): option {word} is not supported")
        else:
            rest.append(word)
    return options, rest


def _requests(data: str | None, request_type: type[Any]) -> Iterator[Any]:
    text = sys.stdin.read() if data == "@" else (data or "{}")
    decoder, position = json.JSONDecoder(), 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return
        body, position = decoder.raw_decode(text, position)
        yield json_format.ParseDict(body, request_type())


def main(argv: list[str]) -> int:
    options, rest = _arguments(argv)
    if not rest:
        raise SystemExit("grpcurl (the suite's): an address is required")
    channel = grpc.insecure_channel(rest[0])
    reflection = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(reflection)
    if rest[1:2] == ["list"]:
        if len(rest) == 2:
            print("\n".join(sorted(reflection.get_services())))
        else:
            service = pool.FindServiceByName(rest[2])
            print("\n".join(sorted(method.full_name for method in service.methods)))
        return 0
    service_name, _, method_name = rest[1].rpartition("/")
    method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    path = f"/{service_name}/{method_name}"
    serialize, deserialize = request_type.SerializeToString, response_type.FromString
    requests = _requests(options["data"], request_type)
    call = {
        (False, False): channel.unary_unary,
        (True, False): channel.stream_unary,
        (False, True): channel.unary_stream,
        (True, True): channel.stream_stream,
    }[(method.client_streaming, method.server_streaming)](
        path, request_serializer=serialize, response_deserializer=deserialize
    )
    try:
        answer = call(
            requests if method.client_streaming else next(requests, request_type()),
            metadata=options["headers"],
            timeout=options["max_time"],
        )
        for response in answer if method.server_streaming else [answer]:
            print(json_format.MessageToJson(response, indent=2, ensure_ascii=False), flush=True)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
        name = "".join(part.capitalize() for part in code.name.split("_"))
        print(f"ERROR:\n  Code: {name}\n  Message: {error.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return STATUS_CODE_OFFSET + code.value[0]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
