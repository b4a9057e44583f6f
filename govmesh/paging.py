"""Keyset pagination as the services' List methods do it: a page size with a default and a cap,
and an opaque page token holding the (time, id) key of the last row given."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from typing import Final

from govmesh import clock
from govmesh.errors import InvalidArgument

DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 500


def page_size(requested: int, default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", "NEGATIVE", "must not be negative")
    return min(requested or default, maximum)


def encode_token(at: datetime.datetime, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([clock.as_utc(at).isoformat(), key]).encode()).decode()


def decode_token(token: str) -> tuple[datetime.datetime, str]:
    """The (time, id) a token holds; INVALID_ARGUMENT naming page_token for anything else."""
    try:
        at, key = json.loads(base64.urlsafe_b64decode(token.encode()))
        return clock.as_utc(datetime.datetime.fromisoformat(at)), str(key)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidArgument("page_token", "INVALID", "is not a token this service gave") from None


def encode_key_token(key: str) -> str:
    """A token for listings ordered by a key alone (e.g. zones by zone id)."""
    return base64.urlsafe_b64encode(json.dumps(["key", key]).encode()).decode()


def decode_key_token(token: str) -> str:
    """The key an :func:`encode_key_token` token holds; INVALID_ARGUMENT naming page_token otherwise."""
    try:
        kind, key = json.loads(base64.urlsafe_b64decode(token.encode()))
        if kind != "key" or not isinstance(key, str):
            raise ValueError(kind)
        return key
    except (ValueError, TypeError, binascii.Error):
        raise InvalidArgument("page_token", "INVALID", "is not a token this service gave") from None
