"""Deterministic nonces: the same event key always gives the same nonce, so a repeated
send after a crash is deduplicated by Discord (for a few minutes, with enforce_nonce)."""

from __future__ import annotations

import base64
import hashlib

MAX_NONCE = 25  # Discord's limit for a string nonce


def nonce_for(key: str, part: int = 0) -> str:
    """A nonce for the `part`-th message of the event `key` (results may span messages)."""
    digest = hashlib.sha256(f"{key}#{part}".encode()).digest()
    return base64.b32encode(digest).decode().rstrip("=").lower()[:MAX_NONCE]


def marker(action: str, job_id: int) -> str:
    """The custom_id carried by a result's buttons: `job:<action>:<id>`; after a restart,
    a post already in the channel is found by it."""
    return f"job:{action}:{job_id}"
