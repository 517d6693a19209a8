"""How to reach and read the directory, from WHALEFALL_DIRECTORY_* environment variables (docs/directory.md).

Why read at call time and not frozen into settings: the scheduled task, the command and the tests read
the same variables, and a changed filter takes effect on the next read without a restart of the
cluster's settings module. The defaults are Active Directory's; an OpenLDAP tree changes the
attribute names (docs/directory.md shows both).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured

PREFIX = "WHALEFALL_DIRECTORY_"
LINK_RULES = ("mapping", "windows", "username", "mail")
# Windows principals that are the machine's or the OS's, never a person of the directory
WELL_KNOWN_DOMAINS = frozenset({"NT AUTHORITY", "NT SERVICE", "BUILTIN", "NT VIRTUAL MACHINE", "FONT DRIVER HOST"})
AD_DISABLED_BIT = 2  # userAccountControl ACCOUNTDISABLE


def _env(name: str, default: str = "") -> str:
    value = os.environ.get(PREFIX + name)
    return default if value is None or value.strip() == "" else value.strip()


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = _env(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{PREFIX}{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{PREFIX}{name}={value} must be at least {minimum}")
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name, "")
    if not raw:
        return default
    return raw.lower() in ("1", "true", "yes", "on")


def _list(raw: str, sep: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(sep) if part.strip())


@dataclass(frozen=True)
class DirectoryConf:
    uri: str = ""
    bind_dn: str = ""
    bind_password: str = field(default="", repr=False)
    ca_file: str = ""
    start_tls: bool = False
    timeout: int = 30
    page_size: int = 500
    user_bases: tuple[str, ...] = ()
    user_filter: str = "(&(objectCategory=person)(objectClass=user))"
    group_bases: tuple[str, ...] = ()
    group_filter: str = "(objectClass=group)"
    attr_guid: str = "objectGUID"
    attr_username: str = "sAMAccountName"
    attr_name: str = "displayName"
    attr_mail: str = "mail"
    attr_manager: str = "manager"
    attr_department: str = "department"
    attr_group_name: str = "sAMAccountName"
    attr_member: str = "member"
    disabled_attr: str = "userAccountControl"
    disabled_value: str = ""
    windows_domains: tuple[str, ...] = ()
    link_rules: tuple[str, ...] = LINK_RULES

    @property
    def enabled(self) -> bool:
        return bool(self.uri)

    def is_disabled(self, values: list[str]) -> bool:
        """AD: bit 2 of userAccountControl; otherwise the attribute holds the value (``*``: is present at all)."""
        if self.disabled_attr.lower() == "useraccountcontrol" and not self.disabled_value:
            for value in values:
                try:
                    if int(value) & AD_DISABLED_BIT:
                        return True
                except ValueError:
                    continue
            return False
        if self.disabled_value == "*":
            return bool(values)
        wanted = (self.disabled_value or "TRUE").lower()
        return any(value.lower() == wanted for value in values)


def directory_conf() -> DirectoryConf:
    """The current configuration; a value that cannot be right stops with ImproperlyConfigured naming it."""
    base = _env("BASE_DN")
    rules = tuple(r.lower() for r in _list(_env("LINK_RULES", ",".join(LINK_RULES)), ","))
    unknown = [r for r in rules if r not in LINK_RULES]
    if unknown:
        raise ImproperlyConfigured(
            f"{PREFIX}LINK_RULES names {', '.join(unknown)}; the rules are {', '.join(LINK_RULES)}"
        )
    uri = _env("URI")
    if uri and not all(u.startswith(("ldap://", "ldaps://", "ldapi://")) for u in uri.split()):
        raise ImproperlyConfigured(f"{PREFIX}URI must be ldap://, ldaps:// or ldapi:// addresses")
    conf = DirectoryConf(
        uri=uri,
        bind_dn=_env("BIND_DN"),
        bind_password=os.environ.get(PREFIX + "BIND_PASSWORD", ""),
        ca_file=_env("CA_FILE"),
        start_tls=_env_bool("START_TLS", False),
        timeout=_env_int("TIMEOUT", 30),
        page_size=_env_int("PAGE_SIZE", 500),
        user_bases=_list(_env("USER_BASE", base), ";"),
        user_filter=_env("USER_FILTER", DirectoryConf.user_filter),
        group_bases=_list(_env("GROUP_BASE", base), ";"),
        group_filter=_env("GROUP_FILTER", DirectoryConf.group_filter),
        attr_guid=_env("ATTR_GUID", DirectoryConf.attr_guid),
        attr_username=_env("ATTR_USERNAME", DirectoryConf.attr_username),
        attr_name=_env("ATTR_NAME", DirectoryConf.attr_name),
        attr_mail=_env("ATTR_MAIL", DirectoryConf.attr_mail),
        attr_manager=_env("ATTR_MANAGER", DirectoryConf.attr_manager),
        attr_department=_env("ATTR_DEPARTMENT", DirectoryConf.attr_department),
        attr_group_name=_env("ATTR_GROUP_NAME", DirectoryConf.attr_group_name),
        attr_member=_env("ATTR_MEMBER", DirectoryConf.attr_member),
        disabled_attr=_env("DISABLED_ATTR", DirectoryConf.disabled_attr),
        disabled_value=_env("DISABLED_VALUE", ""),
        windows_domains=tuple(d.upper() for d in _list(_env("WINDOWS_DOMAINS"), ",")),
        link_rules=rules,
    )
    if conf.enabled and not conf.user_bases:
        raise ImproperlyConfigured(f"{PREFIX}BASE_DN (or {PREFIX}USER_BASE) is required with {PREFIX}URI")
    return conf
