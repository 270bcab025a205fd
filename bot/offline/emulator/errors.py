"""The error answers the emulated API gives, as one exception the HTTP layer renders."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An answer other than success: HTTP status plus the JSON body Astria would send."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def invalid(errors: dict[str, list[str]]) -> ApiError:
    """422 with a Rails-style body: each field mapped to its messages."""
    return ApiError(422, dict(errors))


def bad_request(message: str) -> ApiError:
    return ApiError(400, {"error": message})


def not_found(what: str = "Record") -> ApiError:
    return ApiError(404, {"error": f"{what} not found"})
