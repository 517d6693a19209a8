"""Mounted at ``/metrics`` by ``config/urls.py`` (by name, so ``config`` imports nothing above it)."""

from django.urls import path

from metrics.views import metrics

urlpatterns = [path("", metrics, name="metrics")]
