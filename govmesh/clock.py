"""The one clock every service reads. Production reads the system clock; tests that must see
what happens 48 hours or 3 working days later move it forward by writing an offset in seconds
to the file named by GOVMESH_CLOCK_OFFSET_FILE (never set in production: `make run` does not)."""

from __future__ import annotations

import datetime
import os
import zoneinfo
from typing import overload

from google.protobuf.timestamp_pb2 import Timestamp

_cache: tuple[float, float] = (-1.0, 0.0)  # (file mtime, offset seconds)


def _offset() -> float:
    global _cache
    path = os.environ.get("GOVMESH_CLOCK_OFFSET_FILE")
    if not path:
        return 0.0
    try:
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0
    if mtime != _cache[0]:
        with open(path, encoding="ascii") as handle:
            _cache = (mtime, float(handle.read().strip() or 0))
    return _cache[1]


def now() -> datetime.datetime:
    """The current time, UTC, aware."""
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=_offset())


SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def shanghai_date(moment: datetime.datetime | None = None) -> datetime.date:
    """The province's calendar day at `moment` (default: now): storage is UTC, people and the
    law count days in Asia/Shanghai. A naive datetime is refused: it could be UTC or Shanghai."""
    if moment is None:
        moment = now()
    if not isinstance(moment, datetime.datetime):
        raise TypeError("moment must be an aware datetime.datetime")
    if moment.utcoffset() is None:
        raise ValueError("moment must be timezone-aware (a naive datetime could be UTC or Asia/Shanghai)")
    return moment.astimezone(SHANGHAI).date()


@overload
def as_utc(moment: datetime.datetime) -> datetime.datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime.datetime | None) -> datetime.datetime | None:
    """An aware datetime (None stays None: a time not reached yet); SQLite gives stored times
    back naive, and they were stored in UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


@overload
def timestamp(moment: datetime.datetime) -> Timestamp: ...
@overload
def timestamp(moment: None) -> None: ...
def timestamp(moment: datetime.datetime | None) -> Timestamp | None:
    """``moment`` as the contracts' google.protobuf.Timestamp (None stays None: unset)."""
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(as_utc(moment))
    return stamp
