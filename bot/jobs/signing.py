"""Callback URLs signed by us: the job in the query string with an HMAC of it. No timestamp:
the URL is part of Astria's prompt idempotency match, so every retry must send the same one."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlencode

from pydantic import SecretStr

CALLBACK_PATH = "/astria/callback"


def signature(key: SecretStr, job: str) -> str:
    digest = hmac.new(key.get_secret_value().encode(), job.encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def callback_url(public_base: str, key: SecretStr, job: str) -> str:
    """The URL Astria will POST to when `job` ("tune:12", "prompt:34") finishes."""
    query = urlencode({"job": job, "sig": signature(key, job)})
    return f"{public_base.rstrip('/')}{CALLBACK_PATH}?{query}"


def verified_job(key: SecretStr, query: Mapping[str, str]) -> str | None:
    """The job a callback's query names, if its signature is ours; else None."""
    job = query.get("job", "")
    given = query.get("sig", "")
    if not job or not given:
        return None
    return job if hmac.compare_digest(signature(key, job), given) else None
