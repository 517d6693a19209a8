"""Quoting of hostile names per family, and comments that a name cannot end."""

from __future__ import annotations

import pytest

from accountsync.adapters.mysql import account_identity
from grantscripts.quoting import (
    bracket_ident,
    comment_text,
    dq_ident,
    mysql_account,
    mysql_ident,
    mysql_literal,
    mysql_parse_identity,
    nvarchar_literal,
    sq_literal,
)

HOSTILE = ["o'brien", 'dq"uote', "back`tick", "br]ack[et", "semi;colon -- x", "new\nline", "ünï报", "back\\slash", "%_"]


def test_mysql_identifiers_double_backticks_only() -> None:
    assert mysql_ident("back`tick") == "`back``tick`"
    assert mysql_ident("back\\slash") == "`back\\slash`"  # no escapes inside backticks, whatever the sql_mode
    assert mysql_account("o'brien", "10.0.%") == "`o'brien`@`10.0.%`"
    assert mysql_account("role`x", None) == "`role``x`"


def test_mysql_literals_follow_the_sql_mode() -> None:
    assert mysql_literal("it's a\\b") == "'it''s a\\\\b'"
    assert mysql_literal("it's a\\b", no_backslash_escapes=True) == "'it''s a\\b'"


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("host", ["%", "h_st", "o'host", "", "back\\slash"])
def test_mysql_identity_parses_back_what_the_adapter_writes(name: str, host: str) -> None:
    assert mysql_parse_identity(account_identity(name, host)) == (name, host)
    assert mysql_parse_identity(account_identity(name, "", is_role=True)) == (name, None)


@pytest.mark.parametrize("text", ["'unterminated", "x'a'", "'a'@'b'c", "'a'#'b'"])
def test_mysql_identity_refuses_what_is_not_one(text: str) -> None:
    with pytest.raises(ValueError):
        mysql_parse_identity(text)


def test_double_quotes_brackets_and_literals() -> None:
    assert dq_ident('dq"uote') == '"dq""uote"'
    assert bracket_ident("br]ack[et") == "[br]]ack[et]"
    assert sq_literal("o'brien") == "'o''brien'"
    assert nvarchar_literal("o'brien") == "N'o''brien'"


def test_comment_text_keeps_a_name_on_one_comment_line() -> None:
    text = comment_text("evil\nDROP DATABASE x;\r\u2028")
    assert "\n" not in text and "\r" not in text and "\u2028" not in text
    assert text == "evil\\x0aDROP DATABASE x;\\x0d\\u2028"
