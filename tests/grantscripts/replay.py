"""Splitting a grant script into the statements a client sends, the way psql/mysql would read it."""

from __future__ import annotations


def split_statements(script: str) -> list[str]:
    """The script's statements (and psql `\\connect` lines), split on `;` outside quotes and comments.

    Why not line by line: a name may hold a newline, so one statement can span lines.
    """
    statements: list[str] = []
    buf: list[str] = []
    i, quote, at_line_start = 0, "", True
    while i < len(script):
        ch = script[i]
        if quote:
            buf.append(ch)
            if ch == quote:
                if i + 1 < len(script) and script[i + 1] == quote:
                    buf.append(script[i + 1])
                    i += 1
                else:
                    quote = ""
            i += 1
            continue
        if at_line_start and not "".join(buf).strip() and script.startswith("\\connect ", i):
            end = script.index("\n", i)
            statements.append(script[i:end])
            buf, i = [], end + 1
            continue
        if ch == "-" and script.startswith("--", i):
            end = script.find("\n", i)
            i = len(script) if end < 0 else end + 1
            at_line_start = True
            continue
        if ch in "'`\"[":
            quote = "]" if ch == "[" else ch
        if ch == ";":
            text = "".join(buf).strip()
            if text:
                statements.append(text)
            buf = []
        else:
            buf.append(ch)
        at_line_start = ch == "\n"
        i += 1
    assert not "".join(buf).strip(), f"unterminated statement: {''.join(buf)!r}"
    return statements
