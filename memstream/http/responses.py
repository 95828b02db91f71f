"""Responses of the HTTP API: JSON encoded by msgspec, and the one error shape."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

__all__ = ["MsgspecResponse", "error"]

_encoder = msgspec.json.Encoder()


class MsgspecResponse(Response):
    """A JSON response encoded by msgspec (Structs, datetimes as RFC 3339)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def error(status: int, error: str, message: str, **extra: Any) -> MsgspecResponse:
    """An error: ``error`` (a code a program can switch on), ``message`` (a sentence naming
    the field or memory and the fix), and any more fields."""
    headers = extra.pop("headers", None)
    return MsgspecResponse({"error": error, "message": message, **extra}, status, headers)
