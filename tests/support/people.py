"""The people and enterprises of the seed's province the tests talk about, with valid
identifiers (tests/unit/identity checks they stay valid), helpers to make more, and the record
most tests publish about them."""

from __future__ import annotations

import datetime
import time
import uuid
from typing import Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from govmesh.records.v1 import records_pb2

XU_WEI = "330106198507154313"  # the Hangzhou ride-hailing driver (Xihu district)
LUO_FANG = "33018319720303242X"  # the Fuyang patient
ZHUJI_RESIDENT = "330681199001011237"  # a resident of Zhuji, where housing transfers take an hour
LEGACY_15 = "330106900307123"  # a legacy 15-digit number ...
LEGACY_15_AS_18 = "330106199003071236"  # ... and its 18-character form
ENTERPRISE = "91330106MA27XL0E9W"  # an enterprise registered in Hangzhou's Xihu district
RAW_IDS = [XU_WEI, LUO_FANG, ZHUJI_RESIDENT, LEGACY_15, LEGACY_15_AS_18, ENTERPRISE]
#: One of each kind of character no kept text may hold: C0 controls (NUL, BEL, ESC, and the tab
#: and newline a one-line text refuses), DEL, C1 controls (NEL, CSI), bidi overrides and isolates
#: (U+202E, U+2066, U+2069), a zero-width space, the line separator and the byte order mark.
CONTROL_AND_FORMAT_CHARACTERS = (
    "\x00", "\x07", "\x1b", "\t", "\n", "\x7f", "\x85", "\x9b",
    "\u202e", "\u2066", "\u2069", "\u200b", "\u2028", "\ufeff",
)  # fmt: skip


def resident_id(body17: str) -> str:
    """`body17` with its ISO 7064 MOD 11-2 check character."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body17 + "10X98765432"[sum(int(c) * w for c, w in zip(body17, weights, strict=True)) % 11]


def with_wrong_check(identifier: str) -> str:
    return identifier[:-1] + ("0" if identifier[-1] != "0" else "1")


def health_status(target: str, service: str = "") -> int:
    """What grpc.health.v1 answers at ``target`` for ``service`` ("" is the process as a whole)."""
    with grpc.insecure_channel(target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(response.status)


def wait_serving(target: str, service: str, timeout: float = 30) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"{target} did not become SERVING in {timeout}s")


_USCC_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)


def credit_code(region: str, serial: int) -> str:
    """A valid unified social credit code (GB 32100) of a company registered by market regulation
    (91) in ``region``; ``serial`` picks the organisation code (MA + 6 characters, GB 11714)."""
    org = "MA" + "".join(_USCC_ALPHABET[serial // 31**i % 31] for i in range(6))
    org_check = 11 - sum(int(ch, 36) * w for ch, w in zip(org, _ORG_WEIGHTS, strict=True)) % 11
    body = "91" + region + org + {10: "X", 11: "0"}.get(org_check, str(org_check))
    total = sum(_USCC_ALPHABET.index(ch) * w for ch, w in zip(body, _USCC_WEIGHTS, strict=True))
    return body + _USCC_ALPHABET[-total % 31]


def typed(value: object) -> records_pb2.TypedValue:
    """A record field's value as a department sends it."""
    # bool before int: a bool is an int in Python.
    if isinstance(value, bool):
        return records_pb2.TypedValue(bool_value=value)
    if isinstance(value, int):
        return records_pb2.TypedValue(int_value=value)
    if isinstance(value, datetime.date):
        return records_pb2.TypedValue(date_value=value.isoformat())
    if isinstance(value, list):
        return records_pb2.TypedValue(list_value=records_pb2.TypedValueList(values=[typed(v) for v in value]))
    return records_pb2.TypedValue(string_value=str(value))


def licence(
    identifier: str, reference: str | None = None, first_issued: str = "2015-03-01"
) -> records_pb2.DepartmentRecord:
    """Public security's driving licence record of a person: the record most tests publish."""
    return records_pb2.DepartmentRecord(
        department_code="public_security",
        record_type="driving_licence",
        subject_identifier=identifier,
        subject_display_name="徐伟",
        source_reference=reference or f"DL-{uuid.uuid4().hex[:10]}",
        effective_from=first_issued,
        fields={
            "licence_class": typed("C1"),
            "first_issued": typed(datetime.date.fromisoformat(first_issued)),
            "valid_from": typed(datetime.date(2021, 3, 1)),
            "valid_until": typed(datetime.date(2031, 3, 1)),
            "status": typed("valid"),
        },
    )
