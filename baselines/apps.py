"""Approved baselines of effective access, and drift findings when access leaves them."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop


class BaselinesConfig(AppConfig):
    """Plugs drift into the layers below through the registry: the rule, the post-sync hook, the admin actions.

    Why ``high`` for DRIFT: a baseline exists because someone signed this access off; any access
    beyond it is access nobody approved (the classic path of privilege creep and of a grant made
    outside change control), and access short of it means the signed-off picture an auditor relies
    on is no longer true. Either invalidates a sign-off, which outranks hygiene findings (medium).
    """

    name = "baselines"
    verbose_name = _("Baselines")

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from baselines.actions import approve_accounts_action, approve_instances_action
        from baselines.models import Baseline, BaselineVersion
        from baselines.services import RULE_CODE, SEVERITY, baselines_on_sync_applied
        from config.registry import admin_action_register, post_sync_hook_register
        from findings.rules import feature_rule_register

        feature_rule_register(
            code=RULE_CODE,
            severity=SEVERITY,
            # marked for the catalog; the findings admin translates titles when it shows them
            title=gettext_noop("Access drifted from its approved baseline"),
            description=gettext_noop(
                "The account's effective access goes beyond or falls short of the baseline approved for it "
                "(or for its instance or classification), or the account is not in that baseline. The detail "
                "lists what was added and what is missing, with the role path. Approving again or restoring "
                "the access closes it. See docs/baselines.md."
            ),
        )
        post_sync_hook_register(name="baselines", order=160, func=baselines_on_sync_applied)
        admin_action_register(model="accountsync.instanceaccount", action=approve_accounts_action)
        admin_action_register(model="instances.instance", action=approve_instances_action)
        # model history: who created a baseline and who approved which version (entries follow their version)
        if not auditlog.contains(Baseline):
            auditlog.register(Baseline)
        if not auditlog.contains(BaselineVersion):
            auditlog.register(BaselineVersion)
