"""The read itself against slapd: paged searches past the server's size limit, and LDAPS verification.

The size-limit tests start their own slapd (the session's has no limit, and other tests share it): the
fixture's generated configuration with ``sizelimit`` lowered, as an Active Directory's MaxPageSize.
"""

from __future__ import annotations

import pytest

from directory.conf import directory_conf
from directory.ldapread import DirectoryReadError, read_directory
from directory.models import Person
from directory.services import directory_sync
from tests.directory.conftest import openldap_env

pytestmark = [pytest.mark.live, pytest.mark.django_db]

SIZE_LIMIT = 5
PEOPLE = 12


def _limit(server, prtotal: str) -> None:
    conf = server.folder / "slapd.conf"
    lines = [
        f"sizelimit size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT} size.prtotal={prtotal}"
        if line.startswith("sizelimit")
        else line
        for line in conf.read_text().splitlines()
    ]
    conf.write_text("\n".join(lines) + "\n")
    server.stop()
    server.start()


@pytest.fixture(scope="module")
def limited_server():
    """A private slapd whose reader may get SIZE_LIMIT entries per search; PEOPLE people in it."""
    import os

    from tests.ldapserver import start_ldap_server, stop_ldap_server

    try:
        server = start_ldap_server()
    except FileNotFoundError as exc:
        if os.environ.get("WHALEFALL_REQUIRE_LIVE") == "1":
            pytest.fail(f"{exc} (WHALEFALL_REQUIRE_LIVE=1)")
        pytest.skip(str(exc))
    try:
        for n in range(PEOPLE):
            server.add_person(f"paged{n:02d}", cn=f"Paged Person {n}")
        server.add_group("everyone", members=[f"paged{n:02d}" for n in range(PEOPLE)])
        _limit(server, "unlimited")
        yield server
    finally:
        stop_ldap_server(server)


@pytest.fixture
def limited_env(limited_server, monkeypatch):
    for name, value in openldap_env(limited_server).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WHALEFALL_DIRECTORY_PAGE_SIZE", "4")
    return limited_server


def test_paged_search_reads_more_entries_than_the_size_limit(limited_env):
    import ldap

    conn = limited_env.connect(limited_env.reader_dn, limited_env.reader_password)
    with pytest.raises(ldap.SIZELIMIT_EXCEEDED):  # the limit is real for a plain search
        conn.search_s(limited_env.people, ldap.SCOPE_SUBTREE, "(objectClass=inetOrgPerson)", ["uid"])
    conn.unbind_s()

    snapshot = read_directory(directory_conf())
    assert sorted(p.uid for p in snapshot.people) == [f"paged{n:02d}" for n in range(PEOPLE)]
    assert snapshot.pages >= PEOPLE // 4 + 1  # people in pages of 4, plus the groups' page
    (group,) = snapshot.groups
    assert len(group.member_dns) == PEOPLE

    read = directory_sync()
    assert (read.outcome, read.people, read.groups) == ("ok", PEOPLE, 1)
    assert Person.objects.filter(status="active").count() == PEOPLE


def test_a_size_limited_paged_result_is_partial_and_marks_nobody_deleted(limited_env):
    assert directory_sync().outcome == "ok"
    _limit(limited_env, "hard")  # the server now cuts the paged search at SIZE_LIMIT entries in all
    try:
        with pytest.raises(DirectoryReadError) as exc:
            read_directory(directory_conf())
        assert exc.value.kind == "partial"
        failed = directory_sync()
        assert (failed.outcome, failed.error_kind) == ("failed", "partial")
        assert Person.objects.filter(status="active").count() == PEOPLE
        assert not Person.objects.exclude(status="active").exists()
    finally:
        _limit(limited_env, "unlimited")


# --- LDAPS: the certificate is verified --------------------------------------------------------


def test_ldaps_with_the_right_ca_reads_and_a_wrong_ca_or_name_is_refused(directory_env, monkeypatch):
    server = directory_env
    uid = server.unique("tls")
    server.add_person(uid)
    monkeypatch.setenv("WHALEFALL_DIRECTORY_URI", server.ldaps_uri)
    assert uid in {p.uid for p in read_directory(directory_conf()).people}

    monkeypatch.setenv("WHALEFALL_DIRECTORY_CA_FILE", str(server.other_ca_file))
    wrong_ca = directory_sync()
    assert (wrong_ca.outcome, wrong_ca.error_kind) == ("failed", "tls")
    assert not Person.objects.exists()

    # the certificate names 127.0.0.1 only: the right CA but another name is refused too
    monkeypatch.setenv("WHALEFALL_DIRECTORY_CA_FILE", str(server.ca_file))
    monkeypatch.setenv("WHALEFALL_DIRECTORY_URI", server.ldaps_uri.replace("127.0.0.1", "localhost"))
    wrong_name = directory_sync()
    assert (wrong_name.outcome, wrong_name.error_kind) == ("failed", "tls")


def test_start_tls_on_the_plain_port_verifies_too(directory_env, monkeypatch):
    server = directory_env
    monkeypatch.setenv("WHALEFALL_DIRECTORY_START_TLS", "1")
    assert directory_sync().outcome == "ok"
    monkeypatch.setenv("WHALEFALL_DIRECTORY_CA_FILE", str(server.other_ca_file))
    refused = directory_sync()
    assert (refused.outcome, refused.error_kind) == ("failed", "tls")


# --- a server that accepts and never answers; the command and the task -------------------------


def test_a_server_that_never_answers_is_a_timeout(monkeypatch, directory_env):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)  # connections are accepted by the kernel, nothing is ever answered
    try:
        monkeypatch.setenv("WHALEFALL_DIRECTORY_URI", f"ldap://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("WHALEFALL_DIRECTORY_TIMEOUT", "1")
        read = directory_sync()
        assert (read.outcome, read.error_kind) == ("failed", "timeout")
    finally:
        silent.close()


def test_the_command_and_the_scheduled_task(directory_env, monkeypatch):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from directory.tasks import run_directory_sync

    uid = directory_env.unique("cmd")
    directory_env.add_person(uid)
    out = StringIO()
    call_command("directory_sync", stdout=out)
    assert out.getvalue().startswith("directory read OK:")
    assert Person.objects.get(uid=uid).status == "active"
    assert run_directory_sync()["outcome"] == "ok"

    monkeypatch.setenv("WHALEFALL_DIRECTORY_BIND_PASSWORD", "wrong")
    with pytest.raises(CommandError, match=r"directory read failed \(bind\)"):
        call_command("directory_sync", stdout=StringIO())
    assert run_directory_sync()["error_kind"] == "bind"
    monkeypatch.setenv("WHALEFALL_DIRECTORY_LINK_RULES", "username,typo")
    assert run_directory_sync()["error_kind"] == "configuration"


def test_switched_off_the_schedule_reads_nothing_and_records_nothing(db, monkeypatch):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from directory.models import DirectoryRead
    from directory.tasks import run_directory_sync

    monkeypatch.delenv("WHALEFALL_DIRECTORY_URI", raising=False)
    assert run_directory_sync() == {"outcome": "off"}
    assert not DirectoryRead.objects.exists()  # not an outage: the account page keeps saying "off"
    with pytest.raises(CommandError, match="WHALEFALL_DIRECTORY_URI is not set"):
        call_command("directory_sync", stdout=StringIO())  # asked for by hand: refused loudly
