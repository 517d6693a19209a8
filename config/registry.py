"""WhaleFall's extension points, in one place.

Why one registry with fixed stores (NetBox keeps its ``registry`` the same way): every
way a feature can plug into a lower layer is listed here, so a reader sees them all in
one file and a typo in a store name fails at start instead of silently registering
nothing. Features register from their ``AppConfig.ready()``; the lower layer reads the
store when it runs. Database adapters keep their own registry in
``accountsync/adapters/base.py`` because they are looked up by ``db_type`` on every sync.

Stores:

- ``post_sync_hooks``: what runs after an instance's sync was applied (``sync.hooks``),
  by name, run in ``order`` (then name).
- ``record_failed_hooks``: what runs after a sync record ended ``failed`` (``sync.hooks``), by
  name: applied syncs reach ``post_sync_hooks``; a failure (any path: a worker, one process, the
  reaper) reaches these, after the failure committed.
- ``admin_actions``: extra admin actions per model label (``"accountsync.instanceaccount"``),
  offered by every admin built on the admin kit (``adminkit.kit.KitAdminMixin``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True, slots=True)
class PostSyncHook:
    """A subscriber to "an instance was applied"; lower ``order`` runs first."""

    name: str
    order: int
    func: Callable[[Any], None]


class Registry(dict):
    """A dict whose keys are fixed when it is made."""

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError(f"the registry's stores are fixed; cannot add {key!r}")

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"the registry's stores are fixed; cannot remove {key!r}")


registry = Registry(
    post_sync_hooks={},  # name -> PostSyncHook
    record_failed_hooks={},  # name -> func(record_id)
    admin_actions={},  # model label -> [admin action callables]
)


def post_sync_hook_register(*, name: str, order: int, func: Callable[[Any], None]) -> None:
    """Subscribe ``func(event)`` to applied syncs; registering the same hook again is a no-op.

    A second, different function under a taken name is a configuration error: two
    features would otherwise overwrite each other's summary in the record's details.
    """
    hooks: dict[str, PostSyncHook] = registry["post_sync_hooks"]
    current = hooks.get(name)
    if current is not None and (current.func is not func or current.order != order):
        raise ImproperlyConfigured(f"post-sync hook {name!r} is already registered by {current.func.__module__}")
    hooks[name] = PostSyncHook(name=name, order=order, func=func)


def post_sync_hook_unregister(*, name: str) -> None:
    """Remove a hook (tests, and a feature that is switched off at start)."""
    registry["post_sync_hooks"].pop(name, None)


def post_sync_hooks() -> list[PostSyncHook]:
    """The subscribers in the order they run: by ``order``, then by name, so ties are still deterministic."""
    return sorted(registry["post_sync_hooks"].values(), key=lambda hook: (hook.order, hook.name))


def record_failed_hook_register(*, name: str, func: Callable[[int], None]) -> None:
    """Subscribe ``func(record_id)`` to sync records that end failed; the same hook again is a no-op."""
    hooks: dict[str, Callable[[int], None]] = registry["record_failed_hooks"]
    current = hooks.get(name)
    if current is not None and current is not func:
        raise ImproperlyConfigured(f"record-failed hook {name!r} is already registered by {current.__module__}")
    hooks[name] = func


def record_failed_hooks() -> list[tuple[str, Callable[[int], None]]]:
    """The subscribers to failed records, by name."""
    return sorted(registry["record_failed_hooks"].items())


def admin_action_register(*, model: str, action: Callable[..., Any]) -> None:
    """Offer ``action`` on the admin of ``model`` (``app_label.modelname``) without importing that admin."""
    actions: list[Callable[..., Any]] = registry["admin_actions"].setdefault(model.lower(), [])
    if all(existing.__name__ != action.__name__ for existing in actions):
        actions.append(action)


def admin_actions_for(model: str) -> list[Callable[..., Any]]:
    """The registered actions of one model, in registration order."""
    return list(registry["admin_actions"].get(model.lower(), ()))
