"""The scope grammar of the canonical snapshot, shared by its producer and every reader.

Why at the bottom of the stack: ``accountsync`` writes scopes (``database:sales``,
``object:sales.public."a.b"``), and the admin kit, exports and findings read them.
Keeping the grammar here lets a reader split a scope without importing the sync
engine, so the layers keep pointing one way.
"""

from __future__ import annotations

ROLE_SCOPE = "role"
CAPABILITY_SCOPE = "capability"
ATTRIBUTE_SCOPE = "attribute"
# privilege scope levels, broadest first (the order the account page groups them in)
SCOPE_LEVELS = ("global", "database", "schema", "object", "column", "routine")


def split_scope(scope: str) -> tuple[str, list[str]]:
    """Split `level:part.part` into its level and unquoted parts (a part with `.` or `"` is double-quoted)."""
    if ":" not in scope:
        return scope, []
    level, rest = scope.split(":", 1)
    parts: list[str] = []
    buf: list[str] = []
    i, quoted = 0, False
    while i < len(rest):
        ch = rest[i]
        if quoted:
            if ch == '"' and i + 1 < len(rest) and rest[i + 1] == '"':
                buf.append('"')
                i += 1
            elif ch == '"':
                quoted = False
            else:
                buf.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == ".":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return level, parts
