from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only in the admin: the rows are written by the system, never by hand (audit trail,
    webhook deliveries, payment events)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
