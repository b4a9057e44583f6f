"""The negative credit record a default leaves is one records accepts: the health commission's
medical_credit_default, by subject id, keyed by the bill id, dated in the province's calendar."""

from __future__ import annotations

import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from govmesh.health.v1 import events_pb2
from govmesh.typed_values import fields_from_proto
from services.health import clients
from services.records.domain import catalogue


def defaulted(at: datetime.datetime) -> events_pb2.BillDefaulted:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return events_pb2.BillDefaulted(
        bill_id="3f2c1d7e-8a8b-4c55-9d1e-0a6b2f4c9e10",
        account_id="a1",
        subject_id="sub_" + "a" * 52,
        masked_identifier="330183********242X",
        hospital_id="H330100001",
        outstanding_fen=80_000,
        defaulted_at=stamp,
    )


def test_the_default_record_is_a_valid_health_commission_record() -> None:
    # 17:30 UTC is 01:30 the next day in Hangzhou: the record is dated by the province's day.
    record = clients.default_record(defaulted(datetime.datetime(2019, 3, 19, 17, 30, tzinfo=datetime.UTC)))
    spec = catalogue.record_type(record.department_code, record.record_type)
    assert spec is not None
    fields = fields_from_proto(record.fields)
    assert catalogue.validate_fields(spec, fields) == []
    assert fields == {
        "bill_reference": "3f2c1d7e-8a8b-4c55-9d1e-0a6b2f4c9e10",
        "hospital": "H330100001",
        "amount_fen": 80_000,
        "defaulted_on": datetime.date(2019, 3, 20),
    }
    assert (record.department_code, record.record_type) == ("health_commission", "medical_credit_default")
    assert record.WhichOneof("subject") == "subject_id" and record.subject_id.startswith("sub_")
    assert record.source_reference == "3f2c1d7e-8a8b-4c55-9d1e-0a6b2f4c9e10"
    assert record.effective_from == "2019-03-20"
    assert record.recorded_at.ToDatetime(datetime.UTC) == datetime.datetime(2019, 3, 19, 17, 30, tzinfo=datetime.UTC)


def test_the_same_default_gives_the_same_record() -> None:
    event = defaulted(datetime.datetime(2019, 3, 19, 8, 0, tzinfo=datetime.UTC))
    assert clients.default_record(event) == clients.default_record(event)
