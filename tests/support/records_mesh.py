"""Records' broker feed as a department's system uses it: a record, or any body, published on
records.ingest with the department's token, for the mesh tests of records and of its scaling."""

from __future__ import annotations

import pika
from google.protobuf import json_format

from govmesh.records.v1 import records_pb2
from tests.support.mesh import ServiceEnv


def publish_on_broker(env: ServiceEnv, record: records_pb2.DepartmentRecord, caller: str = "public_security") -> None:
    body = json_format.MessageToJson(record).encode()
    publish_raw(env, body, env.token(caller), record.department_code)


def publish_raw(
    env: ServiceEnv,
    body: bytes,
    token: str,
    department: str = "public_security",
    content_type: str | None = "application/json",
) -> None:
    """A message on records.ingest as a department sends it, whatever its body."""
    connection = pika.BlockingConnection(pika.URLParameters(env.env["AMQP_URI"]))
    channel = connection.channel()
    channel.confirm_delivery()
    properties = pika.BasicProperties(
        content_type=content_type, delivery_mode=2, headers={"authorization": f"Bearer {token}"}
    )
    channel.basic_publish("records.ingest", department, body, properties)
    connection.close()
