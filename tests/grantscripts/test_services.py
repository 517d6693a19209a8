"""The service interface on snapshots stored by the real apply: current, point in time, selections, revoke."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accountsync.adapters.base import Privilege, RoleGrant
from accountsync.models import AccountPermission
from grantscripts.scripts import Options
from grantscripts.services import GrantScriptError, account_script, revoke_script, selection_script
from tests.grantscripts.conftest import PASSWORD, account, apply, mysql_role, mysql_user

pytestmark = pytest.mark.django_db

OPTIONS = Options(placeholder="PH")


def test_account_script_is_the_current_access(mysql_instance) -> None:
    text = account_script(account=account(mysql_instance, "app'x"), options=OPTIONS)
    assert "-- grant script for 'app\\'x'@'%' on maria-1 (current access)" in text
    assert "CREATE USER `app'x`@`%` IDENTIFIED VIA `mysql_native_password` USING PASSWORD('PH');" in text
    assert "GRANT INSERT ON `sales`.* TO `app'x`@`%` WITH GRANT OPTION;" in text
    assert "GRANT UPDATE ON `sales`.`orders` TO `app'x`@`%`;" in text
    assert "GRANT `reader` TO `app'x`@`%` WITH ADMIN OPTION;\nSET DEFAULT ROLE `reader` FOR `app'x`@`%`;" in text
    assert PASSWORD not in text


def test_point_in_time_script_is_the_snapshot_valid_then(mysql_instance) -> None:
    user = account(mysql_instance, "app'x")
    before = timezone.now()
    apply(
        mysql_instance,
        [
            mysql_role("reader", [Privilege("database:sales", "SELECT")]),
            mysql_user("app'x", "%", [Privilege("global", "PROCESS")], [RoleGrant("'reader'")]),
        ],
    )
    assert AccountPermission.objects.filter(account=user).count() == 2
    now = account_script(account=user, options=OPTIONS)
    then = account_script(account=user, at=before, options=OPTIONS)
    assert "GRANT PROCESS ON *.* TO `app'x`@`%`;" in now and "`sales`.`orders`" not in now
    assert "GRANT UPDATE ON `sales`.`orders` TO `app'x`@`%`;" in then and "PROCESS" not in then
    assert f"(as of {before.isoformat()})" in then
    ancient = account_script(account=user, at=before.replace(year=2000), options=OPTIONS)
    assert "no snapshot at that time, nothing to replay" in ancient and "CREATE USER" not in ancient


def test_selection_streams_creates_then_grants_then_memberships(mysql_instance) -> None:
    accounts = list(mysql_instance.accounts.all())
    chunks = list(selection_script(accounts=accounts, options=OPTIONS))
    assert len(chunks) > 3  # streamed in pieces, not one string
    text = "".join(chunks)
    create_role, create_user = text.index("CREATE ROLE `reader`;"), text.index("CREATE USER `app'x`@`%`")
    first_grant = text.index("GRANT INSERT ON `sales`.*")
    membership = text.index("GRANT `reader` TO `app'x`@`%`")
    assert create_role < create_user < first_grant < membership
    assert text.count("-- passwords and hashes are never stored by WhaleFall") == 1


def test_selection_of_nothing() -> None:
    assert "".join(selection_script(accounts=[])) == "-- no accounts selected\n"


def test_revoke_script(mysql_instance) -> None:
    user = account(mysql_instance, "app'x")
    text = revoke_script(
        account=user,
        privileges=[("database:sales", "INSERT"), ("object:sales.orders", "update")],
        roles=["'reader'"],
        options=OPTIONS,
    )
    assert "REVOKE INSERT ON `sales`.* FROM `app'x`@`%`;\nREVOKE GRANT OPTION ON `sales`.* FROM `app'x`@`%`;" in text
    assert "REVOKE UPDATE ON `sales`.`orders` FROM `app'x`@`%`;" in text
    assert "REVOKE `reader` FROM `app'x`@`%`;" in text
    assert not [line for line in text.splitlines() if line.startswith("GRANT ")]


@pytest.mark.parametrize(
    ("privileges", "roles"),
    [([("bogus", "SELECT")], []), ([("database:sales",)], []), ([], []), ([], ["not an identity"])],
)
def test_revoke_script_refuses_malformed_input(mysql_instance, privileges, roles) -> None:
    with pytest.raises(GrantScriptError):
        revoke_script(account=account(mysql_instance, "app'x"), privileges=privileges, roles=roles)


def test_instance_script_at_a_time_covers_accounts_removed_since(mysql_instance) -> None:
    from grantscripts.services import instance_script

    before = timezone.now()
    apply(mysql_instance, [mysql_role("reader", [Privilege("database:sales", "SELECT")])])  # app'x is gone
    assert not account(mysql_instance, "app'x").is_active
    now = "".join(instance_script(instance=mysql_instance, options=OPTIONS))
    then = "".join(instance_script(instance=mysql_instance, at=before, options=OPTIONS))
    assert "CREATE ROLE `reader`;" in now and "app'x" not in now
    assert "CREATE USER `app'x`@`%`" in then and "GRANT `reader` TO `app'x`@`%` WITH ADMIN OPTION;" in then
    older = "".join(instance_script(instance=mysql_instance, at=before.replace(year=2000), options=OPTIONS))
    assert "-- no accounts selected" in older
