from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The JSON API (docs/api.md): thin DRF views over the services and selectors."""

    name = "api"
    verbose_name = "API"
