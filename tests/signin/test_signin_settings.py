"""Directory sign-in is off by default and switched on by its environment variables (config/settings.py).

Each case imports the real settings and URLs in a fresh interpreter with the environment given, as
`scripts/run` or the container would start WhaleFall.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.urls import NoReverseMatch, reverse
try:
    oidc_url = reverse("oidc_authentication_init")
except NoReverseMatch:
    oidc_url = None
print(json.dumps({
    "backends": settings.AUTHENTICATION_BACKENDS,
    "processors": settings.TEMPLATES[0]["OPTIONS"]["context_processors"],
    "oidc_url": oidc_url,
    "ldap_uri": settings.AUTH_LDAP_SERVER_URI,
    "ldap": settings.WHALEFALL_LDAP,
    "oidc": settings.WHALEFALL_OIDC,
    "oidc_client": settings.OIDC_RP_CLIENT_ID,
    "oidc_token": settings.OIDC_OP_TOKEN_ENDPOINT,
}))
"""


def probe(**variables: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHALEFALL_LDAP_", "WHALEFALL_OIDC_"))}
    env.update(variables, DJANGO_SETTINGS_MODULE="config.settings")
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_off_by_default_no_backend_no_url_no_button():
    seen = probe()
    assert seen["backends"] == ["api.lockout.LockoutBackend", "django.contrib.auth.backends.ModelBackend"]
    assert "directory.signin.signin_context" not in seen["processors"]
    assert seen["oidc_url"] is None
    assert seen["ldap_uri"] == "" and seen["oidc_client"] == ""


def test_ldap_is_switched_on_by_its_variables_after_the_local_accounts():
    seen = probe(
        WHALEFALL_LDAP_URI="ldaps://dc1.corp.example:636",
        WHALEFALL_LDAP_USER_FILTER="(sAMAccountName=%(user)s)",
        WHALEFALL_LDAP_GROUP_TYPE="nestedActiveDirectory",
        WHALEFALL_LDAP_ROLE_ADMINS="CN=WF Admins,OU=Groups,DC=corp,DC=example;CN=DBA,OU=Groups,DC=corp,DC=example",
        WHALEFALL_LDAP_ROLE_VIEWERS="CN=Auditors,OU=Groups,DC=corp,DC=example",
    )
    assert seen["backends"] == [
        "api.lockout.LockoutBackend",
        "django.contrib.auth.backends.ModelBackend",
        "directory.signin.LDAPSignInBackend",
    ]
    assert seen["ldap_uri"] == "ldaps://dc1.corp.example:636"
    assert seen["ldap"]["user_filter"] == "(sAMAccountName=%(user)s)"
    assert seen["ldap"]["roles"] == {
        "admins": ["CN=WF Admins,OU=Groups,DC=corp,DC=example", "CN=DBA,OU=Groups,DC=corp,DC=example"],
        "operators": [],
        "viewers": ["CN=Auditors,OU=Groups,DC=corp,DC=example"],
        "reviewers": [],
    }
    assert seen["ldap"]["superuser_groups"] == [] and seen["oidc_url"] is None


def test_oidc_is_switched_on_by_its_variables_with_its_urls_and_button():
    seen = probe(
        WHALEFALL_OIDC_CLIENT_ID="whalefall",
        WHALEFALL_OIDC_CLIENT_SECRET="s3cret",
        WHALEFALL_OIDC_AUTHORIZATION_ENDPOINT="https://idp.example/auth",
        WHALEFALL_OIDC_TOKEN_ENDPOINT="https://idp.example/token",
        WHALEFALL_OIDC_USERINFO_ENDPOINT="https://idp.example/userinfo",
        WHALEFALL_OIDC_JWKS_ENDPOINT="https://idp.example/jwks",
        WHALEFALL_OIDC_PROVIDER_NAME="Okta",
        WHALEFALL_OIDC_ROLE_OPERATORS="dba,ops",
    )
    assert seen["backends"][-1] == "directory.signin.OIDCSignInBackend"
    assert "directory.signin.LDAPSignInBackend" not in seen["backends"]
    assert "directory.signin.signin_context" in seen["processors"]
    assert seen["oidc_url"] == "/oidc/authenticate/"
    assert seen["oidc_client"] == "whalefall" and seen["oidc_token"] == "https://idp.example/token"
    assert seen["oidc"]["provider_name"] == "Okta" and seen["oidc"]["roles"]["operators"] == ["dba", "ops"]


def test_the_login_page_has_no_provider_button_when_oidc_is_off(client, db):
    page = client.get("/admin/login/").content.decode()
    assert 'id="login-form"' in page and "oidc-signin" not in page and "Sign in with" not in page
