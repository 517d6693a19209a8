"""The built-in roles, as Django groups.

Why groups and not flags: the admin and the API both check Django model
permissions, so one grant table drives what a person can see and start in
either interface. ``ensure_role_groups`` is idempotent and runs after every
``migrate`` so a permission added by a later migration reaches its roles too.
"""

from __future__ import annotations

from typing import Any

ADMINS = "WhaleFall admins"
OPERATORS = "Operators"
VIEWERS = "Viewers"
REVIEWERS = "Reviewers"

# apps whose models every role may view
PRODUCT_APPS = ("instances", "accountsync", "sync", "findings", "alerts", "classification", "baselines", "directory")
# operators manage these models fully (credentials stay view-only: no secret changes)
OPERATOR_MANAGED = {("instances", "instance"), ("instances", "tag"), ("alerts", "alertchannel")}
OPERATOR_EXTRA = {("sync", "run_sync")}
# reviewers see only the review campaigns they have items in, and decide only their own items (reviews/selectors.py)
REVIEWER_PERMISSIONS = {("reviews", "view_campaign"), ("reviews", "view_reviewitem"), ("reviews", "decide_reviewitem")}
ROLES = (ADMINS, OPERATORS, VIEWERS, REVIEWERS)


def role_permission_codenames(role: str, permissions: list[tuple[str, str, str]]) -> set[tuple[str, str]]:
    """Which ``(app_label, codename)`` a role holds, from ``(app_label, model, codename)`` rows."""
    chosen: set[tuple[str, str]] = set()
    for app_label, model, codename in permissions:
        if role == ADMINS:
            chosen.add((app_label, codename))
            continue
        if role == REVIEWERS:
            if (app_label, codename) in REVIEWER_PERMISSIONS:
                chosen.add((app_label, codename))
            continue
        if app_label not in PRODUCT_APPS:
            continue
        if codename.startswith("view_") or (
            role == OPERATORS and ((app_label, model) in OPERATOR_MANAGED or (app_label, codename) in OPERATOR_EXTRA)
        ):
            chosen.add((app_label, codename))
    return chosen


def ensure_role_groups(*, apps: Any = None, using: str = "default") -> None:
    """Create or update the role groups so each holds exactly its role's permissions."""
    if apps is None:
        from django.apps import apps as global_apps

        apps = global_apps
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    rows = list(
        permission_model.objects.using(using).values_list(
            "pk", "content_type__app_label", "content_type__model", "codename"
        )
    )
    by_key = {(app_label, codename): pk for pk, app_label, _model, codename in rows}
    triples = [(app_label, model, codename) for _pk, app_label, model, codename in rows]
    for role in ROLES:
        group, _ = group_model.objects.using(using).get_or_create(name=role)
        wanted = [by_key[key] for key in role_permission_codenames(role, triples)]
        group.permissions.set(wanted)


def post_migrate_roles(sender: Any, using: str = "default", apps: Any = None, **kwargs: Any) -> None:
    """post_migrate receiver: refresh the roles once every app's permissions exist.

    post_migrate fires once per app with models, in INSTALLED_APPS order, each time after that
    app's permissions were created; acting on the last one sees them all.
    """
    from django.apps import apps as global_apps

    with_models = [config for config in global_apps.get_app_configs() if config.models_module is not None]
    if sender is not with_models[-1]:  # apps without models get no post_migrate
        return
    # `flush` (TransactionTestCase teardown) sends no `apps`: the installed models are the current ones
    apps = apps or global_apps
    try:
        apps.get_model("auth", "Group")
    except LookupError:
        return
    ensure_role_groups(apps=apps, using=using)
