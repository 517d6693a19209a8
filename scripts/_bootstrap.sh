# shellcheck shell=bash
# Sourced by scripts/run, scripts/test and .ci/run: installs what WhaleFall needs on
# Debian 12 (as root), idempotently; a second run only checks and returns.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

apt_packages=(python3 python3-venv python3-dev gcc pkg-config default-libmysqlclient-dev libltdl7 gettext fonts-wqy-microhei
  libldap2-dev libsasl2-dev "$@")
# The sign-in tests start their own OpenLDAP server and OpenID Connect provider (node, from npm).
[ "${WHALEFALL_DEV:-0}" = "1" ] && apt_packages+=(slapd ldap-utils) && { command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm); }
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The sign-in tests run their own slapd (tests/ldapserver.py): the package must not set up and start
  # a system one on port 389.
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi

req_files=(requirements.txt)
[ "${WHALEFALL_DEV:-0}" = "1" ] && req_files=(requirements-dev.txt)
stamp=".venv/.installed-$(cat "${req_files[@]}" requirements.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> installing Python requirements (${req_files[*]})"
  for f in "${req_files[@]}"; do .venv/bin/pip install -q -r "$f"; done
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"

# The tests put deploy/nginx/whalefall.conf in front of gunicorn (tests/deploy/test_nginx_proxy.py).
# Debian's nginx package would start a daemon on port 80 when installed, so the binary is unpacked
# from the package into .venv/nginx instead (nothing installed, nothing started).
if [ "${WHALEFALL_DEV:-0}" = "1" ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x .venv/nginx/usr/sbin/nginx ]; then
  echo "==> unpacking Debian's nginx into .venv/nginx (for the proxy tests)"
  nginx_tmp="$(mktemp -d)" && chmod 755 "$nginx_tmp"  # apt downloads as _apt
  if ! (cd "$nginx_tmp" && apt-get download -qq nginx nginx-common >/dev/null 2>&1); then
    apt-get update -qq && (cd "$nginx_tmp" && apt-get download -qq nginx nginx-common >/dev/null) ||
      echo "==> could not download nginx; the proxy tests will say so" >&2
  fi
  for deb in "$nginx_tmp"/*.deb; do [ -f "$deb" ] && dpkg-deb -x "$deb" .venv/nginx; done
  rm -rf "$nginx_tmp"
fi
[ -x "$ROOT/.venv/nginx/usr/sbin/nginx" ] && export PATH="$PATH:$ROOT/.venv/nginx/usr/sbin"

# The OpenID Connect provider the sign-in tests start (tests/oidc/provider.mjs): npm's oidc-provider,
# pinned by tests/oidc/package-lock.json, installed into .venv/oidc (reinstalled when the lock changes).
if [ "${WHALEFALL_DEV:-0}" = "1" ]; then
  oidc_stamp=".venv/oidc/.installed-$(sha256sum tests/oidc/package-lock.json | cut -c1-16)"
  if [ ! -f "$oidc_stamp" ]; then
    echo "==> installing the test OpenID Connect provider into .venv/oidc"
    rm -rf .venv/oidc && mkdir -p .venv/oidc
    cp tests/oidc/package.json tests/oidc/package-lock.json .venv/oidc/
    npm ci --prefix .venv/oidc --no-audit --no-fund --silent && touch "$oidc_stamp"
  fi
fi
