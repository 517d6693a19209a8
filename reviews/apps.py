"""Access-review campaigns: reviewers decide keep/revoke/change per account, with retained evidence."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReviewsConfig(AppConfig):
    name = "reviews"
    verbose_name = _("Access reviews")

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from reviews import signals
        from reviews.models import Campaign, InstanceOwner, ReviewItem

        signals.connect()
        # model history of campaigns (selection, reviewers, due date) and of every decision written to an item;
        # registered here, not in WHALEFALL_AUDIT_MODELS, so that the setting's owners need not know this app
        if not auditlog.contains(Campaign):
            auditlog.register(Campaign, m2m_fields={"instances", "reviewers"})
        if not auditlog.contains(InstanceOwner):
            auditlog.register(InstanceOwner)
        if not auditlog.contains(ReviewItem):
            auditlog.register(ReviewItem, exclude_fields=["access"])
