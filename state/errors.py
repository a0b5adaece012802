"""Errors the service layer raises; the app turns them into JSON responses."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400
    headers: dict[str, str] | None = None  # e.g. Retry-After on 429/503

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class TooManyJobs(ServiceError):
    status_code = 429


class Unavailable(ServiceError):
    status_code = 503


class SpecInvalid(ServiceError):
    """A spec that passes the schema but breaks a service rule (422, like schema errors)."""

    status_code = 422

    def __init__(self, field: str, detail: str):
        super().__init__(detail)
        self.field = field
