"""Status objects (the API server's error bodies) and the HTTP error type carrying them.

This module owns the mapping from HTTP code to Status ``reason``.
"""

from __future__ import annotations

from typing import Any

REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
    415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}


def status(code: int, message: str, reason: str | None = None,
           details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``Status`` object with status Failure."""
    out: dict[str, Any] = {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason or REASONS.get(code, "Unknown"),
    }
    if details:
        out["details"] = details
    out["code"] = code
    return out


class ApiError(Exception):
    """Raised by request handling; the server answers it as a Status with that code."""

    def __init__(self, code: int, message: str, reason: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.body = status(code, message, reason, details)


class Conflict(ApiError):
    """A write whose resourceVersion is stale (409): read again and retry."""


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    qual = f"{resource}.{group}" if group else resource
    return ApiError(404, f'{qual} "{name}" not found',
                    details={"name": name, "group": group, "kind": resource} if group
                    else {"name": name, "kind": resource})
