"""Per-family scripts from snapshots: recorded catalogs (MySQL 8, SQL Server, Oracle) and hand-made golden ones.

Why recorded rows for SQL Server and Oracle: those servers cannot run here, so the snapshots
come from the adapters' pure catalog builds over recorded catalog rows, exactly as a sync
stores them. MariaDB and PostgreSQL are also replayed for real in tests/live/test_grantscripts_live.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from accountsync.adapters.oracle import build_catalog as oracle_catalog
from accountsync.adapters.sqlserver import build_catalog as sqlserver_catalog
from grantscripts.scripts import (
    GrantScriptError,
    Options,
    Rename,
    Renderer,
    Subject,
    account_lines,
    generator,
    revoke_lines,
    script_header,
)
from tests.accountsync.oracle_rows import load, rows_of
from tests.accountsync.test_mysql_recorded import recorded_catalog
from tests.grantscripts.replay import split_statements
from tests.sqlserver_recorded import recorded_rows

OPTIONS = Options(placeholder="PH")


def script(db_type: str, subject: Subject, options: Options = OPTIONS) -> str:
    writer = generator(db_type, options)
    return Renderer(db_type).render([*script_header(db_type, "test", writer), *account_lines(writer, subject)])


def statements(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("-- ")]


def subjects(db_type: str, catalog: Any, version: str = "") -> dict[str, Subject]:
    return {
        a.identity: Subject(db_type, a.identity, a.username, a.host, a.kind, a.snapshot(), version)
        for a in catalog.accounts
    }


def snap(privileges: list[tuple[str, str, bool]] = (), roles: list[tuple[str, bool, bool]] = (), **attributes: Any):
    return {
        "schema_version": 1,
        "privileges": [
            {"scope": s, "privilege": p, "grantable": g, "effect": "GRANT"} for s, p, g in sorted(privileges)
        ],
        "roles": [{"role": r, "admin_option": a, "default": d} for r, a, d in roles],
        "attributes": attributes,
        "capabilities": [],
        "unknown_scopes": [],
    }


# --- MySQL 8 (recorded grant tables) -------------------------------------------------


def test_mysql8_users_roles_grants_and_default_roles() -> None:
    catalog, _cursor = recorded_catalog()
    accounts = subjects("mysql", catalog, "MySQL 8.0.36")
    alice = statements(script("mysql", accounts["'alice'@'10.0.%'"]))
    assert alice == [
        "CREATE USER `alice`@`10.0.%` IDENTIFIED WITH `caching_sha2_password` BY 'PH' REQUIRE X509 "
        "WITH MAX_USER_CONNECTIONS 5;",
        "ALTER USER `alice`@`10.0.%` PASSWORD EXPIRE INTERVAL 90 DAY;",
        "GRANT SELECT ON `reports`.* TO `alice`@`10.0.%` WITH GRANT OPTION;",
        "GRANT `app_write`@`%` TO `alice`@`10.0.%` WITH ADMIN OPTION;",
        "GRANT `ops`@`%` TO `alice`@`10.0.%`;",
        "SET DEFAULT ROLE `app_write`@`%` TO `alice`@`10.0.%`;",
    ]
    bob = statements(script("mysql", accounts["'bob'@'localhost'"]))
    assert "CREATE USER `bob`@`localhost` IDENTIFIED WITH `auth_socket`;" in bob  # no secret: no placeholder
    assert "GRANT ALTER ROUTINE, EXECUTE ON FUNCTION `app`.`refresh` TO `bob`@`localhost` WITH GRANT OPTION;" in bob
    assert "GRANT UPDATE (`total`) ON `app`.`orders` TO `bob`@`localhost` WITH GRANT OPTION;" in bob
    assert "GRANT ALL PRIVILEGES ON `app`.`order.lines` TO `bob`@`localhost`;" in bob
    ops = statements(script("mysql", accounts["'ops'@'%'"]))
    assert ops[0] == "CREATE ROLE `ops`@`%`;"
    assert "GRANT ALL PRIVILEGES ON `app\\_%`.* TO `ops`@`%` WITH GRANT OPTION;" in ops  # the pattern as stored
    assert ops[-1] == "REVOKE SELECT ON `mysql`.* FROM `ops`@`%`;"  # a partial revoke
    anonymous = statements(script("mysql", accounts["''@'localhost'"]))
    assert anonymous == ["CREATE USER ``@`localhost` IDENTIFIED WITH `mysql_native_password`;"]


def test_mysql_script_never_holds_a_secret_and_says_so() -> None:
    catalog, _cursor = recorded_catalog()
    text = "".join(script("mysql", s, Options()) for s in subjects("mysql", catalog, "MySQL 8.0.36").values())
    assert "$A$005$" not in text and "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19" not in text
    assert "IDENTIFIED WITH `caching_sha2_password` BY 'wf-" in text  # a random placeholder
    a, b = (script("mysql", subjects("mysql", catalog)["'root'@'localhost'"], Options()) for _ in range(2))
    assert a != b  # the placeholder is random per script: nobody knows it


# --- MariaDB (hand-made snapshot with hostile names) -----------------------------------------


MARIADB_USER = Subject(
    "mysql",
    "'o\\'b`r\nx'@'10.0.%'",
    "o'b`r\nx",
    "10.0.%",
    "user",
    snap(
        [
            ("database:s'ales_%", "SELECT", True),
            ("database:s'ales_%", "INSERT", True),
            ('object:db."t.1"', "USAGE", True),
            ("column:db.t;2.c`1", "SELECT", False),
            ("column:db.t;2.c2", "SELECT", False),
            ("column:db.t;2.c2", "UPDATE", False),
            ('routine:db."p.q"(procedure)', "EXECUTE", False),
            ("proxy:'app'@'%'", "PROXY", False),
        ],
        [("'r\\'ole'", True, True), ("'other'", False, False)],
        auth_plugin="mysql_native_password OR unix_socket",
        locked=True,
        password_expired=False,
        password_lifetime=0,
        max_questions=10,
        max_updates=0,
        max_connections=0,
        max_user_connections=3,
        ssl_type="SPECIFIED",
        ssl_cipher="",
        x509_issuer="/CN=it's\\ca",
        x509_subject="",
        is_role=False,
    ),
    "MariaDB 10.11.19",
)


def test_mariadb_hostile_names_are_quoted_in_every_statement() -> None:
    me = "`o'b``r\nx`@`10.0.%`"
    assert [f"{s};" for s in split_statements(script("mysql", MARIADB_USER))] == [
        f"CREATE USER {me} IDENTIFIED VIA `mysql_native_password` USING PASSWORD('PH') OR `unix_socket` "
        "REQUIRE ISSUER '/CN=it''s\\\\ca' WITH MAX_QUERIES_PER_HOUR 10 MAX_USER_CONNECTIONS 3;",
        f"ALTER USER {me} PASSWORD EXPIRE NEVER;",
        f"ALTER USER {me} ACCOUNT LOCK;",
        f"GRANT INSERT, SELECT ON `s'ales_%`.* TO {me} WITH GRANT OPTION;",
        f"GRANT USAGE ON `db`.`t.1` TO {me} WITH GRANT OPTION;",
        f"GRANT PROXY ON `app`@`%` TO {me};",
        f"GRANT EXECUTE ON PROCEDURE `db`.`p.q` TO {me};",
        f"GRANT SELECT (`c2`, `c``1`), UPDATE (`c2`) ON `db`.`t;2` TO {me};",
        f"GRANT `r'ole` TO {me} WITH ADMIN OPTION;",
        f"GRANT `other` TO {me};",
        f"SET DEFAULT ROLE `r'ole` FOR {me};",
    ]


def test_mariadb_literals_under_no_backslash_escapes() -> None:
    text = script("mysql", MARIADB_USER, Options(placeholder="PH", no_backslash_escapes=True))
    assert "REQUIRE ISSUER '/CN=it''s\\ca'" in text
    assert "-- string literals are written for NO_BACKSLASH_ESCAPES" in text


def test_a_name_with_a_newline_cannot_escape_a_comment() -> None:
    text = script("mysql", MARIADB_USER)
    comments = [line for line in text.splitlines() if line.startswith("-- account")]
    assert comments == ["-- account 'o\\'b`r\\x0ax'@'10.0.%' (user)"]


def test_rename_replaces_account_and_database_names() -> None:
    options = Options(
        placeholder="PH", rename=Rename(accounts={"o'b`r\nx": "copy", "r'ole": "r2"}, databases={"db": "db2"})
    )
    text = script("mysql", MARIADB_USER, options)
    assert "CREATE USER `copy`@`10.0.%`" in text
    assert "ON `db2`.`t;2` TO `copy`@`10.0.%`" in text
    assert "GRANT `r2` TO `copy`@`10.0.%` WITH ADMIN OPTION;" in text
    assert "`s'ales_%`.*" in text  # not in the mapping: unchanged


# --- PostgreSQL (golden snapshot) -------------------------------------------------------


PG_ROLE = Subject(
    "postgresql",
    'app "rw";x',
    'app "rw";x',
    None,
    "user",
    snap(
        [
            ("database:sales'db", "CONNECT", False),
            ("database:sales'db", "TEMPORARY", True),
            ('schema:sales\'db."s.1"', "USAGE", False),
            ('object:sales\'db."s.1".orders', "SELECT", True),
            ('object:sales\'db."s.1".orders', "INSERT", False),
            ("object:sales'db.public.seq", "USAGE", False),
            ("object:sales'db.public.seq", "SELECT", False),
            ("column:sales'db.public.t.Mixed Col", "UPDATE", False),
            ('routine:sales\'db.public."f""n(a integer, b text)"', "EXECUTE", False),
            ("default:sales'db.public.tables.owner role", "SELECT", False),
            ("default:sales'db.*.sequences.owner role", "USAGE", True),
            ("object:other.public.owned", "OWNER", True),
        ],
        [("readers", True, True), ("writers", False, False)],
        login=True,
        superuser=False,
        inherit=True,
        createrole=False,
        createdb=True,
        replication=False,
        bypassrls=False,
        connection_limit=5,
        valid_until="2031-02-03T04:05:06+00:00",
        password_set=True,
    ),
)


def test_postgresql_golden_script() -> None:
    me = '"app ""rw"";x"'
    text = script("postgresql", PG_ROLE)
    body = [line for line in text.splitlines() if not line.startswith("-- ")]
    assert body == [
        f"CREATE ROLE {me} WITH LOGIN NOSUPERUSER INHERIT NOCREATEROLE CREATEDB NOREPLICATION NOBYPASSRLS "
        "CONNECTION LIMIT 5 VALID UNTIL '2031-02-03T04:05:06+00:00' PASSWORD 'PH';",
        '\\connect "other"',
        f'ALTER TABLE "public"."owned" OWNER TO {me};',
        f'GRANT CONNECT ON DATABASE "sales\'db" TO {me};',
        f'GRANT TEMPORARY ON DATABASE "sales\'db" TO {me} WITH GRANT OPTION;',
        '\\connect "sales\'db"',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "owner role" GRANT USAGE ON SEQUENCES TO {me} WITH GRANT OPTION;',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "owner role" IN SCHEMA "public" GRANT SELECT ON TABLES TO {me};',
        f'GRANT INSERT ON TABLE "s.1"."orders" TO {me};',
        f'GRANT SELECT ON TABLE "s.1"."orders" TO {me} WITH GRANT OPTION;',
        f'GRANT SELECT, USAGE ON SEQUENCE "public"."seq" TO {me};',
        f'GRANT EXECUTE ON ROUTINE "public"."f""n"(a integer, b text) TO {me};',
        f'GRANT USAGE ON SCHEMA "s.1" TO {me};',
        f'GRANT UPDATE ("Mixed Col") ON TABLE "public"."t" TO {me};',
        f'GRANT "readers" TO {me} WITH ADMIN OPTION;',
        f'GRANT "writers" TO {me} WITH INHERIT FALSE;',
    ]
    assert "standard_conforming_strings" in text


def test_postgresql_public_and_predefined_roles_are_not_created() -> None:
    public = Subject(
        "postgresql", "public", "public", None, "role", snap([("database:x", "CONNECT", False)], pseudo_role=True)
    )
    assert statements(script("postgresql", public)) == ['GRANT CONNECT ON DATABASE "x" TO PUBLIC;']
    predefined = Subject("postgresql", "pg_monitor", "pg_monitor", None, "role", snap(login=False))
    assert statements(script("postgresql", predefined)) == []


def test_postgresql_revoke() -> None:
    writer = generator("postgresql", OPTIONS)
    lines = revoke_lines(
        writer,
        PG_ROLE,
        [
            ('object:sales\'db."s.1".orders', "select"),
            ("default:sales'db.public.tables.owner role", "SELECT"),
            ("column:sales'db.public.t.Mixed Col", "UPDATE"),
            ("object:other.public.owned", "OWNER"),
            ("database:gone", "CREATE"),
        ],
        ["readers"],
    )
    text = Renderer("postgresql").render(lines)
    me = '"app ""rw"";x"'
    assert f'REVOKE SELECT ON TABLE "s.1"."orders" FROM {me};' in text
    assert (
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "owner role" IN SCHEMA "public" REVOKE SELECT ON TABLES FROM {me};' in text
    )
    assert f'REVOKE UPDATE ("Mixed Col") ON TABLE "public"."t" FROM {me};' in text
    assert "-- ownership of object:other.public.owned cannot be revoked" in text
    assert "-- CREATE on database:gone is not in the snapshot; revoked anyway" in text
    assert f'REVOKE CREATE ON DATABASE "gone" FROM {me};' in text
    assert f'REVOKE "readers" FROM {me};' in text


# --- SQL Server (recorded catalog rows) ---------------------------------------------------


@pytest.fixture(scope="module")
def sqlserver() -> dict[str, Subject]:
    return subjects("sqlserver", sqlserver_catalog(recorded_rows()))


def test_sqlserver_logins_users_roles_and_permissions(sqlserver: dict[str, Subject]) -> None:
    app = script("sqlserver", sqlserver["app"])
    assert "CREATE LOGIN [app] WITH PASSWORD = N'PH', DEFAULT_DATABASE = [master], CHECK_POLICY = ON" in app
    assert "USE [we]]ird'db.ü];\nCREATE USER [APP] FOR LOGIN [app];" in app
    assert "DENY SELECT ON OBJECT::[dbo].[orders] ([card_number]) TO [APP_USER];" in app
    assert "GRANT SELECT ON OBJECT::[s'ch].[or\"d.ers]]] TO [APP] WITH GRANT OPTION;" in app
    assert "GRANT VIEW SERVER STATE TO [app] WITH GRANT OPTION;" in app
    assert "ALTER ROLE [db_ddladmin] ADD MEMBER [APP_USER];" in app
    assert "ALTER ROLE [reporting.sub] ADD MEMBER [APP_USER];" in app
    hostile = script("sqlserver", sqlserver['o\'brien "x" [ü]'])
    assert "CREATE LOGIN [o'brien \"x\" [ü]]] WITH PASSWORD = N'PH'" in hostile
    assert "ALTER AUTHORIZATION ON DATABASE::[we]]ird'db.ü] TO [o'brien \"x\" [ü]]];" in hostile  # dbo: the owner
    assert "[DBO]" not in hostile
    windows = statements(script("sqlserver", sqlserver["CORP\\ops"]))
    assert windows[0] == "CREATE LOGIN [CORP\\ops] FROM WINDOWS WITH DEFAULT_DATABASE = [master];"
    assert "ALTER SERVER ROLE [ops]]admin] ADD MEMBER [CORP\\ops];" in windows
    assert statements(script("sqlserver", sqlserver["ops]admin"]))[0] == "CREATE SERVER ROLE [ops]]admin];"
    assert statements(script("sqlserver", sqlserver["sysadmin"])) == []  # fixed: built in
    assert "IMPERSONATE ON LOGIN::[sa] TO [locked_one]" in script("sqlserver", sqlserver["locked_one"])


def test_sqlserver_revoke(sqlserver: dict[str, Subject]) -> None:
    writer = generator("sqlserver", OPTIONS)
    text = Renderer("sqlserver").render(
        revoke_lines(
            writer,
            sqlserver["app"],
            [
                ("object:sales.dbo.orders", "SELECT"),
                ("database:sales", "ROLE DB_DDLADMIN"),
                ("global", "VIEW SERVER STATE"),
            ],
            ["sales::reporting.sub"],
        )
    )
    assert "USE [sales];\nREVOKE SELECT ON OBJECT::[dbo].[orders] FROM [APP_USER] CASCADE;" in text
    assert "ALTER ROLE [db_ddladmin] DROP MEMBER [APP_USER];" in text
    assert "REVOKE VIEW SERVER STATE FROM [app] CASCADE;" in text
    assert "ALTER ROLE [reporting.sub] DROP MEMBER [APP_USER];" in text


# --- Oracle (recorded catalog rows) -----------------------------------------------------


@pytest.fixture(scope="module")
def oracle() -> dict[str, Subject]:
    return subjects("oracle", oracle_catalog(rows_of(load())))


def test_oracle_users_roles_privileges_and_proxies(oracle: dict[str, Subject]) -> None:
    owner = statements(script("oracle", oracle["APP_OWNER"]))
    assert owner == [
        'CREATE USER "APP_OWNER" IDENTIFIED BY "PH" DEFAULT TABLESPACE "USERS" TEMPORARY TABLESPACE "TEMP" '
        'PROFILE "DEFAULT";',
        'GRANT CREATE SESSION, CREATE TABLE TO "APP_OWNER";',
        'GRANT "APP_ADMIN" TO "APP_OWNER" WITH ADMIN OPTION;',
        'GRANT "CONNECT" TO "APP_OWNER";',
        'ALTER USER "APP_OWNER" DEFAULT ROLE "CONNECT";',
    ]
    mixed = script("oracle", oracle['Mixed.Case"User'])
    assert 'GRANT SELECT ON "APP_OWNER"."weird.table" TO "Mixed.Case""User" WITH GRANT OPTION;' in mixed
    batch = script("oracle", oracle["APP$BATCH#1"])
    assert 'GRANT READ ON DIRECTORY "DATA_PUMP_DIR" TO "APP$BATCH#1";' in batch
    assert 'GRANT UPDATE ("STATUS") ON "APP_OWNER"."ORDERS" TO "APP$BATCH#1";' in batch
    assert "NO AUTHENTICATION" in script("oracle", oracle["SCHEMA_ONLY"])
    assert "PASSWORD EXPIRE ACCOUNT LOCK;" in script("oracle", oracle["OLD_USER"])
    assert 'ALTER USER "APP_OWNER" GRANT CONNECT THROUGH "REPORT_SRV" WITH ROLE APP_ADMIN;' in script(
        "oracle", oracle["REPORT_SRV"]
    )
    assert statements(script("oracle", oracle["SYS"])) == []  # Oracle-maintained: comes with the database
    assert 'CREATE ROLE "APP_ADMIN" IDENTIFIED BY "PH";' in script("oracle", oracle["APP_ADMIN"])
    assert 'GRANT "APP_READ" TO PUBLIC;' in script("oracle", oracle["PUBLIC"])


def test_oracle_revoke(oracle: dict[str, Subject]) -> None:
    writer = generator("oracle", OPTIONS)
    text = Renderer("oracle").render(
        revoke_lines(
            writer,
            oracle["APP$BATCH#1"],
            [("object:SYS.DATA_PUMP_DIR", "READ"), ("global", "CREATE SESSION")],
            ["APP_READ"],
        )
    )
    assert 'REVOKE READ ON DIRECTORY "DATA_PUMP_DIR" FROM "APP$BATCH#1";' in text
    assert 'REVOKE CREATE SESSION FROM "APP$BATCH#1";' in text
    assert 'REVOKE "APP_READ" FROM "APP$BATCH#1";' in text


# --- malformed input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("privileges", "roles", "field"),
    [
        ([("nonsense", "SELECT")], [], "privileges"),
        ([("object:", "SELECT")], [], "privileges"),
        ([("database:x",)], [], "privileges"),
        ([("database:x", "")], [], "privileges"),
        ([("database:x", 5)], [], "privileges"),
        ([], [""], "roles"),
        ([], [], "privileges"),
    ],
)
def test_malformed_revoke_input_is_a_classified_error(privileges: Any, roles: Any, field: str) -> None:
    with pytest.raises(GrantScriptError) as caught:
        revoke_lines(generator("postgresql", OPTIONS), PG_ROLE, privileges, roles)
    assert caught.value.field == field


def test_unknown_family_is_refused() -> None:
    with pytest.raises(GrantScriptError):
        generator("db2", OPTIONS)


def test_postgresql_database_that_psql_cannot_connect_to_is_commented_out() -> None:
    subject = Subject(
        "postgresql",
        "r",
        "r",
        None,
        "role",
        snap([("schema:bad\ndb.s", "USAGE", False), ("schema:good.s", "USAGE", False)], login=False),
    )
    text = script("postgresql", subject)
    lines = text.splitlines()
    assert not [line for line in lines if line.startswith("\\connect") and "good" not in line]
    assert any(line.startswith("-- database bad\\x0adb has a control character") for line in lines)
    assert '-- GRANT USAGE ON SCHEMA "s" TO "r";' in lines  # commented out, not run in the wrong database
    assert lines[-2:] == ['\\connect "good"', 'GRANT USAGE ON SCHEMA "s" TO "r";']


def test_a_stored_scope_a_writer_cannot_state_is_a_comment_not_a_failure() -> None:
    subject = Subject(
        "sqlserver",
        "db::u",
        "u",
        None,
        "user",
        snap(
            [("object:db.class25.77", "CONTROL", False), ("database:db", "CONNECT", False)],
            database="db",
            authentication_type="NONE",
        ),
    )
    text = script("sqlserver", subject)
    assert "-- not written: scope 'object:db.class25.77' is not a SQL Server securable" in text
    assert "GRANT CONNECT TO [u];" in text
    writer = generator("sqlserver", OPTIONS)
    revoke = Renderer("sqlserver").render(revoke_lines(writer, subject, [("object:db.class25.77", "CONTROL")], []))
    assert "-- not written:" in revoke  # held: noted; a scope it does not hold is bad input
    with pytest.raises(GrantScriptError):
        revoke_lines(writer, subject, [("object:db.class99.1", "CONTROL")], [])
