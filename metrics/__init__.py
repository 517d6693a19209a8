"""Prometheus metrics for WhaleFall, read from its own database at scrape time (docs/operations.md, "Metrics").

Why read the database instead of counting in memory: syncs run in several django-q2 worker processes
and the web app in several gunicorn workers, and each process would only count what it did itself.
Every value here is an aggregate over WhaleFall's tables, so any process answers the same and a restart
loses nothing. ``metrics.collectors`` runs a fixed number of indexed queries per scrape; ``metrics.views``
serves them to a scraper that holds the token or calls from an allowed address.
"""
