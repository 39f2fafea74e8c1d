"""Admin building blocks shared by every app's admin: rows the system writes are never added or
deleted by hand, and some are only ever looked at."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied


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


def initial_data_without_malformed_keys(model_admin, request) -> dict:
    """The admin's "add" form takes initial values from the query string (``?clinic=3``). A value
    that cannot be a key of the related model (``?clinic=TX``) is dropped, instead of reaching
    the database when the autocomplete widget looks the choice up (a 500)."""
    from django.core.exceptions import FieldDoesNotExist, ValidationError

    initial = _django_initial_data(model_admin, request)
    for name, value in list(initial.items()):
        try:
            field = model_admin.opts.get_field(name)
        except FieldDoesNotExist:
            continue
        if not field.is_relation or field.target_field is None:
            continue
        try:
            for item in value if isinstance(value, list) else [value]:
                if item not in ("", None):
                    field.target_field.get_prep_value(field.target_field.to_python(item))
        except (ValidationError, TypeError, ValueError, OverflowError):
            del initial[name]
    return initial


_django_initial_data = admin.ModelAdmin.get_changeform_initial_data


def guard_admin_initial_data() -> None:
    """Installed once at start-up (``fizy.apps``) for every ModelAdmin, present and future."""
    admin.ModelAdmin.get_changeform_initial_data = initial_data_without_malformed_keys
