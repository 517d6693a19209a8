from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class GrantscriptsConfig(AppConfig):
    name = "grantscripts"
    verbose_name = _("Grant scripts")
