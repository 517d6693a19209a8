"""Template filters of the admin kit: ``{% load adminkit %}``."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from adminkit.kit import wrap_name as _wrap_name

register = template.Library()


@register.filter
def wrap_name(value: object) -> SafeString | str:
    """An account name that wraps only after ``@``, ``.`` and ``_`` (see ``adminkit.kit.wrap_name``)."""
    return _wrap_name(value) if value not in (None, "") else ""
