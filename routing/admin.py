from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path
from localflavor.us.us_states import STATE_CHOICES
from simple_history.admin import SimpleHistoryAdmin

from .engine import route_preview
from .forms import RouteTestForm, RoutingRuleForm
from .models import RoutingRule


class ShipToStateFilter(admin.SimpleListFilter):
    """Rules that can apply to a state: those naming it and those with no state condition."""

    title = "patient ship-to state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        used = {code for states in RoutingRule.objects.values_list("states", flat=True) for code in states}
        return [(code, name) for code, name in STATE_CHOICES if code in used]

    def queryset(self, request, queryset):
        state = self.value()
        if not state:
            return queryset
        # The JSON list is matched in Python: JSON containment is not portable to SQLite, and rules are few.
        ids = [pk for pk, states in queryset.values_list("pk", "states") if not states or state in states]
        return queryset.filter(pk__in=ids)


@admin.register(RoutingRule)
class RoutingRuleAdmin(SimpleHistoryAdmin):
    form = RoutingRuleForm
    list_display = ["priority", "name", "conditions", "partner", "active", "updated_at"]
    list_display_links = ["name"]
    list_editable = ["priority", "active"]
    list_filter = [
        "active", "partner", ShipToStateFilter,
        ("product", admin.RelatedOnlyFieldListFilter),
        ("organization", admin.RelatedOnlyFieldListFilter),
        ("clinic", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["name", "partner__name", "product__name", "product__sku"]
    list_select_related = ["partner", "product", "organization", "clinic"]
    autocomplete_fields = ["partner", "product", "organization", "clinic"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "priority", "active", "partner"]}),
        ("Conditions", {
            "fields": ["product", "states", "organization", "clinic"],
            "description": "A line matches when it meets every condition set; a blank condition matches anything. "
                           "The rule wins only if its partner is eligible for the line (active, offering the "
                           "product, licensed in the patient's state, enough stock); otherwise the next rule is tried.",
        }),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="conditions")
    def conditions(self, obj):
        return obj.conditions_summary

    def get_urls(self):
        return [
            path("test-route/", self.admin_site.admin_view(self.test_route_view), name="routing_routingrule_test_route"),
            *super().get_urls(),
        ]

    def test_route_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = RouteTestForm(request.GET or None)
        decision = route_preview(**form.cleaned_data) if form.is_valid() else None
        context = {
            **self.admin_site.each_context(request),
            "title": "Test a route",
            "opts": self.model._meta,
            "form": form,
            "decision": decision,
        }
        return TemplateResponse(request, "admin/routing/routingrule/test_route.html", context)
