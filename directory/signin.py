"""Sign-in with LDAP/Active Directory (django-auth-ldap) and OpenID Connect (mozilla-django-oidc).

Why these backends exist: people sign in with the directory they already have, and what they may do
in WhaleFall follows the directory's groups, read again at every sign-in (a person moved out of the
admins' group is an operator at their next sign-in, one in no mapped group gets no access). Both
backends are added to AUTHENTICATION_BACKENDS only when configured (config/settings.py,
docs/sign-in.md), after the lockout and the local accounts:

- Local accounts stay the break-glass path: a user with a usable local password is never signed in,
  changed or demoted through the directory, and ModelBackend checks it first, so an unreachable
  directory never stands between the local admin and the admin.
- Directory users are created with an unusable password, ``is_staff`` set, their role groups made
  exactly the mapped ones (other groups left alone), and ``is_superuser`` only when a configured
  superuser group says so (never otherwise).
- Every outcome is noted on the request (``signin_note``) for the audit events that
  api/lockout.py writes on Django's ``user_logged_in`` / ``user_login_failed`` signals:
  audit.services adds the note's ``method`` (local/ldap/oidc) and ``reason`` to the event's details.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django_auth_ldap.backend import LDAPBackend
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView

from config.logging import log_event
from sync.roles import ADMINS, OPERATORS, REVIEWERS, VIEWERS

logger = logging.getLogger("whalefall.auth")

# settings' role keys (config/settings.py) -> the role groups (sync/roles.py)
ROLE_GROUPS = {"admins": ADMINS, "operators": OPERATORS, "viewers": VIEWERS, "reviewers": REVIEWERS}
# read by audit.services.audit_record for the sign-in events of this request
SIGNIN_ATTR = "whalefall_signin"
MAX_ERROR = 200


def signin_note(request: HttpRequest | None, method: str, reason: str | None = None, **extra: Any) -> None:
    """Say how this request's sign-in went, for its audit event (no secret ever goes in here)."""
    if request is None:
        return
    note: dict[str, Any] = {"method": method}
    if reason:
        note["reason"] = reason
    note.update({k: v for k, v in extra.items() if v not in (None, "")})
    setattr(request, SIGNIN_ATTR, note)


def _tell(request: HttpRequest | None, text: str) -> None:
    """A message on the login page: only for what the person can act on (never 'wrong password for whom')."""
    if request is None:
        return
    # a request without the messages middleware (a shell, a test's request factory) gets none
    with contextlib.suppress(messages.MessageFailure):
        messages.error(request, text)


def roles_for(memberships: set[str], mapping: dict[str, list[str]]) -> list[str]:
    """The role groups whose configured directory groups the person is in (case-insensitive)."""
    have = {m.strip().lower() for m in memberships}
    return sorted(
        ROLE_GROUPS[key] for key, wanted in mapping.items() if key in ROLE_GROUPS and have & {w.lower() for w in wanted}
    )


def is_superuser_for(memberships: set[str], superuser_groups: list[str]) -> bool:
    have = {m.strip().lower() for m in memberships}
    return bool(have & {g.lower() for g in superuser_groups})


def apply_directory_roles(user: Any, roles: list[str], superuser: bool) -> None:
    """Make a directory user's role groups exactly `roles`; is_staff while it has one, is_superuser as configured.

    Why only the role groups: an admin may have put the person in another group by hand; the directory
    decides the roles, not everything. Changes are model history (django-auditlog tracks auth.User and
    its groups), so a promotion or demotion by the directory is in the audit trail like one by hand.
    """
    with transaction.atomic():
        flags = {"is_staff": bool(roles) or superuser, "is_superuser": superuser}
        changed = [field for field, value in flags.items() if getattr(user, field) != value]
        for field in changed:
            setattr(user, field, flags[field])
        if changed:
            user.save(update_fields=changed)
        role_groups = {g.name: g for g in Group.objects.filter(name__in=ROLE_GROUPS.values())}
        missing = set(roles) - set(role_groups)
        if missing:  # ensure_role_groups runs after every migrate: only a broken install lacks them
            log_event(
                logger, logging.ERROR, "role group missing", module="auth", operation="signin", roles=sorted(missing)
            )
        current = set(user.groups.filter(name__in=role_groups).values_list("name", flat=True))
        remove = [role_groups[name] for name in current - set(roles)]
        add = [role_groups[name] for name in set(roles) - current if name in role_groups]
        if remove:
            user.groups.remove(*remove)
        if add:
            user.groups.add(*add)


def revoke_directory_roles(username: str) -> None:
    """The directory gives this person no role any more: a directory user of that name loses its roles now.

    Why at a refused sign-in: the directory was just asked and said no, so sessions the person still has
    must not keep the access (a local account is never touched).
    """
    model = get_user_model()
    user = model.objects.filter(**{f"{model.USERNAME_FIELD}__iexact": username}).first()
    if user is not None and not user.has_usable_password():
        apply_directory_roles(user, [], False)


def _local_account(username: str) -> Any:
    """The existing user of that name when it is a local account (has a usable password), else None."""
    model = get_user_model()
    user = model.objects.filter(**{f"{model.USERNAME_FIELD}__iexact": username}).first()
    return user if user is not None and user.has_usable_password() else None


def _ldap_error(exc: Exception) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    text = " ".join(str(info.get(k, "")) for k in ("desc", "info") if info.get(k)) or type(exc).__name__
    return text[:MAX_ERROR]


# --- LDAP / Active Directory ---------------------------------------------------------------------------

GROUP_TYPES = {
    "groupOfNames": "GroupOfNamesType",
    "nestedGroupOfNames": "NestedGroupOfNamesType",
    "groupOfUniqueNames": "GroupOfUniqueNamesType",
    "nestedGroupOfUniqueNames": "NestedGroupOfUniqueNamesType",
    "activeDirectory": "ActiveDirectoryGroupType",
    "nestedActiveDirectory": "NestedActiveDirectoryGroupType",
    "posixGroup": "PosixGroupType",
}


def _attr_map(raw: str) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in raw.split(",") if p.strip()]
    if any(len(p) != 2 for p in pairs):
        raise ImproperlyConfigured(f"WHALEFALL_LDAP_ATTR_MAP={raw!r}: expected field=attribute,... pairs")
    return {field.strip(): attr.strip() for field, attr in pairs}


class LDAPSignInBackend(LDAPBackend):
    """django-auth-ldap, configured from settings.WHALEFALL_LDAP, mapping groups to roles at every sign-in."""

    signin_method = "ldap"
    _signin_request: HttpRequest | None = None

    @property
    def default_settings(self) -> dict[str, Any]:  # type: ignore[override]
        """django-auth-ldap's settings built from WhaleFall's plain ones (AUTH_LDAP_* still win)."""
        import django_auth_ldap.config as ldap_config
        import ldap

        conf = settings.WHALEFALL_LDAP
        timeout = float(conf.get("timeout") or 5)
        options: dict[int, Any] = {
            ldap.OPT_PROTOCOL_VERSION: 3,
            ldap.OPT_REFERRALS: 0,  # Active Directory: never chase referrals with our bind
            ldap.OPT_NETWORK_TIMEOUT: timeout,
            ldap.OPT_TIMEOUT: timeout,
            ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND,  # LDAPS/StartTLS: always verify the server
        }
        if conf.get("ca_file"):
            options[ldap.OPT_X_TLS_CACERTFILE] = conf["ca_file"]
        options[ldap.OPT_X_TLS_NEWCTX] = 0  # last: builds this connection's TLS context from the options above
        type_name = conf.get("group_type") or "groupOfNames"
        if type_name not in GROUP_TYPES:
            raise ImproperlyConfigured(
                f"WHALEFALL_LDAP_GROUP_TYPE={type_name!r}: one of {', '.join(sorted(GROUP_TYPES))}"
            )
        return {
            "USER_SEARCH": ldap_config.LDAPSearch(conf["user_base"], ldap.SCOPE_SUBTREE, conf["user_filter"]),
            "GROUP_SEARCH": ldap_config.LDAPSearch(
                conf.get("group_base") or conf["user_base"], ldap.SCOPE_SUBTREE, conf["group_filter"]
            ),
            "GROUP_TYPE": getattr(ldap_config, GROUP_TYPES[type_name])(),
            "USER_ATTR_MAP": _attr_map(conf.get("attr_map") or ""),
            "ALWAYS_UPDATE_USER": True,
            "FIND_GROUP_PERMS": False,  # permissions come from the role groups (ModelBackend)
            "CACHE_TIMEOUT": 0,  # groups read at every sign-in: a directory change counts at the next one
            "CONNECTION_OPTIONS": options,
        }

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password=None, **kwargs):
        self._signin_request = request
        return super().authenticate(request, username=username, password=password, **kwargs)

    def authenticate_ldap_user(self, ldap_user: Any, password: str) -> Any:
        """Tell an outage, an unknown person, a disabled one and a wrong password apart, then sign in."""
        import ldap

        request = self._signin_request
        username = self.django_to_ldap_username(ldap_user._username)
        if _local_account(self.ldap_to_django_username(username)) is not None:
            # break-glass: ModelBackend already judged this local account's password (and refused it)
            signin_note(request, "local", "invalid_credentials")
            return None
        try:
            ldap_user.connection  # noqa: B018 - the service bind: an outage or a refused bind account shows here
            dn = ldap_user.dn
            disabled = dn is not None and self._disabled(ldap_user.connection, dn)
        except ldap.LDAPError as exc:
            error = _ldap_error(exc)
            signin_note(request, "ldap", "directory_unavailable", error=error)
            log_event(logger, logging.WARNING, "directory unavailable", module="auth", operation="signin", error=error)
            _tell(request, _("The directory could not be reached. Try again later, or use a local account."))
            return None
        if dn is None:
            signin_note(request, "ldap", "unknown_user")
            return None
        if disabled:
            signin_note(request, "ldap", "disabled", dn=dn)
            return None
        user = ldap_user.authenticate(password)
        if user is None:
            if getattr(request, SIGNIN_ATTR, {}).get("reason") != "no_role":
                signin_note(request, "ldap", "invalid_credentials", dn=dn)
            return None
        if not user.is_active:
            signin_note(request, "ldap", "inactive", dn=dn)
            return None
        roles, superuser = getattr(ldap_user, "_whalefall_roles", ([], False))
        apply_directory_roles(user, roles, superuser)
        signin_note(request, "ldap", dn=dn, roles=roles)
        return user

    def get_or_build_user(self, username: str, ldap_user: Any) -> tuple[Any, bool]:
        """Called once the person's password bind succeeded: refuse here when no group gives a role."""
        conf = settings.WHALEFALL_LDAP
        memberships = set(ldap_user.group_dns)
        roles = roles_for(memberships, conf.get("roles") or {})
        superuser = is_superuser_for(memberships, conf.get("superuser_groups") or [])
        if not roles and not superuser:
            request = self._signin_request
            signin_note(request, "ldap", "no_role", dn=ldap_user.dn)
            _tell(request, _("You signed in, but none of your directory groups gives access to WhaleFall."))
            revoke_directory_roles(username)
            raise ldap_user.AuthenticationFailed("no WhaleFall role")
        ldap_user._whalefall_roles = (roles, superuser)
        return super().get_or_build_user(username, ldap_user)

    @staticmethod
    def _disabled(connection: Any, dn: str) -> bool:
        """The configured disabled filter (AD: userAccountControl bit 2) matches the person's entry."""
        import ldap

        flt = settings.WHALEFALL_LDAP.get("disabled_filter") or ""
        if not flt:
            return False
        try:
            found = connection.search_s(dn, ldap.SCOPE_BASE, flt, ["1.1"])
        except ldap.NO_SUCH_OBJECT:
            return False
        return any(entry_dn for entry_dn, _attrs in found if entry_dn)


# --- OpenID Connect ------------------------------------------------------------------------------------


def _claim_list(value: Any) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        return {value}
    if isinstance(value, (list, tuple, set)):
        return {str(v) for v in value if v is not None}
    return set()


class OIDCSignInBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's code flow; the user is named by a claim, roles come from the groups claim."""

    signin_method = "oidc"

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        if request is None or not (request.GET.get("code") and request.GET.get("state")) or not _is_callback(request):
            return None  # a password sign-in, or anything but the provider's redirect back
        try:
            return super().authenticate(request, **kwargs)
        except Exception as exc:  # the provider's answer: a refused code, a bad signature, a network error
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
            signin_note(request, "oidc", "provider_error", error=error)
            log_event(logger, logging.WARNING, "oidc sign-in failed", module="auth", operation="signin", error=error)
            _tell(request, _("The sign-in provider's answer could not be used. Try again."))
            return None

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict) -> Any:
        conf = settings.WHALEFALL_OIDC
        claims = {**payload, **(self.get_userinfo(access_token, id_token, payload) or {})}
        request = self.request
        username = str(claims.get(conf["username_claim"]) or "").strip()
        if not username or len(username) > 150:
            signin_note(request, "oidc", "no_username", claim=conf["username_claim"])
            _tell(
                request,
                _("The sign-in provider did not say who you are (no %(claim)s).") % {"claim": conf["username_claim"]},
            )
            return None
        memberships = _claim_list(claims.get(conf["groups_claim"]))
        roles = roles_for(memberships, conf.get("roles") or {})
        superuser = is_superuser_for(memberships, conf.get("superuser_groups") or [])
        if _local_account(username) is not None:
            signin_note(request, "oidc", "local_account", username=username)
            _tell(request, _("%(name)s is a local account: sign in with its password.") % {"name": username})
            return None
        if not roles and not superuser:
            signin_note(request, "oidc", "no_role", username=username)
            revoke_directory_roles(username)
            _tell(
                request,
                _("You signed in as %(name)s, but none of your groups gives access to WhaleFall. Ask an administrator.")
                % {"name": username},
            )
            return None
        model = self.UserModel
        with transaction.atomic():
            user = model.objects.filter(**{f"{model.USERNAME_FIELD}__iexact": username}).first()
            if user is not None and not user.is_active:
                signin_note(request, "oidc", "inactive", username=username)
                return None
            if user is None:
                user = model(**{model.USERNAME_FIELD: username})
                user.set_unusable_password()
            for field, claim in (("email", "email"), ("first_name", "given_name"), ("last_name", "family_name")):
                if claims.get(claim):
                    setattr(user, field, str(claims[claim])[:150])
            user.save()
            apply_directory_roles(user, roles, superuser)
        signin_note(request, "oidc", username=username, roles=roles)
        return user


def _is_callback(request: HttpRequest) -> bool:
    try:
        return request.path_info == reverse(settings.OIDC_AUTHENTICATION_CALLBACK_URL)
    except NoReverseMatch:
        return False


class SignInCallbackView(OIDCAuthenticationCallbackView):
    """The provider's redirect back; an error it sends (the person cancelled, access denied) is a failed sign-in."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any):
        error = request.GET.get("error")
        if error:
            signin_note(request, "oidc", "provider_error", error=str(error)[:64])
            user_login_failed.send(sender=__name__, credentials={}, request=request)
            _tell(request, _("The sign-in provider refused the sign-in (%(error)s).") % {"error": str(error)[:64]})
        return super().get(request, *args, **kwargs)


def signin_context(request: HttpRequest) -> dict[str, Any]:
    """Template context (settings.TEMPLATES, when OIDC is on): the login page's "Sign in with ..." button."""
    if not getattr(settings, "WHALEFALL_OIDC_ENABLED", False):
        return {}
    try:
        url = reverse("oidc_authentication_init")
    except NoReverseMatch:
        return {}
    return {"whalefall_oidc_signin": {"url": url, "name": settings.WHALEFALL_OIDC["provider_name"]}}
