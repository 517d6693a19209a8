"""The one TLS option schema every database family shares, and its validation.

An instance's ``options["tls"]`` says how its server is reached::

    {"mode": "verify-full", "ca": "-----BEGIN CERTIFICATE-----\\n..."}

``mode`` is ``disable``, ``require`` (encrypted, the certificate not checked), ``verify-ca`` (signed
by the CA) or ``verify-full`` (signed by the CA and naming the host the instance connects to). ``ca``
is the PEM bundle of the CAs trusted for this server (default: the system's trust store). SQL Server
also knows ``trust_server_certificate``, ``strict`` (TDS 8.0, Encrypt=strict) and
``host_name_in_certificate`` (see the SQL Server adapter). The client certificate belongs
to the credential (its private key is a secret, encrypted like the password).

Why the CA lives with the instance: it describes the server, and changing it (like the host) needs
the permission to change credentials (instances/policy.py), so nobody who may only edit instances can
make WhaleFall trust a certificate of theirs.
"""

from __future__ import annotations

import re
from typing import Any

from django.utils.translation import gettext as _

TLS_MODES = ("disable", "require", "verify-ca", "verify-full")
GENERIC_TLS_KEYS = {"mode", "ca"}
TLS_KEYS = GENERIC_TLS_KEYS | {"trust_server_certificate", "strict", "host_name_in_certificate"}  # + SQL Server's
# a DNS name, optionally starting with a wildcard label; nothing that could end an ODBC keyword
_CERT_HOST_RE = re.compile(r"^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$")
MAX_PEM_CHARS = 200_000  # a large corporate bundle is ~200 certificates


def pem_certificate_error(text: Any, what: str) -> str:
    """Why `text` is not a PEM bundle of X.509 certificates, or "" when it is."""
    if not isinstance(text, str) or not text.strip():
        return _("%(what)s must be PEM text (-----BEGIN CERTIFICATE-----).") % {"what": what}
    if len(text) > MAX_PEM_CHARS:
        return _("%(what)s is longer than %(max)d characters.") % {"what": what, "max": MAX_PEM_CHARS}
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        return _("%(what)s is not a PEM certificate bundle (-----BEGIN CERTIFICATE-----).") % {"what": what}
    return ""


def tls_option_errors(tls: Any, db_type: str | None) -> list[str]:
    """What is wrong with an instance's tls option for `db_type` (empty when it is valid or absent)."""
    if tls is None:
        return []
    if isinstance(tls, str):  # the short form {"tls": "require"}
        tls = {"mode": tls}
    if not isinstance(tls, dict):
        return [_('tls must be an object, e.g. {"mode": "verify-full", "ca": "-----BEGIN CERTIFICATE-----…"}.')]
    errors = []
    unknown = sorted(set(tls) - TLS_KEYS)
    if unknown:
        errors.append(
            _("tls: unknown key(s) %(keys)s; valid keys: %(valid)s.")
            % {
                "keys": ", ".join(unknown),
                "valid": ", ".join(sorted(TLS_KEYS if db_type in (None, "sqlserver") else GENERIC_TLS_KEYS)),
            }
        )
    mode = tls.get("mode")
    if mode is not None and mode not in TLS_MODES:
        errors.append(_("tls.mode must be one of %(modes)s.") % {"modes": ", ".join(TLS_MODES)})
    if "ca" in tls:
        if db_type == "sqlserver":
            errors.append(
                _(
                    "tls.ca: SQL Server's driver takes the CAs it trusts from the system trust store only; "
                    "install the CA there (/usr/local/share/ca-certificates, update-ca-certificates)."
                )
            )
        elif error := pem_certificate_error(tls["ca"], "tls.ca"):
            errors.append(error)
        if mode in (None, "disable", "require"):
            errors.append(_("tls.ca is only used with mode verify-ca or verify-full."))
    if "trust_server_certificate" in tls:
        if db_type not in (None, "sqlserver"):
            errors.append(_("tls.trust_server_certificate is a SQL Server setting."))
        elif not isinstance(tls["trust_server_certificate"], bool):
            errors.append(_("tls.trust_server_certificate must be true or false."))
    errors += _sqlserver_tls_errors(tls, db_type)
    return errors


def _sqlserver_tls_errors(tls: dict[str, Any], db_type: str | None) -> list[str]:
    """SQL Server's strict encryption (TDS 8.0, SQL Server 2022+) and the certificate's host name."""
    errors = []
    if "strict" in tls:
        if db_type not in (None, "sqlserver"):
            errors.append(_("tls.strict is a SQL Server setting."))
        elif not isinstance(tls["strict"], bool):
            errors.append(_("tls.strict must be true or false."))
        elif tls["strict"] and (tls.get("mode") == "disable" or tls.get("trust_server_certificate") is True):
            errors.append(
                _(
                    "tls.strict always encrypts and verifies: it cannot go with mode disable or "
                    "trust_server_certificate."
                )
            )
    if "host_name_in_certificate" in tls:
        value = tls["host_name_in_certificate"]
        if db_type not in (None, "sqlserver"):
            errors.append(_("tls.host_name_in_certificate is a SQL Server setting."))
        elif not isinstance(value, str) or not _CERT_HOST_RE.match(value):
            errors.append(_("tls.host_name_in_certificate must be a host name, e.g. ag1-listener.example.com."))
    return errors


def client_key_error(cert_pem: str, key_pem: str) -> str:
    """Why a client certificate and private key are unusable together, or "" when they fit."""
    if not cert_pem and not key_pem:
        return ""
    if not cert_pem or not key_pem:
        return _("A client certificate needs both the certificate and its private key.")
    if error := pem_certificate_error(cert_pem, _("The client certificate")):
        return error
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        return _("The client key is not an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----).")
    certificate = x509.load_pem_x509_certificates(cert_pem.encode())[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.PEM, public) != certificate.public_key().public_bytes(
        serialization.Encoding.PEM, public
    ):
        return _("The client key does not belong to the client certificate (their public keys differ).")
    return ""
