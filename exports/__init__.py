"""Streamed CSV / JSON / NDJSON exports of accounts, permissions, findings and change logs.

A plain package (not a Django app): the admin and the API hand it a queryset
of the model a kind exports and get back an iterator of text plus a content
type and a filename (``exports.writers.stream_export``), or a ready
``StreamingHttpResponse`` (``exports.http.export_response``).
"""
