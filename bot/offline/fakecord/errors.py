"""Discord's error answers: an HTTP status plus a JSON body with a numeric code."""

from __future__ import annotations

from typing import Any


class DiscordError(Exception):
    """Raised by handlers; the server renders it as `{"code": ..., "message": ...}`."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


class DriverError(Exception):
    """A driver call that no Discord client would let a member make."""


def unknown(what: str, code: int) -> DiscordError:
    return DiscordError(404, code, f"Unknown {what}")


def unknown_channel() -> DiscordError:
    return unknown("Channel", 10003)


def unknown_message() -> DiscordError:
    return unknown("Message", 10008)


def unknown_interaction() -> DiscordError:
    return DiscordError(404, 10062, "Unknown interaction")


def invalid_form(field: str, code: str, message: str) -> DiscordError:
    errors = {field: {"_errors": [{"code": code, "message": message}]}}
    return DiscordError(400, 50035, "Invalid Form Body", errors)


def missing_permissions() -> DiscordError:
    return DiscordError(403, 50013, "Missing Permissions")


def too_large() -> DiscordError:
    return DiscordError(413, 40005, "Request entity too large")


def archived_thread() -> DiscordError:
    return DiscordError(400, 50083, "Thread is archived")


def not_text() -> DiscordError:
    return DiscordError(400, 50008, "Cannot send messages in a non-text channel")


def missing_access() -> DiscordError:
    return DiscordError(403, 50001, "Missing Access")
