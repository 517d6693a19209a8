"""exports.writers on rows written by the real apply path: columns, escaping, formats, query count."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from exports.columns import KINDS, current_permissions, scrub
from exports.writers import ExportError, neutralise, stream_export
from findings.models import Finding
from findings.services import findings_refresh
from tests.api.conftest import SECRET
from tests.exports.conftest import HOSTILE, apply, mysql_user

pytestmark = pytest.mark.django_db


def text_of(kind, queryset, fmt="csv", **kw) -> str:
    chunks, _ctype, _name = stream_export(kind, queryset, fmt, **kw)
    return "".join(chunks)


def csv_rows(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:], newline="")))


@pytest.mark.parametrize("cell", HOSTILE)
def test_formula_cells_get_a_quote_and_nothing_else_changes(cell):
    assert neutralise(cell) == "'" + cell
    assert neutralise("app_rw") == "app_rw"
    assert neutralise("a=b") == "a=b"


def test_accounts_csv_has_one_row_per_account_with_the_current_snapshot_summary(fleet):
    rows = csv_rows(text_of("accounts", InstanceAccount.objects.filter(instance=fleet["mysql"])))
    assert list(rows[0]) == list(KINDS["accounts"].columns)
    by_identity = {r["identity"]: r for r in rows}
    assert set(by_identity) == {"'app_rw'@'%'", "'app_ro'@'%'", "'admin'@'localhost'"}
    app = by_identity["'app_rw'@'%'"]
    assert (app["instance"], app["db_type"], app["environment"]) == ("my-prod", "mysql", "production")
    assert app["capabilities"] == "GRANT_ADMIN;WILDCARD_HOST"
    assert (app["privilege_count"], app["role_count"], app["is_superuser"]) == ("2", "1", "false")
    assert by_identity["'admin'@'localhost'"]["is_superuser"] == "true"


def test_permissions_rows_are_one_per_privilege_role_and_capability(fleet):
    accounts = InstanceAccount.objects.filter(instance=fleet["mysql"], username="app_rw")
    rows = csv_rows(text_of("permissions", current_permissions(accounts)))
    got = sorted((r["row_type"], r["scope"], r["privilege"], r["grantable"], r["effect"]) for r in rows)
    assert got == [
        ("capability", "capability", "GRANT_ADMIN", "false", "GRANT"),
        ("capability", "capability", "WILDCARD_HOST", "false", "GRANT"),
        ("privilege", "database:sales", "INSERT", "true", "GRANT"),
        ("privilege", "database:sales", "SELECT", "false", "GRANT"),
        ("role", "role", "reporting", "false", "GRANT"),
    ]
    assert {r["account"] for r in rows} == {"'app_rw'@'%'"}
    mssql = InstanceAccount.objects.filter(instance=fleet["mssql"])
    deny = csv_rows(text_of("permissions", current_permissions(mssql)))
    assert [(r["privilege"], r["effect"]) for r in deny if r["row_type"] == "privilege"] == [("DELETE", "DENY")]


def test_hostile_names_are_neutralised_in_csv_and_unchanged_in_json(make_instance):
    inst = make_instance("mysql", name="=evil-instance")
    apply(inst, *(mysql_user(name, "%") for name in HOSTILE))
    qs = InstanceAccount.objects.filter(instance=inst)
    rows = csv_rows(text_of("accounts", qs))
    assert sorted(r["username"] for r in rows) == sorted("'" + n for n in HOSTILE)
    assert {r["instance"] for r in rows} == {"'=evil-instance"}
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row
    data = json.loads(text_of("accounts", qs, "json"))
    assert sorted(r["username"] for r in data) == sorted(HOSTILE)
    lines = text_of("accounts", qs, "ndjson").splitlines()
    assert sorted(json.loads(line)["username"] for line in lines) == sorted(HOSTILE)


def test_every_kind_in_every_format_parses_and_holds_no_secret(fleet):
    findings_refresh(instance=fleet["mysql"])
    assert Finding.objects.filter(instance=fleet["mysql"]).exists()
    querysets = {
        "accounts": InstanceAccount.objects.all(),
        "permissions": AccountPermission.objects.filter(valid_to__isnull=True),
        "findings": Finding.objects.all(),
        "change_logs": AccountChangeLog.objects.all(),
    }
    for kind, qs in querysets.items():
        expected = sum(1 for _ in KINDS[kind].prepare(qs).iterator() for _ in KINDS[kind].rows(_))
        csv_text, json_text, nd_text = (text_of(kind, qs, fmt) for fmt in ("csv", "json", "ndjson"))
        assert len(csv_rows(csv_text)) == expected > 0, kind
        assert len(json.loads(json_text)) == expected
        assert len(nd_text.splitlines()) == expected
        for text in (csv_text, json_text, nd_text):
            assert SECRET not in text and "password_encrypted" not in text, kind


def test_an_empty_export_is_still_a_valid_document(db):
    qs = InstanceAccount.objects.none()
    assert json.loads(text_of("accounts", qs, "json")) == []
    assert text_of("accounts", qs, "ndjson") == ""
    assert csv_rows(text_of("accounts", qs)) == []


def test_secret_looking_attribute_keys_are_never_exported(make_instance):
    inst = make_instance("mysql")
    record = mysql_user("leaky", "%")
    record.attributes = {"auth_plugin": "x", "authentication_string": "*HASH", "nested": {"password": "pw"}}
    apply(inst, record)
    text = text_of("accounts", InstanceAccount.objects.filter(instance=inst), "json")
    assert "*HASH" not in text and '"pw"' not in text
    assert scrub({"Password": 1, "ok": [{"hash": 2, "keep": 3}]}) == {"ok": [{"keep": 3}]}


def test_wrong_input_is_refused_before_anything_is_read(db):
    with pytest.raises(ExportError) as kind:
        stream_export("secrets", InstanceAccount.objects.all())
    with pytest.raises(ExportError) as fmt:
        stream_export("accounts", InstanceAccount.objects.all(), "xlsx")
    with pytest.raises(ExportError) as model:
        stream_export("accounts", AccountChangeLog.objects.all())
    assert (kind.value.field, fmt.value.field, model.value.field) == ("kind", "format", "queryset")


@pytest.mark.parametrize("kind", ["accounts", "permissions", "change_logs", "effective_access"])
def test_a_large_export_reads_in_a_bounded_number_of_queries(kind, bulk_accounts):
    bulk_accounts(3000, instances=3)
    qs = {
        "accounts": InstanceAccount.objects.all(),
        "permissions": AccountPermission.objects.filter(valid_to__isnull=True),
        "change_logs": AccountChangeLog.objects.all(),
        "effective_access": AccountPermission.objects.filter(valid_to__isnull=True),
    }[kind]
    with CaptureQueriesContext(connection) as ctx:
        chunks, _, _ = stream_export(kind, qs, "csv", chunk_size=500)
        assert len(ctx.captured_queries) == 0, "nothing is read before the stream is consumed"
        n_lines = sum(chunk.count("\n") for chunk in chunks)
    assert n_lines >= 3001
    # one SELECT (server-side cursor or chunked fetch), plus a cursor statement at most, plus
    # (permissions) one for the coverage episodes of every instance, (effective_access) one per
    # instance for its roles (these accounts hold none: PUBLIC's lookup); the read's transaction
    # (config.db.read_in_transaction: a savepoint inside the test's) and its JIT setting are not reads
    reads = [q["sql"] for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"] and "SET LOCAL jit" not in q["sql"]]
    bound = {"permissions": 3, "effective_access": 2 + 3}.get(kind, 2)
    assert len(reads) <= bound, [sql[:80] for sql in reads]


def test_admin_action_streams_the_selection(fleet, rf, charlie):
    from exports.actions import admin_export_action

    request = rf.post("/admin/accountsync/instanceaccount/")
    request.user = charlie
    selected = InstanceAccount.objects.filter(instance=fleet["pg"])
    action = admin_export_action("permissions", "csv")
    assert action.allowed_permissions == ("view",) and action.__name__ == "export_permissions_csv"
    response = action(None, request, selected)
    rows = csv_rows(b"".join(response.streaming_content).decode())
    assert {r["account"] for r in rows} == {"app_rw", "app_reader", "appsvc"}
    assert response["Content-Disposition"].endswith('.csv"')
    accounts = admin_export_action("accounts", "json")(None, request, selected)
    assert sorted(r["username"] for r in json.loads(b"".join(accounts.streaming_content))) == [
        "app_reader",
        "app_rw",
        "appsvc",
    ]
