"""Searching the lists keyed by account (#19 part 3): the text names accounts, in the accounts list's grammar.

The change log, the snapshots and the findings resolve the text to account ids first
(accountsync.selectors.account_ids_matching) instead of testing it across the join with the
whole history, and understand ``app_*``, ``name@host`` and ``host=10.0.*`` like the accounts list.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from accountsync.adapters.base import AccountRecord, Catalog
from accountsync.selectors import AccountSearchError, account_ids_matching
from accountsync.services import account_sync_apply
from findings.services import findings_refresh

from .conftest import account, apply

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(make_instance):
    maria = make_instance(name="hs-maria")
    apply(maria, account("ledger_rw", "10.0.1.%"), account("ledger_ro", "10.9.0.1"), account("batch", "%"))
    apply(
        maria,
        account("ledger_rw", "10.0.1.%"),
        account("ledger_ro", "10.9.0.1"),
        account("batch", "%"),
        account("new", "10.5.0.1"),
    )
    pg = make_instance("postgresql", name="hs-pg", port=5432)
    account_sync_apply(
        instance=pg,
        catalog=Catalog(
            accounts=[
                AccountRecord(identity="svc@corp", username="svc@corp", capabilities={"SUPERUSER"}),
                AccountRecord(identity="ledger_owner", username="ledger_owner", capabilities={"SUPERUSER"}),
            ]
        ),
    )
    findings_refresh(instance=pg)
    return maria, pg


def identities(term: str) -> set[str]:
    from accountsync.models import InstanceAccount

    return set(InstanceAccount.objects.filter(pk__in=account_ids_matching(term)).values_list("identity", flat=True))


def test_the_grammar_of_the_accounts_list(history):
    assert identities("ledger_") == {"'ledger_rw'@'10.0.1.%'", "'ledger_ro'@'10.9.0.1'", "ledger_owner"}
    assert identities("ledger_r*") == {"'ledger_rw'@'10.0.1.%'", "'ledger_ro'@'10.9.0.1'"}
    assert identities("host=10.0.*") == {"'ledger_rw'@'10.0.1.%'"}
    assert identities("ledger_rw@10.0.1.%") == {"'ledger_rw'@'10.0.1.%'"}
    assert identities("ledger_ro@") == {"'ledger_ro'@'10.9.0.1'"}
    assert identities("svc@corp") == {"svc@corp"}  # a PostgreSQL role with an @ in its name
    assert identities("nobody") == set()
    with pytest.raises(AccountSearchError):
        account_ids_matching("  ")


def listed(client, name: str, q: str) -> str:
    page = client.get(reverse(name), {"q": q})
    assert page.status_code == 200
    return page.content.decode()


def test_change_log_search_takes_host_and_prefix(client_for, history):
    client = client_for("alice")
    url = "admin:accountsync_accountchangelog_changelist"
    page = listed(client, url, "host=10.0.*")
    assert "ledger_rw" in page and "ledger_ro" not in page and "batch" not in page
    page = listed(client, url, "new*")
    assert "&#x27;new&#x27;@&#x27;10.5.0.1&#x27;" in page and "ledger_rw" not in page


def test_findings_search_by_account(client_for, history):
    client = client_for("charlie")  # a Viewer reads findings too
    page = listed(client, "admin:findings_finding_changelist", "svc@corp")
    assert "svc@corp" in page and "ledger_owner" not in page


def test_a_bad_search_says_so_and_shows_nothing(client_for, history):
    page = listed(client_for("alice"), "admin:accountsync_accountchangelog_changelist", "host=")
    assert "Search not understood" in page
    assert "ledger_rw" not in page
