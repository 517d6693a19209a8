"""Connection testing: can WhaleFall reach an instance with its credential?

Why here and not in `instances`: it needs the adapter registry, and the
dependency direction is instances <- accountsync.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from accountsync.adapters.base import (
    AdapterError,
    ConfigurationError,
    ConnectionTarget,
    ErrorKind,
    get_adapter,
    scrub,
)
from config.logging import log_event
from instances.models import Instance, instance_option_errors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionTestResult:
    instance_id: int
    instance_name: str
    ok: bool
    version: str = ""
    error_kind: str | None = None
    message: str = ""
    duration_ms: int = 0


def instance_connection_test(*, instance: Instance) -> ConnectionTestResult:
    """Connect with the real driver, record the server version, classify failures.

    Never raises for a remote failure: the admin and API show one classified
    line per instance, and the password can never reach that line.
    """
    started = time.monotonic()
    password: str | None = None
    try:
        # the options a save would refuse fail the test too: it never says "connected" for an instance
        # whose syncs will fail on them
        option_errors = instance_option_errors(instance.options, instance.db_type)
        if option_errors:
            raise ConfigurationError("invalid options: " + " ".join(option_errors), instance_name=instance.name)
        target = ConnectionTarget.from_instance(instance)
        password = target.password
        adapter = get_adapter(instance.db_type)
        version = adapter.test_connection(target)
    except AdapterError as exc:
        result = ConnectionTestResult(
            instance_id=instance.pk,
            instance_name=instance.name,
            ok=False,
            error_kind=exc.kind,
            message=scrub(str(exc), password),
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    except Exception as exc:  # a driver bug must not become a 500 or leak a secret
        result = ConnectionTestResult(
            instance_id=instance.pk,
            instance_name=instance.name,
            ok=False,
            error_kind=ErrorKind.INTERNAL,
            message=scrub(f"{instance.name}: unexpected {type(exc).__name__}: {exc}", password),
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    else:
        Instance.objects.filter(pk=instance.pk).update(version=version[:255])
        instance.version = version[:255]
        result = ConnectionTestResult(
            instance_id=instance.pk,
            instance_name=instance.name,
            ok=True,
            version=version,
            message=f"connected to {instance.name}: {version}",
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    log_event(
        logger,
        logging.INFO if result.ok else logging.WARNING,
        "connection test " + ("succeeded" if result.ok else f"failed ({result.error_kind}): {result.message}"),
        module="accountsync.connection",
        operation="connection_test",
        instance_id=instance.pk,
        db_type=instance.db_type,
        session_id=None,
        phase="connect",
        duration_ms=result.duration_ms,
    )
    return result
