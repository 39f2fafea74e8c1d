"""Pharmacy staff see the clinics' API keys, webhook URLs and deliveries, read-only: never a key's
hash or a webhook secret. Clinic admins manage them on their own API page."""

from django.contrib import admin

from fizy.lib.admin import ReadOnlyAdmin

from .models import ApiKey, WebhookDelivery, WebhookSubscription


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "clinic", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["clinic"]
    list_select_related = ["clinic__organization"]
    exclude = ["hashed"]
    search_fields = ["name", "prefix"]


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(ReadOnlyAdmin):
    list_display = ["url", "clinic", "events", "active", "created_at"]
    list_filter = ["active", "clinic"]
    list_select_related = ["clinic__organization"]
    exclude = ["secret"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "clinic", "event_type", "status", "attempts", "last_status_code", "last_error"]
    list_filter = ["status", "event_type", "clinic"]
    list_select_related = ["clinic__organization"]
    raw_id_fields = ["subscription"]
    search_fields = ["message_id"]
    date_hierarchy = "created_at"
