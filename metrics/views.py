"""``GET /metrics``: the Prometheus exposition, for a scraper with the token or from an allowed address."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from config.logging import log_event
from metrics.access import scrape_allowed
from metrics.collectors import WhaleFallCollector

logger = logging.getLogger("whalefall.metrics")

# Only WhaleFall's collector: the default registry's process_* and python_* metrics would describe
# whichever gunicorn worker happened to answer, which is not one thing across scrapes.
registry = CollectorRegistry()
registry.register(WhaleFallCollector())

REFUSED = (
    "403 Forbidden: scraping needs Authorization: Bearer <WHALEFALL_METRICS_TOKEN> "
    "or a client address in WHALEFALL_METRICS_ALLOW (docs/operations.md, Metrics).\n"
)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    allowed, address = scrape_allowed(request)
    if not allowed:
        log_event(
            logger,
            logging.WARNING,
            "metrics: scrape refused",
            module="metrics",
            operation="scrape_refused",
            ip=address or request.META.get("REMOTE_ADDR"),
        )
        return HttpResponse(REFUSED, status=403, content_type="text/plain; charset=utf-8")
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
