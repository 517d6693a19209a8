"""The retention guard for deletes that do not call ``Model.delete`` (querysets, cascades).

Django sends ``pre_delete`` for every object a queryset delete or a cascade removes, so raising
here stops the admin's bulk delete, a cascade from a deleted user or instance, and any shell
``.delete()`` from removing a closed campaign or its items.
"""

from __future__ import annotations

from typing import Any

from reviews.models import Campaign, CampaignStatus, ReviewItem, ReviewRetained


def refuse_retained_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    campaign_id = instance.pk if sender is Campaign else instance.campaign_id
    status = Campaign._default_manager.filter(pk=campaign_id).values_list("status", flat=True).first()
    if status == CampaignStatus.CLOSED:
        raise ReviewRetained(f"campaign {campaign_id} is closed and retained read-only")


def connect() -> None:
    from django.db.models.signals import pre_delete

    pre_delete.connect(refuse_retained_delete, sender=Campaign, dispatch_uid="reviews_retained_campaign")
    pre_delete.connect(refuse_retained_delete, sender=ReviewItem, dispatch_uid="reviews_retained_item")
