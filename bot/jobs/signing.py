"""Callback URLs signed by us: the job in the query string with an HMAC of it. No timestamp:
the URL is part of Astria's prompt idempotency match, so every retry must send the same one."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import urlencode

from pydantic import SecretStr

CALLBACK_PATH = "/astria/callback"
SIGNATURE_HEX = 32  # characters of the HMAC kept in the URL (128 bits)
_SIGNATURE = re.compile(f"[0-9a-f]{{{SIGNATURE_HEX}}}")


def signature(key: SecretStr, job: str) -> str:
    digest = hmac.new(key.get_secret_value().encode(), job.encode(), hashlib.sha256)
    return digest.hexdigest()[:SIGNATURE_HEX]


def callback_url(public_base: str, key: SecretStr, job: str) -> str:
    """The URL Astria will POST to when `job` ("tune:12", "prompt:34") finishes."""
    query = urlencode({"job": job, "sig": signature(key, job)})
    return f"{public_base.rstrip('/')}{CALLBACK_PATH}?{query}"


def verified_job(key: SecretStr, query: Mapping[str, str]) -> str | None:
    """The job a callback's query names, if its signature is ours; else None. Anything
    that is not a signature of ours (another length, non-ASCII, garbage) is None too:
    `compare_digest` raises on non-ASCII text, so the shape is checked first."""
    job = query.get("job", "")
    given = query.get("sig", "")
    if not job or len(job) > 64 or not _SIGNATURE.fullmatch(given):
        return None
    expected = signature(key, job).encode("ascii")
    return job if hmac.compare_digest(expected, given.encode("ascii")) else None
