"""Errors a service raises on purpose; the gRPC layer maps each to its status code.

Plain Python, so domain and application code can raise them without importing grpc. Anything
else that escapes a call is a bug and becomes INTERNAL (logged with its trace id)."""

from __future__ import annotations


class ServiceError(Exception):
    status = "UNKNOWN"

    def __init__(self, message: str, *, field: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason


class InvalidArgument(ServiceError):
    """Bad input. The message starts with the field's name and says why."""

    status = "INVALID_ARGUMENT"

    def __init__(self, field: str, reason: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}", field=field, reason=reason)


class NotFound(ServiceError):
    status = "NOT_FOUND"


class AlreadyExists(ServiceError):
    status = "ALREADY_EXISTS"


class PermissionDenied(ServiceError):
    """A known caller without the right for this data (rights beyond the method: proof types,
    purposes, departments)."""

    status = "PERMISSION_DENIED"


class FailedPrecondition(ServiceError):
    status = "FAILED_PRECONDITION"


class Unavailable(ServiceError):
    status = "UNAVAILABLE"


class StartupError(Exception):
    """A process cannot start (e.g. a malformed case type file): the message says what and
    where, and the process exits with it instead of a traceback."""
