from django.apps import AppConfig, apps
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

# the bookkeeping timestamps many models carry without a verbose name of their own; Django would label
# them "Created at"/"Updated at" from the field name, text no catalog can translate
TIMESTAMP_LABELS = {"created_at": _("created at"), "updated_at": _("updated at")}

# Names the admin's sidebar and index show for installed apps that ship no Simplified Chinese
# (django-auditlog, django-axes): they are lazy in those apps, so a line in the project's catalog
# (LOCALE_PATHS wins over the apps') translates them; listed here so makemessages keeps those lines.
THIRD_PARTY_MSGIDS = (
    gettext_noop("Audit log"),
    gettext_noop("log entry"),
    gettext_noop("log entries"),
    gettext_noop("access attempt"),
    gettext_noop("access attempts"),
    gettext_noop("access failure"),
    gettext_noop("access failures"),
    gettext_noop("access log"),
    gettext_noop("access logs"),
    gettext_noop("access attempt expiration"),
    gettext_noop("access attempt expirations"),
)


def label_timestamps() -> None:
    """Give every model's unnamed ``created_at``/``updated_at`` a translatable label.

    Why here and not in each model: the field names are the same everywhere, the label is the
    admin's concern, and only the label shown is set (``verbose_name``), never the name the
    field was declared with (``_verbose_name``), so no migration sees a change.
    """
    for model in apps.get_models():
        for field in model._meta.local_fields:
            label = TIMESTAMP_LABELS.get(field.name)
            if label is not None and getattr(field, "_verbose_name", None) is None:
                field.verbose_name = label


class AdminkitConfig(AppConfig):
    """Carries the kit's stylesheet (``static/whalefall/admin.css``); the kit itself has no models."""

    name = "adminkit"
    verbose_name = "WhaleFall admin kit"

    def ready(self) -> None:
        label_timestamps()
