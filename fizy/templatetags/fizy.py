"""Template helpers for pages that render hundreds of rows (the cart): the same output as
``floatformat``/``intcomma`` and ``{% url %}``, without their per-call cost."""

from django import template
from django.urls import get_script_prefix, reverse

from fizy.lib.money import format_money

register = template.Library()

_PLACEHOLDER = "987654321"
_url_templates: dict[tuple[str, str], str] = {}


money = register.filter("money", format_money)  # "$1,234.50"; None → "—"


@register.filter
def pk_url(pk, viewname: str) -> str:
    """``{{ line.pk|pk_url:"carts:line" }}`` is ``{% url "carts:line" line.pk %}`` for URLs whose only
    argument is an integer id: reversed once per process, then filled in."""
    key = (viewname, get_script_prefix())
    if key not in _url_templates:
        _url_templates[key] = reverse(viewname, args=[int(_PLACEHOLDER)])
    return _url_templates[key].replace(_PLACEHOLDER, str(int(pk)), 1)


@register.filter
def ago(value) -> str:
    """ "just now" under a minute, else "5 minutes ago" (``timesince``'s words)."""
    if not value:
        return ""
    from django.utils import timezone
    from django.utils.timesince import timesince

    if (timezone.now() - value).total_seconds() < 60:
        return "just now"
    return f"{timesince(value)} ago"
