"""`{% admin_dashboard %}`: the dashboard panels on the admin index, for the user viewing it.

Why an inclusion tag and not an AdminSite subclass: the admin index template
can ask for the dashboard itself, so the project keeps Django's default site
(and every app's `admin.register`) untouched.
"""

from __future__ import annotations

from typing import Any

from django import template

from dashboard.panels import dashboard_panels

register = template.Library()


@register.inclusion_tag("dashboard/panels.html", takes_context=True)
def admin_dashboard(context: template.Context) -> dict[str, Any]:
    """The panels the requesting user may view; none (and no markup) for an anonymous request."""
    request = context.get("request")
    user = getattr(request, "user", None)
    panels = dashboard_panels(user) if user is not None and user.is_active and user.is_staff else []
    return {"panels": panels}
