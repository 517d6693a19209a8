"""The evidence of a campaign: a streamed CSV and a printable HTML page, both from the same rows.

Why streamed: a campaign over a fleet holds tens of thousands of items, each with its frozen access;
the CSV goes out in pieces (config.textstream, which also neutralises cells a spreadsheet would read
as formulas) and is recorded in the audit trail when the stream ends, with the rows really sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.utils import timezone

from config.textstream import FORMATS, encode_rows
from reviews.models import Campaign
from reviews.selectors import EVIDENCE_COLUMNS, access_lines, campaign_progress, evidence_items, evidence_rows
from reviews.services import evidence_exported


def evidence_filename(campaign: Campaign, ext: str) -> str:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return f"whalefall-review-{campaign.pk}-evidence-{stamp}.{ext}"


def _counted(campaign: Campaign, actor: Any, request: HttpRequest | None) -> Iterator[dict[str, Any]]:
    sent = 0
    complete = False
    try:
        for row in evidence_rows(campaign):
            yield row
            sent += 1
        complete = True
    finally:
        evidence_exported(campaign=campaign, actor=actor, fmt="csv", rows=sent, complete=complete, request=request)


def evidence_csv_response(campaign: Campaign, actor: Any, request: HttpRequest | None = None) -> StreamingHttpResponse:
    """Every item as one CSV row, streamed as an attachment."""
    chunks = encode_rows(EVIDENCE_COLUMNS, _counted(campaign, actor, request), "csv")
    response = StreamingHttpResponse((c.encode("utf-8") for c in chunks), content_type=FORMATS["csv"])
    response["Content-Disposition"] = f'attachment; filename="{evidence_filename(campaign, "csv")}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    return response


def evidence_html_response(request: HttpRequest, campaign: Campaign, actor: Any) -> HttpResponse:
    """The printable page: the campaign, its progress, then every item with access and decision."""
    items = list(evidence_items(campaign))
    per, overall = campaign_progress(campaign=campaign)
    rows = [{"item": item, "access": access_lines(item.access)} for item in items]
    html = render_to_string(
        "reviews/evidence.html",
        {"campaign": campaign, "rows": rows, "per": per, "overall": overall, "generated_at": timezone.now()},
        request=request,
    )
    evidence_exported(campaign=campaign, actor=actor, fmt="html", rows=len(items), complete=True, request=request)
    response = HttpResponse(html)
    response["Cache-Control"] = "no-store"
    return response
