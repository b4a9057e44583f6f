"""The negative credit record a default leaves: a department record of the health commission,
``medical_credit_default`` (services/records/catalogue.py), published on records' broker feed.

The worker takes health's own ``bill_defaulted`` event (committed with the default, in the outbox)
and publishes this record with publisher confirms; only once the broker confirmed is the event
acknowledged, so a crash or a broker outage redelivers the event and the record is published again.
The record's ``source_reference`` is the bill id: records' idempotency key (department, source
reference) makes every publication after the first a duplicate it ignores. The subject is named by
its pseudonymous subject id, never by an identifier. (No grpc here: the worker imports it.)"""

from __future__ import annotations

import datetime
import threading

import amqp
from google.protobuf import json_format

from govmesh import clock, tracing
from govmesh.auth import ServiceCredentials
from govmesh.health.v1 import events_pb2
from govmesh.messaging import CONTENT_TYPE, ConfirmingPublisher
from govmesh.records.v1 import records_pb2
from govmesh.typed_values import Value, fields_to_proto

INGEST_EXCHANGE = "records.ingest"
DEPARTMENT = "health_commission"
RECORD_TYPE = "medical_credit_default"


def default_record(event: events_pb2.BillDefaulted) -> records_pb2.DepartmentRecord:
    """The health commission's record of a defaulted bill, dated in the province's calendar."""
    defaulted_on = clock.shanghai_date(event.defaulted_at.ToDatetime(datetime.UTC))
    fields: dict[str, Value] = {
        "bill_reference": event.bill_id,
        "amount_fen": event.outstanding_fen,
        "defaulted_on": defaulted_on,
    }
    if event.hospital_id:
        fields["hospital"] = event.hospital_id
    record = records_pb2.DepartmentRecord(
        department_code=DEPARTMENT,
        record_type=RECORD_TYPE,
        subject_id=event.subject_id,
        source_reference=event.bill_id,
        fields=fields_to_proto(fields),
        effective_from=defaulted_on.isoformat(),
    )
    record.recorded_at.CopyFrom(event.defaulted_at)
    return record


class RecordsFeed:
    """Publishes department records on records.ingest as the caller of ``credentials``, one
    persistent message per record, returning once the broker confirmed it; a record no queue
    would take yet (records' feed queue not declared) raises BrokerUnavailable."""

    def __init__(self, amqp_uri: str, credentials: ServiceCredentials, confirm_timeout: float = 10.0) -> None:
        self.credentials = credentials
        self.publisher = ConfirmingPublisher(amqp_uri, "health", confirm_timeout)
        # One channel, one confirm at a time: handlers run side by side in the worker.
        self._lock = threading.Lock()

    def publish(self, record: records_pb2.DepartmentRecord) -> None:
        headers: dict[str, object] = {"authorization": self.credentials.authorization()}
        tracing.inject_headers(headers)
        message = amqp.Message(
            json_format.MessageToJson(record, indent=None, sort_keys=True),
            content_type=CONTENT_TYPE,
            content_encoding="utf-8",
            delivery_mode=2,
            message_id=f"{record.department_code}:{record.source_reference}",
            type=record.DESCRIPTOR.full_name,
            application_headers=headers,
        )
        with self._lock:
            self.publisher.publish_mandatory(INGEST_EXCHANGE, record.department_code, message)

    def close(self) -> None:
        self.publisher.close()
