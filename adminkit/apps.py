from django.apps import AppConfig


class AdminkitConfig(AppConfig):
    """Carries the kit's stylesheet (``static/whalefall/admin.css``); the kit itself has no models."""

    name = "adminkit"
    verbose_name = "WhaleFall admin kit"
