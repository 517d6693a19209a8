"""JSON bodies that every database backend can store.

Why: PostgreSQL refuses NUL characters in text and jsonb, and no backend can
store a lone UTF-16 surrogate. Rejecting them at the parser turns what would
be a database error (a 500) into a 400 for every endpoint at once.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


class StrictJSONParser(JSONParser):
    """DRF's JSON parser plus a check that every string is storable text."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if not _storable(data):
            raise ParseError("JSON strings may not contain NUL characters or unpaired surrogates.")
        return data
