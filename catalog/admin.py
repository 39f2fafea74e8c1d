from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from clinics.approvals import ApprovalError
from fizy.lib.webhook_signing import SecretFormatError, generate_secret, validate_secret

from .models import Offering, Partner, PartnerStateLicense, Product
from .services import partner_request_api_url_change

CREDENTIALS_PERMISSION = "catalog.change_partner_credentials"
KEEP = "Write-only: never shown again after saving. Leave blank to keep the current value."


class PartnerForm(forms.ModelForm):
    """The partner's credentials are write-only: the form never carries the stored values (it has
    its own fields, not the model's), a blank field keeps what is stored, and a filled one
    replaces it."""

    new_api_key = forms.CharField(
        label="Order API key", required=False, max_length=500, widget=forms.PasswordInput(render_value=False), help_text=KEEP,
    )
    new_webhook_secret = forms.CharField(
        label="Webhook signing secret", required=False, max_length=200, widget=forms.PasswordInput(render_value=False),
        help_text=KEEP + " Format: whsec_ followed by base64, as the partner was given.",
    )
    new_webhook_secret_next = forms.CharField(
        label="Next webhook signing secret", required=False, max_length=200, widget=forms.PasswordInput(render_value=False),
        help_text=KEEP + " To rotate: set it here and give it to the partner; events signed with either secret are "
                  "accepted; once the partner signs with the new one, tick “make the next secret current”.",
    )
    promote_next_secret = forms.BooleanField(
        label="Make the next secret current", required=False,
        help_text="The next secret replaces the current one (events signed with the old one are refused from then on).",
    )
    clear_webhook_secret_next = forms.BooleanField(label="Remove the next secret", required=False)

    class Meta:
        model = Partner
        exclude = list(Partner.CREDENTIAL_FIELDS)

    def clean_new_webhook_secret(self):
        return self._secret("new_webhook_secret")

    def clean_new_webhook_secret_next(self):
        return self._secret("new_webhook_secret_next")

    def _secret(self, name):
        value = self.cleaned_data.get(name, "").strip()
        if value:
            try:
                validate_secret(value)
            except SecretFormatError as error:
                raise forms.ValidationError(f"{error} Generate one with: python -c \"import base64, secrets; "
                                            f"print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\"") from None
        return value

    def clean(self):
        data = super().clean()
        has_next = bool(data.get("new_webhook_secret_next") or (self.instance.pk and self.instance.webhook_secret_next))
        if data.get("promote_next_secret") and not has_next:
            self.add_error("promote_next_secret", "There is no next secret to make current.")
        if data.get("promote_next_secret") and data.get("clear_webhook_secret_next"):
            self.add_error("clear_webhook_secret_next", "Either make the next secret current or remove it, not both.")
        if data.get("promote_next_secret") and data.get("new_webhook_secret"):
            self.add_error("new_webhook_secret", "Either type a new current secret or make the next one current, not both.")
        return data

    @property
    def credentials_changed(self) -> list[str]:
        """Which credentials this form changes (names only, never values)."""
        data = self.cleaned_data
        changed = [f for f in Partner.CREDENTIAL_FIELDS if data.get(f"new_{f}")]
        if data.get("promote_next_secret"):
            changed += ["webhook_secret", "webhook_secret_next"]
        if data.get("clear_webhook_secret_next"):
            changed.append("webhook_secret_next")
        return list(dict.fromkeys(changed))

    def apply_credentials(self, partner: Partner) -> None:
        data = self.cleaned_data
        if data.get("promote_next_secret"):
            partner.set_credential("webhook_secret", data.get("new_webhook_secret_next") or partner.webhook_secret_next)
            partner.set_credential("webhook_secret_next", "")
            return
        for field in Partner.CREDENTIAL_FIELDS:
            if data.get(f"new_{field}"):
                partner.set_credential(field, data[f"new_{field}"])
        if data.get("clear_webhook_secret_next"):
            partner.set_credential("webhook_secret_next", "")


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
class PartnerAdmin(SimpleHistoryAdmin):
    form = PartnerForm
    list_display = ["name", "slug", "active", "legitscript_id", "licensed_states", "api_base_url"]
    list_filter = ["active", "state_licenses__state"]
    search_fields = ["name", "slug", "legitscript_id"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [PartnerStateLicenseInline, OfferingInlineForPartner]
    readonly_fields = ["credentials"]

    def get_fieldsets(self, request, obj=None):
        # Only the integrations role (catalog.change_partner_credentials) sees the credential fields
        # (whether each is set, and the write-only inputs); the values are never shown to anyone.
        integration = ["api_base_url", "order_lookup", "status_api", "sends_webhooks", "poll_minutes"]
        if request.user.has_perm(CREDENTIALS_PERMISSION):
            integration.insert(1, "credentials")
        if request.user.has_perm(CREDENTIALS_PERMISSION) and self.has_change_permission(request, obj):
            integration += ["new_api_key", "new_webhook_secret", "new_webhook_secret_next", "promote_next_secret",
                            "clear_webhook_secret_next"]
        return [
            (None, {"fields": ["name", "slug", "active", "legitscript_id", "support_email", "support_phone"]}),
            ("Integration", {
                "fields": integration,
                "description": f"To generate a webhook signing secret for a partner: <code>{generate_secret()}</code> "
                               "(a fresh random one each time this page is shown; copy it before saving)."
                if request.user.has_perm(CREDENTIALS_PERMISSION) else "",
            }),
        ]

    def save_model(self, request, obj, form, change):
        if request.user.has_perm(CREDENTIALS_PERMISSION):
            form.apply_credentials(obj)
            if form.credentials_changed:
                # The history says which credential was replaced (names only: the values never go there).
                obj._change_reason = "replaced: " + ", ".join(form.credentials_changed)
        new_url = None
        if "api_base_url" in form.changed_data:
            # Where patients' data and the Bearer key go is set or changed only with a second
            # approver; a new partner has no URL (and is routed nothing) until then.
            new_url, obj.api_base_url = obj.api_base_url, form.initial.get("api_base_url", "") if change else ""
        super().save_model(request, obj, form, change)
        if new_url is not None:
            try:
                approval = partner_request_api_url_change(partner=obj, url=new_url, actor=request.user)
            except ApprovalError as error:
                self.message_user(request, str(error), messages.ERROR)
            else:
                until = ("the partner keeps its current URL until then" if change else
                         "until then the partner has no order API URL and is sent no order")
                self.message_user(request, f"The order API URL change waits for a second integrations staff member "
                                           f"(approval #{approval.pk}); {until}.", messages.WARNING)

    @admin.display(description="credentials")
    def credentials(self, obj):
        def state(field):
            changed = getattr(obj, f"{field}_changed_at")
            when = f" (changed {timezone.localtime(changed):%Y-%m-%d %H:%M %Z})" if changed else ""
            return ("set" if getattr(obj, field) else "not set") + when

        if obj is None or obj.pk is None:
            return "—"
        return (f"API key: {state('api_key')} · webhook secret: {state('webhook_secret')} · "
                f"next webhook secret: {state('webhook_secret_next')}")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("state_licenses")

    @admin.display(description="licensed states")
    def licensed_states(self, obj):
        return ", ".join(lic.state for lic in obj.state_licenses.all() if lic.is_active()) or "—"


@admin.register(Product)
class ProductAdmin(SimpleHistoryAdmin):
    list_display = ["name", "strength", "dosage_form", "sku", "dea_schedule", "max_quantity_per_line",
                    "requires_clinical_difference", "active"]
    list_filter = ["active", "dosage_form", "dea_schedule", "requires_clinical_difference", "offerings__partner"]
    search_fields = ["name", "sku", "strength", "offerings__partner_sku"]
    inlines = [OfferingInlineForProduct]

    def get_search_results(self, request, queryset, search_term):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False


@admin.register(Offering)
class OfferingAdmin(SimpleHistoryAdmin):
    list_display = ["product", "partner", "partner_sku", "unit_price", "shipping_fee", "stock_quantity", "active"]
    list_editable = ["stock_quantity", "active"]
    list_filter = ["active", "partner", "product__dosage_form"]
    search_fields = ["partner_sku", "product__name", "product__sku", "partner__name"]
    list_select_related = ["partner", "product"]
    autocomplete_fields = ["product", "partner"]
