"""Request bodies into nested params: Rails-style form keys, multipart streamed, or JSON."""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from bot.offline.emulator.errors import ApiError, bad_request
from bot.offline.emulator.images import PhotoFacts, is_image, photo_facts

# Form fields are short; anything bigger is a client bug, not a prompt.
MAX_FIELD_BYTES = 256 * 1024

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


@dataclass(frozen=True)
class Upload:
    """A file part, already checked: its bytes are not kept, so memory stays bounded."""

    index: int
    filename: str
    size: int
    valid: bool
    too_large: bool
    facts: PhotoFacts | None = None  # when valid: format, size, metadata found
    sha256: str = ""  # of the bytes received, so a test can tell which file arrived


def split_key(key: str) -> list[str]:
    """`tune[prompts_attributes][][text]` -> ["tune", "prompts_attributes", "", "text"]."""
    match = _KEY.match(key)
    if match is None:
        return [key]
    return [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]


def _has_key(target: dict[str, Any], segments: list[str]) -> bool:
    value: Any = target
    for segment in segments:
        if not isinstance(value, dict) or segment not in value:
            return False
        value = value[segment]
    return True


def _conflict(key: str) -> ApiError:
    return bad_request(f"conflicting form keys at {key!r}")


def put(target: dict[str, Any], segments: list[str], value: Any) -> None:
    """Store value under the key path the way Rack does, `[]` meaning "append"."""
    head, rest = segments[0], segments[1:]
    if not rest:
        target[head] = value
        return
    if rest[0] == "":
        array = target.setdefault(head, [])
        if not isinstance(array, list):
            raise _conflict(head)
        if len(rest) == 1:
            array.append(value)
            return
        # `a[][x]=1&a[][y]=2` fills one hash until a key repeats, then starts the next.
        last = array[-1] if array else None
        if isinstance(last, dict) and not _has_key(last, rest[1:]):
            put(last, rest[1:], value)
        else:
            item: dict[str, Any] = {}
            put(item, rest[1:], value)
            array.append(item)
        return
    child = target.setdefault(head, {})
    if not isinstance(child, dict):
        raise _conflict(head)
    put(child, rest, value)


def indexed_to_lists(value: Any) -> Any:
    """Rails accepts `a[0][x]` for arrays of hashes too; turn such hashes into lists."""
    if isinstance(value, dict):
        converted = {key: indexed_to_lists(item) for key, item in value.items()}
        if converted and all(key.isdigit() for key in converted):
            return [converted[key] for key in sorted(converted, key=int)]
        return converted
    if isinstance(value, list):
        return [indexed_to_lists(item) for item in value]
    return value


def _tidy(params: dict[str, Any]) -> dict[str, Any]:
    tidy = indexed_to_lists(params)
    if not isinstance(tidy, dict):
        raise bad_request("the form's top-level keys must be names, not indexes")
    return tidy


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk():
        data.extend(chunk)
        if len(data) > MAX_FIELD_BYTES:
            raise ApiError(413, {"error": f"form field {part.name!r} is too large"})
    return data.decode("utf-8", errors="replace")


async def _read_file(part: BodyPartReader, index: int, cap: int) -> Upload:
    buffer = io.BytesIO()
    size = 0
    while chunk := await part.read_chunk():
        size += len(chunk)
        if size > cap:
            # Drain the rest to the void so the answer can still be a clean 422.
            await part.release()
            return Upload(index, part.filename or "", size, valid=False, too_large=True)
        buffer.write(chunk)
    data = buffer.getvalue()
    valid = is_image(data)
    facts = photo_facts(data) if valid else None
    digest = hashlib.sha256(data).hexdigest()
    return Upload(
        index, part.filename or "", size, valid, too_large=False, facts=facts, sha256=digest
    )


async def _read_multipart(request: web.Request, max_file_bytes: int) -> dict[str, Any]:
    params: dict[str, Any] = {}
    file_counts: dict[str, int] = {}
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or part.name is None:
            await part.release()
            continue
        if part.filename is not None:
            index = file_counts.get(part.name, 0)
            file_counts[part.name] = index + 1
            value: Any = await _read_file(part, index, max_file_bytes)
        else:
            value = await _read_field(part)
        put(params, split_key(part.name), value)
    return params


async def read_params(request: web.Request, max_file_bytes: int) -> dict[str, Any]:
    """The request's body as nested params, whatever the content type."""
    content_type = request.content_type
    try:
        if content_type == "multipart/form-data":
            return _tidy(await _read_multipart(request, max_file_bytes))
        if content_type == "application/x-www-form-urlencoded":
            params: dict[str, Any] = {}
            for key, value in (await request.post()).items():
                put(params, split_key(key), value)
            return _tidy(params)
        if content_type == "application/json" or content_type.endswith("+json"):
            body = await request.json()
            if not isinstance(body, dict):
                raise bad_request("the JSON body must be an object")
            return body
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body could not be parsed: {exc}") from exc
    except ValueError as exc:
        # aiohttp raises ValueError for malformed multipart framing.
        raise bad_request(f"the body could not be parsed: {exc}") from exc
    return {}
