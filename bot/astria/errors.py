"""Errors of the Astria API layer, at the grain a caller acts on.

Messages carry the method, path, status and Astria's own words, never a request header:
the API key must not reach a log line or a user through an exception.
"""

from __future__ import annotations


class AstriaError(Exception):
    """Anything that went wrong talking to Astria."""

    #: True when a create may have taken effect at Astria although we got no answer.
    ambiguous: bool = False
    #: True when repeating the same request later may succeed.
    retryable: bool = False
    #: Astria's own words, without our method, route or status: what a member may read.
    detail: str = ""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AstriaValidationError(AstriaError):
    """422: Astria refused the request's fields. Never retried."""

    def __init__(self, message: str, fields: dict[str, list[str]], *, status: int = 422) -> None:
        super().__init__(message, status=status)
        self.fields = fields

    def plain(self) -> str:
        """The field messages as one sentence a member can read."""
        parts = []
        for field, messages in self.fields.items():
            text = "; ".join(messages)
            parts.append(text if field in ("base", "error", "message") else f"{field} {text}")
        return ". ".join(parts) or self.message


class AstriaBadRequest(AstriaError):
    """400 or another 4xx we do not handle specially (for example an offset past the limit)."""


class AstriaAuthError(AstriaError):
    """401/403: the key is missing, wrong or revoked."""


class AstriaNotFound(AstriaError):
    """404: the object does not exist (deleted, expired, or never ours)."""


class AstriaPaymentRefused(AstriaError):
    """The account cannot pay for this: a 402, or a 422 saying so. The real status code is
    undocumented. Nothing was created."""


class AstriaRateLimited(AstriaError):
    """429: slow down; `retry_after` is Astria's Retry-After in seconds, when given."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None, status: int = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class AstriaServerError(AstriaError):
    """500 and other 5xx: retried with backoff; a create may have happened."""

    ambiguous = True
    retryable = True


class AstriaUnavailable(AstriaServerError):
    """503, or retries exhausted: Astria cannot be reached for now."""


class AstriaGatewayTimeout(AstriaServerError):
    """504: Astria's 30 s limit ran out; the request was probably processed."""


class AstriaConnectionLost(AstriaError):
    """The connection dropped or timed out before an answer; a create may have happened."""

    ambiguous = True
    retryable = True


class AstriaTimeout(AstriaConnectionLost):
    """No answer within the request timeout."""


class AstriaBadResponse(AstriaError):
    """Astria answered with something we cannot read (not JSON, or not the expected shape)."""
