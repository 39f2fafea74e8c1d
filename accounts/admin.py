"""The second factor in the admin, for user admins: see who has an authenticator and recovery
codes, and remove them (a lost phone: the user sets up a new one at their next login). Never
the secrets: django-otp's own admin pages (which show the key and the codes) are replaced."""

from django.contrib import admin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from .second_factor import second_factor_remove


class DeviceAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "confirmed", "created_at", "last_used_at")
    list_filter = ("confirmed",)
    search_fields = ("user__username", "user__email")
    fields = ("user", "name", "confirmed", "created_at", "last_used_at")
    readonly_fields = fields
    list_select_related = ("user",)

    def has_add_permission(self, request):
        return False

    def delete_model(self, request, obj):
        second_factor_remove(devices=[obj], actor=request.user)

    def delete_queryset(self, request, queryset):
        second_factor_remove(devices=queryset.select_related("user"), actor=request.user)

    def has_change_permission(self, request, obj=None):
        return False


for model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, DeviceAdmin)
