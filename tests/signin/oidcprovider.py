"""A real OpenID Connect provider on loopback: panva's oidc-provider (npm) run by node.

Why a real one: the sign-in must be proven against the protocol as a provider speaks it (discovery
document, authorization code flow with PKCE, RS256-signed ID tokens checked against the JWKS, the
userinfo endpoint), not a mock of it. tests/oidc/provider.mjs is the provider's configuration; this
module writes its config (a client for the test's Django live server, an RSA signing key generated
for the run, the accounts file) and starts node on a free port on 127.0.0.1. The package is
installed into .venv/oidc by scripts/_bootstrap.sh (pinned by tests/oidc/package-lock.json); when
node or the package is missing the tests skip, and fail under WHALEFALL_REQUIRE_LIVE=1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "oidc" / "provider.mjs"
NODE_MODULES = ROOT / ".venv" / "oidc" / "node_modules"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signing_jwk() -> dict:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = key.private_numbers()
    pub = priv.public_numbers
    return {
        "kty": "RSA",
        "kid": "wf-test-" + secrets.token_hex(4),
        "use": "sig",
        "alg": "RS256",
        "n": _b64(pub.n),
        "e": _b64(pub.e),
        "d": _b64(priv.d),
        "p": _b64(priv.p),
        "q": _b64(priv.q),
        "dp": _b64(priv.dmp1),
        "dq": _b64(priv.dmq1),
        "qi": _b64(priv.iqmp),
    }


@dataclass
class OidcProvider:
    folder: Path
    port: int
    client_id: str
    client_secret: str
    process: subprocess.Popen | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def discovery(self) -> dict:
        with urllib.request.urlopen(f"{self.issuer}/.well-known/openid-configuration", timeout=10) as response:
            return json.loads(response.read())

    def settings(self) -> dict:
        """The WhaleFall settings (config/settings.py names) that point sign-in at this provider."""
        meta = self.discovery()
        return {
            "OIDC_RP_CLIENT_ID": self.client_id,
            "OIDC_RP_CLIENT_SECRET": self.client_secret,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": meta["authorization_endpoint"],
            "OIDC_OP_TOKEN_ENDPOINT": meta["token_endpoint"],
            "OIDC_OP_USER_ENDPOINT": meta["userinfo_endpoint"],
            "OIDC_OP_JWKS_ENDPOINT": meta["jwks_uri"],
            "OIDC_RP_SIGN_ALGO": "RS256",
        }

    def set_accounts(self, accounts: dict[str, dict]) -> None:
        """{username: {"password": ..., "claims": {...}}}; the provider reads it on every login."""
        path = self.folder / "accounts.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(accounts))
        tmp.replace(path)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)


def provider_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_MODULES / "oidc-provider").is_dir():
        return "oidc-provider is not installed in .venv/oidc (scripts/_bootstrap.sh with WHALEFALL_DEV=1)"
    return None


def start_oidc_provider(redirect_uris: list[str], port: int) -> OidcProvider:
    """Start the provider with one confidential client allowed to return to `redirect_uris`."""
    folder = Path(tempfile.mkdtemp(prefix="wf-oidc-"))
    client_id = "whalefall-test"
    client_secret = secrets.token_urlsafe(24)
    provider = OidcProvider(folder=folder, port=port, client_id=client_id, client_secret=client_secret)
    provider.set_accounts({})
    config = {
        "issuer": provider.issuer,
        "port": port,
        "accounts_file": str(folder / "accounts.json"),
        "cookie_key": secrets.token_urlsafe(32),
        "jwks": {"keys": [_signing_jwk()]},
        "clients": [
            {
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uris": redirect_uris,
                "response_types": ["code"],
                "grant_types": ["authorization_code"],
                "token_endpoint_auth_method": "client_secret_post",
            }
        ],
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "config.json").chmod(0o600)
    log = open(folder / "provider.log", "wb")  # noqa: SIM115 - handed to the process
    # node resolves `import "oidc-provider"` from the script's own folder upwards (NODE_PATH does not apply
    # to ES modules): the script runs from a copy beside the installed package.
    script = NODE_MODULES.parent / "provider.mjs"
    tmp = script.with_name(f".provider-{os.getpid()}.mjs")
    shutil.copyfile(SCRIPT, tmp)
    tmp.replace(script)
    provider.process = subprocess.Popen(
        ["node", str(script), str(folder / "config.json")], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if provider.process.poll() is not None:
            text = (folder / "provider.log").read_text(errors="replace")
            provider.stop()
            raise RuntimeError(f"oidc-provider exited: {text[-2000:]}")
        with contextlib.suppress(OSError):
            provider.discovery()
            return provider
        time.sleep(0.2)
    provider.stop()
    raise RuntimeError("oidc-provider did not answer")
