"""JSON bodies that every database backend can store, and that nothing downstream chokes on.

Why: PostgreSQL refuses NUL characters in text and jsonb, and no backend can
store a lone UTF-16 surrogate. Rejecting them at the parser turns what would
be a database error (a 500) into a 400 for every endpoint at once. The same
goes for nesting: a body nested thousands of levels deep makes ``json`` raise
RecursionError (a 500), and no WhaleFall body needs more than a few levels, so
anything deeper than ``MAX_DEPTH`` is refused before a serializer, a JSONField
or the database walks it. The walk is iterative, so it cannot overflow itself.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# Containers (objects and arrays) inside one another; {"options": {"k": [1]}} is 3 deep.
MAX_DEPTH = 64


def _unstorable_text(value: str) -> bool:
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check(data: Any) -> None:
    """Raise ParseError for a string no backend can store or nesting deeper than ``MAX_DEPTH``."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _unstorable_text(value):
                raise ParseError("JSON strings may not contain NUL characters or unpaired surrogates.")
        elif isinstance(value, dict | list):
            depth += 1
            if depth > MAX_DEPTH:
                raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels is not accepted.")
            if isinstance(value, dict):
                stack.extend((key, depth) for key in value)
                stack.extend((item, depth) for item in value.values())
            else:
                stack.extend((item, depth) for item in value)


class StrictJSONParser(JSONParser):
    """DRF's JSON parser plus a nesting limit and a check that every string is storable text."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            # json's decoder recurses once per level: far too deep to decode, let alone to check
            raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels is not accepted.") from None
        _check(data)
        return data
