from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsyncConfig(AppConfig):
    name = "accountsync"
    verbose_name = _("Accounts")
