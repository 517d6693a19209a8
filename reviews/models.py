"""Access-review campaigns and their items (issue 23 part 3).

Why items carry copies (identity, instance name, the access as JSON) rather than only links: the
evidence must show what the reviewer saw at the campaign's start, whatever the account, its
snapshots or the instance become later. The links stay for the grant script and navigation, and
become null if their object is ever deleted.

Retention: once a campaign is closed, neither it nor its items can be saved or deleted. The guard
is here, on the models (``save``/``delete`` and a ``pre_delete`` receiver in reviews/signals.py,
which queryset deletes also send), so the admin, the API and any later code path all hit it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from instances.models import Environment

CLOSE_CAMPAIGN = "reviews.close_campaign"
OVERSEE_REVIEWS = "reviews.oversee_reviews"
DECIDE_ITEM = "reviews.decide_reviewitem"


class ReviewRetained(Exception):
    """A write to a closed campaign or one of its items: closed campaigns are retained read-only."""


class CampaignStatus(models.TextChoices):
    OPEN = "open", _("Open")
    CLOSED = "closed", _("Closed")


class Assignment(models.TextChoices):
    ROUND_ROBIN = "round_robin", _("Round-robin over the reviewers")
    INSTANCE_OWNER = "instance_owner", _("By instance owner (the campaign's owner table)")
    MANAGER = "manager", _("To the account's manager (directory), else the fallback reviewer")


class Decision(models.TextChoices):
    PENDING = "pending", _("Pending")
    KEEP = "keep", _("Keep")
    REVOKE = "revoke", _("Revoke")
    CHANGE = "change", _("Change")


def _stored_status(model: type[models.Model], pk: Any, field: str) -> str | None:
    if pk is None:
        return None
    return model._default_manager.filter(pk=pk).values_list(field, flat=True).first()


class Campaign(models.Model):
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    instances = models.ManyToManyField(
        "instances.Instance",
        blank=True,
        related_name="review_campaigns",
        verbose_name=_("instances"),
        help_text=_("Leave empty for every active instance (narrowed by the environment)."),
    )
    environment = models.CharField(_("environment"), max_length=16, choices=Environment.choices, blank=True, default="")
    classification = models.ForeignKey(
        "classification.Classification",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("classification"),
        help_text=_("Only accounts in this classification."),
    )
    # copied at the start: the evidence names the selection even if the classification is renamed or deleted
    classification_name = models.CharField(_("classification"), max_length=128, blank=True, editable=False)
    include_roles = models.BooleanField(_("include roles"), default=False)
    reviewers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="review_campaigns", verbose_name=_("reviewers")
    )
    assignment = models.CharField(
        _("assignment"), max_length=16, choices=Assignment.choices, default=Assignment.ROUND_ROBIN
    )
    fallback_reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("fallback reviewer"),
        help_text=_("Gets the items no manager or owner was found for."),
    )
    due_date = models.DateField(_("due date"))
    status = models.CharField(
        _("status"), max_length=8, choices=CampaignStatus.choices, default=CampaignStatus.OPEN, db_index=True
    )
    started_at = models.DateTimeField(_("access frozen at"), null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    created_by_username = models.CharField(_("created by"), max_length=150, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True, editable=False)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    closed_by_username = models.CharField(_("closed by"), max_length=150, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("review campaign")
        verbose_name_plural = _("review campaigns")
        permissions = [
            ("close_campaign", _("Can close an access-review campaign")),
            ("oversee_reviews", _("Can see every campaign and every review item")),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if _stored_status(Campaign, self.pk, "status") == CampaignStatus.CLOSED:
            raise ReviewRetained(f"campaign {self.pk} is closed and retained read-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        if _stored_status(Campaign, self.pk, "status") == CampaignStatus.CLOSED:
            raise ReviewRetained(f"campaign {self.pk} is closed and retained read-only")
        return super().delete(*args, **kwargs)

    @property
    def is_closed(self) -> bool:
        return self.status == CampaignStatus.CLOSED

    @property
    def is_overdue(self) -> bool:
        return self.status == CampaignStatus.OPEN and timezone.localdate() > self.due_date


class InstanceOwner(models.Model):
    """Who reviews an instance's accounts in one campaign ("by instance owner" assignment)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="owners")
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")

    class Meta:
        verbose_name = _("instance owner")
        verbose_name_plural = _("instance owners")
        constraints = [
            models.UniqueConstraint(fields=["campaign", "instance"], name="reviews_owner_one_per_instance"),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id} → {self.reviewer_id}"


class ReviewItem(models.Model):
    """One account of a campaign: its access frozen at the start, and the reviewer's decision."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items")
    account = models.ForeignKey(
        "accountsync.InstanceAccount", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    instance = models.ForeignKey(
        "instances.Instance", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    instance_name = models.CharField(_("instance"), max_length=128)
    db_type = models.CharField(_("database type"), max_length=16)
    identity = models.CharField(_("account"), max_length=512)
    kind = models.CharField(_("kind"), max_length=8)
    access = models.JSONField(_("access at the review"), default=list, blank=True)
    access_at = models.DateTimeField(_("access as of"))
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="review_items",
        verbose_name=_("reviewer"),
    )
    reviewer_username = models.CharField(_("reviewer"), max_length=150, blank=True)
    decision = models.CharField(
        _("decision"), max_length=8, choices=Decision.choices, default=Decision.PENDING, db_index=True
    )
    comment = models.TextField(_("comment"), blank=True)
    revoke_privileges = models.JSONField(_("privileges to revoke"), default=list, blank=True)
    revoke_roles = models.JSONField(_("roles to revoke"), default=list, blank=True)
    target = models.TextField(_("target access"), blank=True)
    script = models.TextField(_("revoke script"), blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_by_username = models.CharField(_("decided by"), max_length=150, blank=True)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)

    class Meta:
        ordering = ["campaign_id", "instance_name", "identity"]
        verbose_name = _("review item")
        verbose_name_plural = _("review items")
        permissions = [("decide_reviewitem", _("Can decide own review items"))]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "account"], name="reviews_item_one_per_account"),
        ]
        indexes = [models.Index(fields=["reviewer", "campaign"], name="reviews_item_reviewer")]

    def __str__(self) -> str:
        return f"{self.identity} @ {self.instance_name}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._campaign_closed():
            raise ReviewRetained(f"campaign {self.campaign_id} is closed and retained read-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        if self._campaign_closed():
            raise ReviewRetained(f"campaign {self.campaign_id} is closed and retained read-only")
        return super().delete(*args, **kwargs)

    def _campaign_closed(self) -> bool:
        return _stored_status(Campaign, self.campaign_id, "status") == CampaignStatus.CLOSED
