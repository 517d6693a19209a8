"""A URL configuration for tests: WhaleFall's routes plus plain Django views under /api/ that fail."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from config.urls import handler404, handler500  # noqa: F401
from config.urls import urlpatterns as whalefall_urlpatterns

LEAKED = "hunter2-Very-Secret"


def boom(request: HttpRequest) -> HttpResponse:
    """Fails outside DRF (its exception handler never sees this), with a credential in the message."""
    raise RuntimeError(f"driver said: connect failed password={LEAKED} host=db1")


urlpatterns = [path("api/v1/boom/", boom), *whalefall_urlpatterns]
