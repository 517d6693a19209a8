"""deploy/nginx/whalefall.conf in front of gunicorn started as whalefall-web.service starts it (needs nginx).

The site file is used as shipped except for what has no counterpart here, each replaced exactly once: the
listen ports (free loopback ports instead of 80/443, no IPv6), the certificate (a self-signed one for the
name) and gunicorn's port. gunicorn gets the environment file with its database on a temporary SQLite file.
nginx runs in the foreground as one process (``master_process off``) with every path in a temporary folder.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.deploy import production as prod

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@pytest.fixture(autouse=True)
def _needs_nginx() -> None:
    """scripts/test unpacks Debian's nginx (scripts/_bootstrap.sh); without it CI fails rather than skips."""
    if NGINX is None:
        if os.environ.get("WHALEFALL_REQUIRE_LIVE") == "1":
            pytest.fail("no nginx binary (scripts/_bootstrap.sh unpacks one into .venv/nginx)")
        pytest.skip("needs an nginx binary")


HOST = "whalefall.example.com"
ADMIN_PASSWORD = "proxy-Adm1n-pass"


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def site_here(folder: Path, http_port: int, https_port: int, web_port: int) -> str:
    cert, key = self_signed(folder)
    text = prod.NGINX_SITE.read_text()
    for old, new in (
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen [::]:80;", ""),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("listen [::]:443 ssl http2;", ""),
        (f"ssl_certificate /etc/letsencrypt/live/{HOST}/fullchain.pem;", f"ssl_certificate {cert};"),
        (f"ssl_certificate_key /etc/letsencrypt/live/{HOST}/privkey.pem;", f"ssl_certificate_key {key};"),
        ("proxy_pass http://127.0.0.1:8000;", f"proxy_pass http://127.0.0.1:{web_port};"),
    ):
        assert text.count(old) == 1, f"deploy/nginx/whalefall.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


def nginx_conf(folder: Path, site: str) -> str:
    (folder / "site.conf").write_text(site)
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"    {kind}_temp_path {folder}/{kind};" for kind in kinds)
    return f"""daemon off;
master_process off;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {folder}/access.log;
{temp}
    include {folder}/site.conf;
}}
"""


def wait_until(predicate, what: str, proc: subprocess.Popen, log: Path) -> None:
    for _ in range(600):
        if predicate():
            return
        assert proc.poll() is None, f"{what}: exited\n{log.read_text()}"
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nginx-stack")
    env = {**prod.base_env(tmp), **prod.environment_file()}
    env["DATABASE_URL"] = f"sqlite:///{tmp / 'whalefall.sqlite3'}"
    env["WHALEFALL_VAR_DIR"] = str(tmp / "var")
    for line in prod.unit_values("whalefall-migrate.service", "ExecStart"):
        proc = prod.run(prod.exec_argv(line), env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = prod.manage("ensure_admin", env={**env, "WHALEFALL_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert proc.returncode == 0, proc.stderr

    web_port, http_port, https_port = prod.free_port(), prod.free_port(), prod.free_port()
    web_log, nginx_dir = tmp / "web.log", tmp / "nginx"
    nginx_dir.mkdir()
    (nginx_dir / "nginx.conf").write_text(nginx_conf(nginx_dir, site_here(nginx_dir, http_port, https_port, web_port)))
    nginx_argv = [NGINX, "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf")]
    test = subprocess.run([*nginx_argv, "-t"], capture_output=True, text=True, timeout=30)
    assert test.returncode == 0, test.stderr
    with open(web_log, "w") as log:
        web = subprocess.Popen(
            prod.gunicorn_argv(web_port), cwd=prod.ROOT, env=env, stdout=log, stderr=log, start_new_session=True
        )
    quiet = subprocess.DEVNULL
    nginx = subprocess.Popen(nginx_argv, stdout=quiet, stderr=quiet, start_new_session=True)
    try:
        wait_until(lambda: port_open(web_port), "gunicorn", web, web_log)
        wait_until(lambda: port_open(https_port), "nginx", nginx, nginx_dir / "error.log")
        yield {"http": http_port, "https": https_port, "web_log": web_log}
    finally:
        prod.stop(nginx)
        prod.stop(web)


def request(port: int, method: str, path: str, *, tls: bool, headers: dict | None = None, body: str | None = None):
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the self-signed certificate of this test
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Host": HOST, **(headers or {})})
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def cookies(response) -> dict[str, str]:
    """Set-Cookie headers by cookie name (the whole header, attributes included)."""
    return {SimpleCookie(v).popitem()[0]: v for k, v in response.getheaders() if k.lower() == "set-cookie"}


def test_plain_http_only_redirects(stack):
    for headers in ({}, {"X-Forwarded-Proto": "https"}):  # a client's header changes nothing on port 80
        response, _ = request(stack["http"], "GET", "/admin/login/?next=/admin/", tls=False, headers=headers)
        assert response.status == 301
        assert response.getheader("Location") == f"https://{HOST}/admin/login/?next=/admin/"


def test_healthz_through_the_proxy(stack):
    response, body = request(stack["https"], "GET", "/healthz", tls=True)
    assert response.status == 200 and json.loads(body) == {"status": "ok", "database": "ok"}


def test_the_admin_over_tls_hsts_secure_cookies_and_a_sign_in(stack):
    response, body = request(stack["https"], "GET", "/admin/login/", tls=True)
    assert response.status == 200, "Django took the request as https: no redirect loop"
    assert response.getheader("Strict-Transport-Security") == "max-age=31536000; includeSubDomains; preload"
    assert len([h for h in response.getheaders() if h[0].lower() == "strict-transport-security"]) == 1
    csrf_cookie = cookies(response)["csrftoken"]
    assert "Secure" in csrf_cookie
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    form = urlencode({"csrfmiddlewaretoken": token, "username": "admin", "password": ADMIN_PASSWORD, "next": "/admin/"})
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"csrftoken={SimpleCookie(csrf_cookie)['csrftoken'].value}",
        "Origin": f"https://{HOST}",
    }
    forged = {**headers, "Origin": "https://evil.example"}
    evil, _ = request(stack["https"], "POST", "/admin/login/", tls=True, headers=forged, body=form)
    assert evil.status == 403, "the CSRF origin check is on"
    signed_in, _ = request(stack["https"], "POST", "/admin/login/", tls=True, headers=headers, body=form)
    assert signed_in.status == 302 and signed_in.getheader("Location") == "/admin/"
    session = cookies(signed_in)["sessionid"]
    assert "Secure" in session and "HttpOnly" in session


def test_the_client_address_is_the_one_nginx_saw(stack):
    """A forged X-Forwarded-For entry is kept by nginx but never believed (WHALEFALL_LOGIN_PROXY_COUNT=1)."""
    response, body = request(stack["https"], "GET", "/admin/login/", tls=True)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    csrf = SimpleCookie(cookies(response)["csrftoken"])["csrftoken"].value
    form = urlencode({"csrfmiddlewaretoken": token, "username": "nobody-here", "password": "wrong", "next": "/admin/"})
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"csrftoken={csrf}",
        "Origin": f"https://{HOST}",
        "X-Forwarded-For": "203.0.113.9",
    }
    failed, _ = request(stack["https"], "POST", "/admin/login/", tls=True, headers=headers, body=form)
    assert failed.status == 200  # the form again, with its error
    log = stack["web_log"]
    for _ in range(100):
        lines = [json.loads(line) for line in log.read_text().splitlines() if '"login_failed"' in line]
        if lines:
            break
        time.sleep(0.1)
    (line,) = [entry for entry in lines if entry.get("username") == "nobody-here"]
    assert line["ip"] == "127.0.0.1", line
