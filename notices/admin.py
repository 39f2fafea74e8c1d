"""Pharmacy staff see what went out to patients, read-only; recipients are masked in lists."""

from django.contrib import admin

from clinics.access import PatientAccessAdminMixin
from fizy.lib.admin import ReadOnlyAdmin, ReadOnlyInline

from .models import Message, Notice, SmsReply, TrackingAccess


class MessageInline(ReadOnlyInline):
    model = Message
    fields = ["channel", "masked_to", "status", "error", "sent_at", "body"]
    readonly_fields = fields


@admin.register(Notice)
class NoticeAdmin(PatientAccessAdminMixin, ReadOnlyAdmin):
    list_display = ["created_at", "clinic", "order", "patient_label", "milestone", "status", "reason"]
    list_filter = ["milestone", "status", "clinic"]
    list_select_related = ["clinic", "order", "patient"]
    raw_id_fields = ["order", "patient"]
    inlines = [MessageInline]
    date_hierarchy = "created_at"

    @admin.display(description="patient")
    def patient_label(self, obj):
        return f"{obj.patient.first_name} {obj.patient.last_name[:1]}. ({obj.patient.chart_id})"


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "channel", "masked_to", "status", "error", "notice"]
    list_filter = ["channel", "status"]
    list_select_related = ["notice"]
    exclude = ["to"]
    readonly_fields = ["masked_to"]
    search_fields = ["provider_id"]


@admin.register(TrackingAccess)
class TrackingAccessAdmin(ReadOnlyAdmin):
    list_display = ["at", "outcome", "link", "ip_hash", "refresh"]
    list_filter = ["outcome", "refresh"]


@admin.register(SmsReply)
class SmsReplyAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "keyword", "patients", "message_sid"]
    list_filter = ["keyword"]
    exclude = ["from_number"]
