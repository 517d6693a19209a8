from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The top of the admin: composes pages that need several layers (see ``console.admin``)."""

    name = "console"
    verbose_name = "WhaleFall console"
