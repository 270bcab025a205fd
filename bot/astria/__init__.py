"""The Astria API layer: an async client, its models and its errors. Knows no Discord."""

from bot.astria.client import AstriaClient, RetryPolicy
from bot.astria.errors import (
    AstriaAuthError,
    AstriaBadRequest,
    AstriaBadResponse,
    AstriaConnectionLost,
    AstriaError,
    AstriaGatewayTimeout,
    AstriaNotFound,
    AstriaPaymentRefused,
    AstriaRateLimited,
    AstriaServerError,
    AstriaTimeout,
    AstriaUnavailable,
    AstriaValidationError,
)
from bot.astria.limiter import Limiter, RequestLimiter
from bot.astria.models import (
    Pack,
    Prompt,
    PromptRequest,
    Tune,
    TuneRequest,
    User,
    parse_callback,
    unwrap,
)

__all__ = [
    "AstriaAuthError",
    "AstriaBadRequest",
    "AstriaBadResponse",
    "AstriaClient",
    "AstriaConnectionLost",
    "AstriaError",
    "AstriaGatewayTimeout",
    "AstriaNotFound",
    "AstriaPaymentRefused",
    "AstriaRateLimited",
    "AstriaServerError",
    "AstriaTimeout",
    "AstriaUnavailable",
    "AstriaValidationError",
    "Limiter",
    "Pack",
    "Prompt",
    "PromptRequest",
    "RequestLimiter",
    "RetryPolicy",
    "Tune",
    "TuneRequest",
    "User",
    "parse_callback",
    "unwrap",
]
