"""Admin building blocks shared by every app's admin: rows the system writes are never added or
deleted by hand, and some are only ever looked at."""

from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteMixin
from django.core.exceptions import PermissionDenied, ValidationError


class NoAddDeleteMixin:
    """No "add" and no "delete" for rows the system creates (orders, lines, webhook deliveries,
    payment events, audit rows, carts). Works for a ModelAdmin and for an inline."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ActionsOnlyAdmin(NoAddDeleteMixin, admin.ModelAdmin):
    """Every field is shown read-only (but those in ``exclude``, shown some other way); staff change
    these rows only through the admin actions (which call a service), e.g. "Retry dispatch" or
    "Set line status". The change page has no Save buttons and refuses a posted form."""

    def get_readonly_fields(self, request, obj=None):
        shown = [f.name for f in self.model._meta.fields if f.name not in (self.exclude or ())]
        return list(dict.fromkeys(shown + list(self.readonly_fields)))

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Nothing on the page is editable: no Save buttons, and a posted form changes nothing.
        if request.method == "POST":
            raise PermissionDenied
        extra_context = {
            **(extra_context or {}),
            "show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False,
        }
        return super().changeform_view(request, object_id, form_url, extra_context)


class ReadOnlyAdmin(ActionsOnlyAdmin):
    """View-only in the admin: the rows are written by the system, never by hand (audit trail,
    webhook deliveries, payment events)."""

    def has_change_permission(self, request, obj=None):
        return False


class ReadOnlyInline(NoAddDeleteMixin, admin.TabularInline):
    """An inline that shows related rows (a line's events, an order's lines) without editing them."""

    extra = 0
    can_delete = False

    def has_change_permission(self, request, obj=None):
        return False


def keys_that_can_be(widget, values) -> list:
    """The values of an autocomplete widget that can be keys of its related model. A value that
    cannot (``?clinic=TX`` on an add page, ``clinic=%00`` posted to it) is left out of the widget's
    lookup, instead of reaching the database (a 500); the form itself still refuses it."""
    remote = widget.field.remote_field
    opts = remote.model._meta
    target = opts.get_field(getattr(remote, "field_name", None) or opts.pk.name)
    kept = []
    for value in values:
        try:
            target.get_prep_value(target.to_python(value))
        except (ValidationError, TypeError, ValueError, OverflowError):
            continue
        kept.append(value)
    return kept


_django_optgroups = AutocompleteMixin.optgroups


def guard_admin_autocomplete() -> None:
    """Installed once at start-up (``fizy.apps``) for every autocomplete field, present and future."""
    def optgroups(self, name, value, attr=None):
        return _django_optgroups(self, name, keys_that_can_be(self, value), attr)

    AutocompleteMixin.optgroups = optgroups
