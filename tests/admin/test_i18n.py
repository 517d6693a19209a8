"""Simplified Chinese: the catalog is complete and compiled, and the admin pages speak it."""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils.translation.template import templatize

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
# the admin-facing code whose every string must be in the catalog
ADMIN_SOURCES = ["instances/admin.py", "sync/admin.py", "accountsync/admin.py"]
GETTEXT_NAMES = {"_", "gettext", "gettext_lazy", "ngettext", "ngettext_lazy"}


def po_entries() -> list[tuple[str, str, bool]]:
    """(msgid, first msgstr, fuzzy) for every entry but the header."""
    entries = []
    for block in PO.read_text(encoding="utf-8").strip().split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        fuzzy = False
        for line in block.splitlines():
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            match = re.match(r"^(msgid|msgid_plural|msgstr(?:\[0\])?) (\".*\")$", line)
            if match:
                key = match.group(1).replace("[0]", "")
                fields[key] = ast.literal_eval(match.group(2))
            elif line.startswith('"') and key:
                fields[key] += ast.literal_eval(line)
        if fields.get("msgid"):
            entries.append((fields["msgid"], fields.get("msgstr", ""), fuzzy))
    return entries


def plural_msgids() -> dict[str, str]:
    """msgid -> msgid_plural for the catalog's plural entries."""
    plurals = {}
    for block in PO.read_text(encoding="utf-8").strip().split("\n\n"):
        ids = {}
        key = None
        for line in block.splitlines():
            match = re.match(r"^(msgid|msgid_plural|msgstr\S*) (\".*\")$", line)
            if match:
                key = match.group(1)
                ids[key] = ast.literal_eval(match.group(2))
            elif line.startswith('"') and key:
                ids[key] += ast.literal_eval(line)
        if ids.get("msgid_plural"):
            plurals[ids["msgid"]] = ids["msgid_plural"]
    return plurals


def source_msgids() -> set[str]:
    """Every literal passed to a gettext function in the admin modules and the project's templates."""
    found: set[str] = set()
    for rel in ADMIN_SOURCES:
        for node in ast.walk(ast.parse((ROOT / rel).read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in GETTEXT_NAMES and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
    for template in (ROOT / "templates").rglob("*.html"):
        code = templatize(template.read_text(), origin=str(template))
        for match in re.finditer(r"\b(?:gettext|ngettext)\(u'((?:[^'\\]|\\.)*)'", code):
            found.add(ast.literal_eval(f"'{match.group(1)}'"))
    return found


def test_catalog_is_fully_translated_and_compiled():
    entries = po_entries()
    assert len(entries) > 200
    untranslated = [msgid for msgid, msgstr, fuzzy in entries if not msgstr or fuzzy]
    assert untranslated == []
    catalog = gettext.GNUTranslations(MO.open("rb"))
    plurals = plural_msgids()
    # a plural entry is looked up with ngettext: gettext() finds it only on some Python releases
    # (Debian 12's 3.11.2 does not; 3.11.7 does)
    stale = [
        msgid
        for msgid, msgstr, _ in entries
        if (catalog.ngettext(msgid, plurals[msgid], 1) if msgid in plurals else catalog.gettext(msgid)) != msgstr
    ]
    assert stale == [], "run manage.py compilemessages"
    placeholders = re.compile(r"%\(\w+\)[sd]")
    # a plural entry's one Chinese form serves every count: it takes the plural's placeholders (msgfmt -c checks it)
    broken = [
        m
        for m, s, _ in entries
        if sorted(set(placeholders.findall(plurals.get(m, m)))) != sorted(set(placeholders.findall(s)))
    ]
    assert broken == []


def test_every_admin_string_is_in_the_catalog():
    known = {msgid for msgid, _, _ in po_entries()}
    assert source_msgids() - known == set()


@pytest.mark.django_db
def test_admin_pages_in_simplified_chinese(client_for, make_instance):
    make_instance(name="zh-1")
    client = client_for("bob")
    html = client.get(reverse("admin:sync_syncsession_changelist"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "同步记录" in html and "最近 7 天" in html and "定时任务" in html
    html = client.get(reverse("admin:instances_instance_changelist"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "同步所选实例" in html and "同步全部启用实例" in html and "从未" in html
    html = client.get(reverse("admin:instances_instance_changelist"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Sync selected instances" in html
