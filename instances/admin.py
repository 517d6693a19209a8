"""Admin for credentials and tags, and the base of the instance admin.

The credential password is a write-only form field: it is encrypted on save
and never rendered back, not even masked, so the admin HTML cannot leak it.
The instance admin that users see (sync actions, last sync, accounts and
changes) is composed in ``console.admin`` on top of ``InstanceAdminBase``.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join
from django.utils.translation import gettext_lazy as _

from adminkit.kit import KitAdmin
from instances.crypto import CredentialDecryptError
from instances.models import Credential, DbType, Instance, Tag
from instances.policy import instance_connection_refusals
from instances.tls import client_key_error

HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{3,8}$")


class SecretTextarea(forms.Textarea):
    """A textarea that never renders a value back (like PasswordInput(render_value=False)), for a private key."""

    def format_value(self, value: Any) -> None:
        return None


class CredentialForm(forms.ModelForm):
    password = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Stored encrypted. Leave empty to keep the current password."),
    )
    clear_password = forms.BooleanField(
        label=_("Clear password"), required=False, help_text=_("Store no password (e.g. socket authentication).")
    )
    tls_client_key = forms.CharField(
        label=_("TLS client key"),
        required=False,
        strip=False,
        widget=SecretTextarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        help_text=_(
            "PEM private key of the client certificate (unencrypted). Stored encrypted and never shown again; "
            "leave empty to keep the current key."
        ),
    )
    clear_tls_client = forms.BooleanField(
        label=_("Remove the client certificate"), required=False, help_text=_("Send no client certificate.")
    )

    class Meta:
        model = Credential
        fields = [
            "name",
            "username",
            "password",
            "clear_password",
            "allowed_db_types",
            "allowed_hosts",
            "allowed_ports",
            "allow_weak_auth",
            "tls_client_cert",
            "tls_client_key",
            "clear_tls_client",
            "description",
        ]
        widgets = {
            "allowed_hosts": forms.Textarea(attrs={"rows": 3}),
            "tls_client_cert": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        }

    allowed_db_types = forms.MultipleChoiceField(
        label=_("Allowed database types"),
        required=False,
        choices=DbType.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None selected: any type."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        password = self.fields["password"]
        if not self.instance.pk:
            password.help_text = _(
                "Stored encrypted and never shown again. Leave empty for an account without a password "
                "(socket or peer authentication)."
            )
        elif not self.instance.has_password:
            password.help_text = _(
                "This credential has an empty password. Enter one to set it; leave empty to keep none."
            )
        if not self.instance.has_tls_client_key:
            self.fields["tls_client_key"].help_text = _(
                "PEM private key of the client certificate (unencrypted). Stored encrypted and never shown again; "
                "leave empty for none."
            )

    def clean(self) -> dict[str, Any]:
        """A client certificate and key must belong together (the stored key when none is entered)."""
        data = super().clean()
        if data.get("clear_tls_client"):
            data["tls_client_cert"] = ""
            return data
        key = data.get("tls_client_key") or ""
        if not key and self.instance.pk and self.instance.has_tls_client_key:
            try:
                key = self.instance.get_tls_client_key()
            except CredentialDecryptError:  # a key that no longer decrypts must be entered again
                key = ""
        error = client_key_error((data.get("tls_client_cert") or "").strip(), key.strip())
        if error:
            self.add_error("tls_client_key" if data.get("tls_client_cert") else "tls_client_cert", error)
        return data

    def save(self, commit: bool = True) -> Credential:
        credential: Credential = super().save(commit=False)
        if self.cleaned_data.get("clear_tls_client"):
            credential.tls_client_cert = ""
            credential.set_tls_client_key("")
        elif self.cleaned_data.get("tls_client_key"):
            credential.set_tls_client_key(self.cleaned_data["tls_client_key"].strip())
        raw = self.cleaned_data.get("password") or ""
        if self.cleaned_data.get("clear_password") or (not raw and not credential.pk):
            credential.password_encrypted = ""  # an empty password is stored as none (has_password false)
        elif raw:
            credential.set_password(raw)
        if commit:
            credential.save()
        return credential


@admin.register(Credential)
class CredentialAdmin(KitAdmin):
    form = CredentialForm
    list_display = ["name", "username", "password_state", "binding", "instance_count", "updated_at"]
    search_fields = ["name", "username"]

    def get_fields(self, request: HttpRequest, obj: Credential | None = None) -> list[str]:
        """No "Clear password" or "Remove the client certificate" where there is nothing to clear."""
        fields = list(super().get_fields(request, obj))
        if obj is None or not obj.has_password:
            fields.remove("clear_password")
        if obj is None or not (obj.tls_client_cert or obj.has_tls_client_key):
            fields.remove("clear_tls_client")
        return fields

    @admin.display(description=_("may be used with"))
    def binding(self, obj: Credential) -> str:
        if not obj.is_bound:
            return _("any host (not bound)")
        parts = [", ".join(obj.allowed_db_types) or _("any type"), obj.allowed_hosts.replace("\n", ", ")]
        if obj.allowed_ports.strip():
            parts.append(_("ports %(ports)s") % {"ports": obj.allowed_ports.strip()})
        return " · ".join(str(p) for p in parts)

    @admin.display(description=_("password"))
    def password_state(self, obj: Credential) -> str:
        return _("set (encrypted)") if obj.has_password else _("empty password")

    @admin.display(description=_("instances"))
    def instance_count(self, obj: Credential) -> int:
        return obj.instances.count()


@admin.register(Tag)
class TagAdmin(KitAdmin):
    list_display = ["name", "color"]
    search_fields = ["name"]


class InstanceAdminBase(KitAdmin):
    """The instance form and list without what needs a higher layer.

    Why not registered here: the list's sync actions, the last-sync column and the
    page's account and change panels need ``accountsync`` and ``sync``, which sit above
    ``instances``; ``console.admin`` composes them onto this class and registers it.
    """

    list_display = ["name", "db_type", "environment", "tag_list", "version", "is_active"]
    list_filter = ["db_type", "environment", "tags", "is_active", "last_sync_status"]
    search_fields = ["name", "host", "description", "version"]
    list_select_related = ["credential"]
    filter_horizontal = ["tags"]
    readonly_fields = ["version", "last_sync_at", "last_sync_status", "sync_count", "created_at", "updated_at"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    change_list_template = "admin/instances/instance/change_list.html"
    change_form_template = "admin/instances/instance/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "db_type", "environment", "is_active", "description", "tags"]}),
        (_("Connection"), {"fields": ["host", "port", "database_name", "credential", "options"]}),
        (
            _("Status"),
            {"fields": ["version", "last_sync_at", "last_sync_status", "sync_count", "created_at", "updated_at"]},
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Instance]:
        return super().get_queryset(request).prefetch_related("tags")

    def get_form(self, request: HttpRequest, obj: Instance | None = None, change: bool = False, **kwargs: Any) -> Any:
        """The form, refusing connection changes the user may not make (instances/policy.py)."""
        form = super().get_form(request, obj, change=change, **kwargs)
        user = request.user
        before = Instance.objects.filter(pk=obj.pk).first() if obj is not None and obj.pk else None

        class GuardedForm(form):  # type: ignore[misc, valid-type]
            def clean(self) -> dict[str, Any]:
                data = super().clean()
                refusals = instance_connection_refusals(
                    user,
                    before=before,
                    db_type=data.get("db_type"),
                    host=data.get("host"),
                    port=data.get("port"),
                    credential=data.get("credential"),
                    options=data.get("options"),
                )
                for field, message in refusals.items():
                    self.add_error(field if field in self.fields else None, message)
                return data

        return GuardedForm

    @admin.display(description=_("tags"))
    def tag_list(self, obj: Instance) -> str:
        return format_html_join(
            " ",
            '<span class="wf-badge" style="background:{}">{}</span>',
            ((t.color if HEX_COLOR.match(t.color) else "#607d8b", t.name) for t in obj.tags.all()),
        )
