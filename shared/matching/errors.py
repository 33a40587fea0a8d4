"""Order and request rejections, each carrying a code from Delta's error table (api spec §3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class VenueError(Exception):
    """A rejection the venue answers as {"success": false, "error": {"code", "context"}}."""

    def __init__(self, code: str, context: Mapping[str, Any] | None = None, status: int = 400) -> None:
        self.code = code
        self.context = dict(context or {})
        self.status = status
        super().__init__(f"{code} {self.context}" if self.context else code)


def bad_schema(message: str, param: str = "") -> VenueError:
    """Delta's validation failure shape: context.schema_errors[{code, message, param}]."""
    return VenueError("bad_schema", {"schema_errors": [
        {"code": "validation_error", "message": message, "param": param}]})
