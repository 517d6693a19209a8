"""Admin for instances, credentials and tags.

The credential password is a write-only form field: it is encrypted on save
and never rendered back, not even masked, so the admin HTML cannot leak it.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accountsync.connection import instance_connection_test
from instances.models import Credential, Instance, Tag


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

    class Meta:
        model = Credential
        fields = ["name", "username", "password", "clear_password", "description"]

    def save(self, commit: bool = True) -> Credential:
        credential: Credential = super().save(commit=False)
        raw = self.cleaned_data.get("password") or ""
        if self.cleaned_data.get("clear_password"):
            credential.password_encrypted = ""
        elif raw or not credential.pk:
            credential.set_password(raw)
        if commit:
            credential.save()
        return credential


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    form = CredentialForm
    list_display = ["name", "username", "password_state", "instance_count", "updated_at"]
    search_fields = ["name", "username"]

    @admin.display(description=_("password"))
    def password_state(self, obj: Credential) -> str:
        return _("set (encrypted)") if obj.has_password else _("none")

    @admin.display(description=_("instances"))
    def instance_count(self, obj: Credential) -> int:
        return obj.instances.count()


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "color"]
    search_fields = ["name"]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "db_type",
        "environment",
        "host",
        "port",
        "version",
        "last_sync_at",
        "last_sync_status",
        "is_active",
    ]
    list_filter = ["db_type", "environment", "tags", "is_active", "last_sync_status"]
    search_fields = ["name", "host", "description", "version"]
    list_select_related = ["credential"]
    filter_horizontal = ["tags"]
    readonly_fields = ["version", "last_sync_at", "last_sync_status", "sync_count", "created_at", "updated_at"]
    actions = ["test_connection"]
    fieldsets = [
        (None, {"fields": ["name", "db_type", "environment", "is_active", "description", "tags"]}),
        (_("Connection"), {"fields": ["host", "port", "database_name", "credential", "options"]}),
        (
            _("Status"),
            {"fields": ["version", "last_sync_at", "last_sync_status", "sync_count", "created_at", "updated_at"]},
        ),
    ]

    @admin.action(description=_("Test connection"), permissions=["view"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        ok = 0
        for instance in queryset.select_related("credential"):
            result = instance_connection_test(instance=instance)
            if result.ok:
                ok += 1
                self.message_user(
                    request, _("[%(name)s] connected, %(version)s") % {"name": instance.name, "version": result.version}
                )
            else:
                self.message_user(
                    request,
                    _("[%(kind)s error] %(message)s") % {"kind": result.error_kind, "message": result.message},
                    level=messages.ERROR,
                )
        total = queryset.count()
        self.message_user(
            request,
            ngettext("%(ok)d of %(total)d instance reachable.", "%(ok)d of %(total)d instances reachable.", total)
            % {"ok": ok, "total": total},
            level=messages.SUCCESS if ok == total else messages.WARNING,
        )
