"""Reading Segmind's answers: numeric and text headers, and error bodies of any shape."""

from __future__ import annotations

import json
import logging
import math
import re

import httpx

log = logging.getLogger(__name__)

ERROR_TEXT_LIMIT = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def header_float(headers: httpx.Headers, name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        log.warning("Ignoring non-numeric %s header", name)
        return None
    return value if math.isfinite(value) else None


def header_int(headers: httpx.Headers, name: str) -> int | None:
    value = header_float(headers, name)
    return int(value) if value is not None and value.is_integer() else None


def header_text(headers: httpx.Headers, name: str) -> str | None:
    raw = headers.get(name)
    if raw is None:
        return None
    return _CONTROL.sub("", raw)[:100] or None


def error_text(response_body: bytes, secret: str) -> str:
    """The API's reason from an error body of any shape, short, printable, secret-free."""
    text = response_body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            value = data.get(key)
            if isinstance(value, str | int | float):
                text = str(value)
                break
    elif text.lstrip().startswith("<"):
        text = ""  # an HTML error page says nothing useful to a member
    # Mask before cutting, so no fragment of an echoed key survives the length limit.
    text = _CONTROL.sub(" ", text).replace(secret, "***").strip()
    return text[:ERROR_TEXT_LIMIT]


def retry_after(headers: httpx.Headers, limit: float) -> float | None:
    value = header_float(headers, "retry-after")
    if value is None or value < 0:
        return None
    return min(value, limit)
