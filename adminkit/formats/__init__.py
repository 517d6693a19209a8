"""Date formats for every admin page, in every language (settings.FORMAT_MODULE_PATH).

Why one format: sync times, change times and "last known at" times are compared across pages
and with logs, so they read the same everywhere and sort as text: ``2026-01-31 14:05``. The
admin's own "Today / Past 7 days" and the dashboard's day labels keep their language's words.
"""
