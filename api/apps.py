from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The JSON API (DESIGN.md §5): thin DRF views over the services and selectors."""

    name = "api"
    verbose_name = "API"
