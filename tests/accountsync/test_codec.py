"""The codec's memoised snapshot text and first-seen diffs equal what the generic functions give.

Why this matters: stored digests are sha256 of the canonical text, so one byte of
difference would make every account look changed on the next sync.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from accountsync import diff as snapdiff
from accountsync.adapters.base import AccountRecord, Privilege, RoleGrant, canonical_json, snapshot_digest
from accountsync.codec import SnapshotCodec, json_text, plain_json

names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=8)
privilege_names = st.sampled_from(["select", "INSERT", "Update", "ALL PRIVILEGES", "USAGE", "CONNECT"])
scopes = st.one_of(
    st.just("global"),
    st.builds(lambda a: f"database:{a}", names),
    st.builds(lambda a, b: f'object:{a}."{b}"', names, names),
)
privileges = st.lists(
    st.builds(Privilege, scopes, privilege_names, st.booleans(), st.sampled_from(["GRANT", "DENY", "grant"])),
    max_size=6,
)
roles = st.lists(st.builds(RoleGrant, names, st.booleans(), st.booleans()), max_size=3)
capabilities = st.sets(st.sampled_from(["SUPERUSER", "GRANT_ADMIN", "LOCKED", "EXPIRED", "WILDCARD_HOST"]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False),
    names,
    st.just(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    st.just(date(2026, 1, 2)),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3), max_leaves=6
)
attributes = st.dictionaries(st.one_of(names, st.integers(0, 3)), values, max_size=6)
unknown = st.lists(st.sampled_from(["database:sales", "role", "schema:x.public"]), max_size=2)


def records() -> st.SearchStrategy[AccountRecord]:
    return st.builds(
        AccountRecord,
        identity=names,
        username=names,
        privileges=privileges,
        roles=roles,
        capabilities=capabilities,
        attributes=attributes,
        unknown_scopes=unknown,
    )


def expected(record: AccountRecord) -> dict[str, Any]:
    """What the engine stored before the codec: the record's snapshot (unknown scopes are coverage, never in it)."""
    raw = record.snapshot()
    assert raw["unknown_scopes"] == []
    return raw


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), min_size=1, max_size=4))
def test_prepared_snapshot_text_and_diff_equal_the_generic_ones(batch: list[AccountRecord]) -> None:
    codec = SnapshotCodec()  # one codec for the batch: later records reuse the parts of earlier ones
    for record in batch * 2:
        want = expected(record)
        got = codec.prepare(record)
        assert got.snapshot == want
        assert got.text == canonical_json(want)
        assert got.digest == snapshot_digest(want)
        assert got.attributes_text == json_text(want["attributes"])
        stored = want if plain_json(want["attributes"]) else json.loads(canonical_json(want))
        assert codec.stored_snapshot(got) == stored
        ops = snapdiff.diff_snapshots(None, stored)
        assert codec.first_seen_diff(got) == (json_text(ops), snapdiff.summarize(ops))


def test_shared_parts_are_reused_and_summaries_are_capped() -> None:
    codec = SnapshotCodec()
    privs = [Privilege(f"database:db{i}", "SELECT") for i in range(20)]
    one = AccountRecord("'a'@'%'", "a", privileges=list(privs), attributes={"locked": False, "plugin": "x"})
    two = AccountRecord("'b'@'%'", "b", privileges=list(reversed(privs))[::-1], attributes={"locked": True})
    first, second = codec.prepare(one), codec.prepare(two)
    assert first.snapshot["privileges"] is second.snapshot["privileges"]  # encoded once
    text, summary = codec.first_seen_diff(first)
    assert len(json.loads(text)) == 22  # 20 grants + 2 attributes
    assert summary.endswith(" (+10 more)") and summary.startswith("+SELECT on database:db0")
    assert codec.first_seen_diff(second)[1].count("locked null→true") == 0  # capped before attributes
    # True and 1 are equal in Python but not in JSON: the attribute-op cache keeps them apart
    ints = codec.prepare(AccountRecord("'c'@'%'", "c", attributes={"n": 1}))
    bools = codec.prepare(AccountRecord("'d'@'%'", "d", attributes={"n": True}))
    assert json.loads(codec.first_seen_diff(ints)[0])[0]["new"] == 1
    assert json.loads(codec.first_seen_diff(bools)[0])[0]["new"] is True
