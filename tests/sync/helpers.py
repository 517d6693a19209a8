"""Accounts for the fake servers of the sync tests (tests/fakes.py's chosen_server)."""

from __future__ import annotations

from accountsync.adapters.base import AccountRecord, Privilege


def account(name: str, *, superuser: bool = False) -> AccountRecord:
    """A MySQL-shaped account on any host: SELECT on *.*, or ALL PRIVILEGES (SUPERUSER)."""
    return AccountRecord(
        identity=f"'{name}'@'%'",
        username=name,
        host="%",
        privileges=[Privilege("global", "ALL PRIVILEGES" if superuser else "SELECT")],
        capabilities={"SUPERUSER"} if superuser else set(),
    )
