"""Read-only admin list of risk findings with the filters people triage by.

Findings are written only by syncs (findings.services), so the admin can browse
and filter them, never add, edit or delete them.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accountsync.admin import AccountSearchMixin
from adminkit.kit import ReadOnlyAdmin, badge, wrap_name
from findings.models import Finding
from findings.rules import RULES_BY_CODE


class RuleFilter(admin.SimpleListFilter):
    """Rules by title, from the rule table (not from a DISTINCT over the findings table)."""

    title = _("rule")
    parameter_name = "rule"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # the code may break after its underscores (DIRECTORY_ORPHANED_ACCESS), not mid-word
        return [(rule.code, wrap_name(f"{gettext(rule.title)} ({rule.code})")) for rule in RULES_BY_CODE.values()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Finding]) -> QuerySet[Finding]:
        if self.value():
            return queryset.filter(rule_code=self.value())
        return queryset


@admin.register(Finding)
class FindingAdmin(AccountSearchMixin, ReadOnlyAdmin):
    list_display = ["rule_title", "severity_badge", "account", "instance", "is_open", "first_seen_at", "resolved_at"]
    list_filter = ["is_open", "severity", RuleFilter, "instance__db_type", "instance", "first_seen_at"]
    search_fields = ["account__identity"]  # by account (AccountSearchMixin); the rule has its filter
    list_select_related = ["account", "instance"]
    readonly_fields = [
        "instance",
        "account",
        "rule_title",
        "code",
        "severity",
        "detail_view",
        "first_seen_at",
        "resolved_at",
        "is_open",
        "session_id",
        "resolved_session_id",
    ]
    fields = readonly_fields

    @admin.display(description=_("rule"), ordering="rule_code")
    def rule_title(self, obj: Finding) -> str:
        rule = RULES_BY_CODE.get(obj.rule_code)
        return gettext(rule.title) if rule else obj.rule_code

    @admin.display(description=_("severity"), ordering="severity")
    def severity_badge(self, obj: Finding) -> str:
        return badge(f"sev-{obj.severity}", obj.get_severity_display())

    @admin.display(description=_("rule code"))
    def code(self, obj: Finding) -> str:
        return obj.rule_code

    @admin.display(description=_("detail"))
    def detail_view(self, obj: Finding) -> str:
        """The detail as a reader wants it: the feature's own lines (a drift's "+ UPDATE on ..."), then each key.

        Why not the raw JSON alone: a drift or a directory finding carries nested lists an auditor
        reads line by line; the JSON stays below for the exact values.
        """
        detail = obj.detail if isinstance(obj.detail, dict) else {}
        lines = [str(line) for line in detail.get("lines") or [] if isinstance(line, str)]
        rows = [
            (key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
            for key, value in sorted(detail.items())
            if key != "lines" and value not in (None, [], {}, "")
        ]
        listed = format_html_join("", "<li><code>{}</code></li>", ((line,) for line in lines))
        table = format_html_join("", '<tr><th>{}</th><td class="wf-wrap">{}</td></tr>', rows)
        return format_html(
            '{}<table class="wf-detail">{}</table>',
            format_html('<ul class="wf-lines">{}</ul>', listed) if lines else "",
            table,
        )
