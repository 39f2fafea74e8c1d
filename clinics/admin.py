from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from fizy.lib.admin import ReadOnlyAdmin
from fizy.lib.dates import parse_us_or_iso_date

from .access import PatientAccessAdminMixin, patient_history, record_patient_access
from .approvals import PERMISSION, ApprovalError, approval_approve, approval_decline
from .audit import Action, audit_record
from .models import (
    Approval,
    AuditEntry,
    Clinic,
    DEARegistration,
    Membership,
    Organization,
    Patient,
    PatientAccess,
    Prescriber,
    PrescriberLicense,
)


class ClinicInline(admin.TabularInline):
    model = Clinic
    fields = ["name", "npi", "city", "state"]
    extra = 0
    show_change_link = True


@admin.register(Organization)
class OrganizationAdmin(SimpleHistoryAdmin):
    list_display = ["name", "clinic_count", "platform_fee_percent", "platform_fee_fixed", "created_at"]
    search_fields = ["name"]
    inlines = [ClinicInline]
    fieldsets = [
        (None, {"fields": ["name"]}),
        ("Fizy platform fee", {
            "fields": ["platform_fee_percent", "platform_fee_fixed"],
            "description": "Disclosed to the clinic as its own line on the cart, the review, every order and "
                           "receipt; charged with the accepted lines only. Drug prices stay pass-through.",
        }),
    ]

    def get_readonly_fields(self, request, obj=None):
        # Fees are money: only the finance role sets them (others see them).
        if request.user.has_perm("clinics.change_platform_fee"):
            return self.readonly_fields
        return [*self.readonly_fields, "platform_fee_percent", "platform_fee_fixed"]

    @admin.display(description="clinics")
    def clinic_count(self, obj):
        return obj.clinics.count()


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Clinic)
class ClinicAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "npi", "dea_number", "city", "state", "timezone"]
    list_filter = ["state", "organization", "timezone"]
    search_fields = ["name", "npi", "organization__name", "city"]
    list_select_related = ["organization"]
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["organization", "name", "npi", "dea_number", "timezone"]}),
        ("Ship-to address", {"fields": ["address_line1", "address_line2", "city", "state", "zip_code"]}),
        ("Billing contact", {"fields": ["billing_contact_name", "billing_email", "billing_phone"]}),
    ]


@admin.register(Membership)
class MembershipAdmin(SimpleHistoryAdmin):
    list_display = ["user", "clinic", "role", "created_at"]
    list_filter = ["role", "clinic"]
    search_fields = ["user__username", "user__email", "clinic__name"]
    list_select_related = ["user", "clinic__organization"]
    autocomplete_fields = ["user", "clinic"]


class PrescriberLicenseInline(admin.TabularInline):
    model = PrescriberLicense
    extra = 0


class DEARegistrationInline(admin.TabularInline):
    model = DEARegistration
    extra = 0


@admin.register(Prescriber)
class PrescriberAdmin(admin.ModelAdmin):
    list_display = ["__str__", "organization", "npi", "dea_number", "licensed_states", "active"]
    list_filter = ["active", "organization", "licenses__state"]
    search_fields = ["first_name", "last_name", "npi", "dea_number"]
    inlines = [PrescriberLicenseInline, DEARegistrationInline]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("organization").prefetch_related("licenses")

    @admin.display(description="licensed in")
    def licensed_states(self, obj):
        return ", ".join(sorted({lic.state for lic in obj.licenses.all() if lic.is_active()})) or "—"


@admin.register(Patient)
class PatientAdmin(PatientAccessAdminMixin, admin.ModelAdmin):
    list_display = ["last_name", "first_name", "chart_id", "date_of_birth", "organization", "city", "state"]
    list_display_links = ["last_name", "first_name"]
    list_filter = ["state", "organization"]
    search_fields = ["first_name", "last_name", "chart_id", "date_of_birth", "email"]
    list_select_related = ["organization"]
    fieldsets = [
        (None, {"fields": ["organization", "chart_id", "first_name", "last_name", "date_of_birth", "phone", "email"]}),
        ("Shipping address", {"fields": ["address_line1", "address_line2", "city", "state", "zip_code"]}),
        ("Access", {"fields": ["who_saw_link"]}),
    ]
    readonly_fields = ["who_saw_link"]

    def get_search_results(self, request, queryset, search_term):
        # Let staff search by a date of birth typed as MM/DD/YYYY as well as YYYY-MM-DD.
        dob = parse_us_or_iso_date(search_term)
        if dob:
            return queryset.filter(date_of_birth=dob), False
        return super().get_search_results(request, queryset, search_term)

    def get_urls(self):
        view = self.admin_site.admin_view(self.who_saw_view)
        return [path("<path:object_id>/who-saw/", view, name="clinics_patient_who_saw"), *super().get_urls()]

    @admin.display(description="who saw or changed this record")
    def who_saw_link(self, patient):
        if not patient.pk:
            return "—"
        return format_html('<a href="{}">Everyone who saw or changed this record</a>',
                           reverse("admin:clinics_patient_who_saw", args=[patient.pk]))

    def who_saw_view(self, request, object_id):
        """For one patient: every page they were shown on (to whom, in which clinic, when) and
        every change to their record or orders, newest first."""
        patient = self.get_object(request, unquote(object_id))
        if patient is None or not self.has_view_permission(request, patient):
            raise Http404("No such patient.")
        record_patient_access(request, [patient])
        context = {**self.admin_site.each_context(request), "opts": self.opts, "patient": patient,
                   "original": patient, "title": f"Who saw or changed {patient}",
                   "rows": patient_history(patient=patient)}
        return TemplateResponse(request, "admin/clinics/patient/who_saw.html", context)


@admin.register(AuditEntry)
class AuditEntryAdmin(PatientAccessAdminMixin, ReadOnlyAdmin):
    list_display = ["at", "actor", "actor_label", "clinic", "patient", "action", "object_type", "object_id"]
    list_filter = ["action", "clinic"]
    search_fields = ["action", "actor__username", "patient__last_name", "patient__chart_id", "object_id"]
    list_select_related = ["actor", "clinic__organization", "patient"]
    date_hierarchy = "at"


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyAdmin):
    """Changes that wait for a second staff member: select one and approve (it is applied at once)
    or decline it. Nobody approves their own request."""

    list_display = ["requested_at", "kind", "summary", "status", "requested_by", "decided_by", "decided_at", "result"]
    list_filter = ["status", "kind"]
    list_select_related = ["requested_by", "decided_by"]
    search_fields = ["summary", "object_id", "requested_by__username"]
    actions = ["approve", "decline"]

    def has_decide_permission(self, request):
        return any(request.user.has_perm(permission) for permission in PERMISSION.values())

    def _decide(self, request, queryset, service, done):
        for approval in queryset.order_by("pk"):
            try:
                approval = service(approval=approval, actor=request.user)
            except ApprovalError as error:
                self.message_user(request, str(error), messages.ERROR)
            else:
                self.message_user(request, f"Approval #{approval.pk} {done}. {approval.result}".strip(), messages.SUCCESS)

    @admin.action(description="Approve and apply the selected changes", permissions=["decide"])
    def approve(self, request, queryset):
        self._decide(request, queryset, approval_approve, "approved")

    @admin.action(description="Decline the selected changes", permissions=["decide"])
    def decline(self, request, queryset):
        self._decide(request, queryset, approval_decline, "declined")


@admin.register(PatientAccess)
class PatientAccessAdmin(PatientAccessAdminMixin, ReadOnlyAdmin):
    """The PHI access log: who was shown which patient, on which page, in which clinic, when."""

    list_display = ["at", "user", "actor_label", "clinic", "patient", "page", "method"]
    list_filter = ["page", "clinic"]
    search_fields = ["user__username", "actor_label", "=patient__chart_id", "patient__last_name", "page"]
    list_select_related = ["user", "clinic__organization", "patient"]
    date_hierarchy = "at"


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class StaffUserAdmin(UserAdmin):
    """User admins (clinics/roles.py) manage users and give staff their roles (groups); only a
    superuser makes superusers, grants single permissions or changes a superuser."""

    SUPERUSER_ONLY = ["is_superuser", "user_permissions"]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += self.SUPERUSER_ONLY
        return readonly

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def save_related(self, request, form, formsets, change):
        # Who gave whom which staff role is in our audit trail, before → after.
        user = form.instance
        before = sorted(user.groups.values_list("name", flat=True)) if change else []
        super().save_related(request, form, formsets, change)
        after = sorted(user.groups.values_list("name", flat=True))
        flags = [f for f in ("is_active", "is_staff", "is_superuser") if f in form.changed_data]
        if before != after or flags:
            audit_record(action=Action.STAFF_ACCESS_CHANGE, actor=request.user, obj=user, detail={
                "username": user.username, "roles": {"from": before, "to": after},
                **{flag: {"from": form.initial.get(flag), "to": form.cleaned_data.get(flag)} for flag in flags},
            })
