from django.contrib import admin

from .models import Offering, Partner, PartnerStateLicense, Product


class PartnerStateLicenseInline(admin.TabularInline):
    model = PartnerStateLicense
    extra = 0


class OfferingInlineForPartner(admin.TabularInline):
    model = Offering
    fields = ["product", "partner_sku", "unit_price", "shipping_fee", "stock_quantity", "active"]
    extra = 0
    autocomplete_fields = ["product"]


class OfferingInlineForProduct(admin.TabularInline):
    model = Offering
    fields = ["partner", "partner_sku", "unit_price", "shipping_fee", "stock_quantity", "active"]
    extra = 0


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "active", "legitscript_id", "licensed_states", "api_base_url"]
    list_filter = ["active", "state_licenses__state"]
    search_fields = ["name", "slug", "legitscript_id"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [PartnerStateLicenseInline, OfferingInlineForPartner]
    fieldsets = [
        (None, {"fields": ["name", "slug", "active", "legitscript_id", "support_email", "support_phone"]}),
        ("Integration", {"fields": ["api_base_url", "api_key", "webhook_secret"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("state_licenses")

    @admin.display(description="licensed states")
    def licensed_states(self, obj):
        return ", ".join(lic.state for lic in obj.state_licenses.all() if lic.is_active()) or "—"


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "strength", "dosage_form", "sku", "dea_schedule", "max_quantity_per_line",
                    "requires_clinical_difference", "active"]
    list_filter = ["active", "dosage_form", "dea_schedule", "requires_clinical_difference", "offerings__partner"]
    search_fields = ["name", "sku", "strength", "offerings__partner_sku"]
    inlines = [OfferingInlineForProduct]

    def get_search_results(self, request, queryset, search_term):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False


@admin.register(Offering)
class OfferingAdmin(admin.ModelAdmin):
    list_display = ["product", "partner", "partner_sku", "unit_price", "shipping_fee", "stock_quantity", "active"]
    list_editable = ["stock_quantity", "active"]
    list_filter = ["active", "partner", "product__dosage_form"]
    search_fields = ["partner_sku", "product__name", "product__sku", "partner__name"]
    list_select_related = ["partner", "product"]
    autocomplete_fields = ["product", "partner"]
