"""The shapes of the clinic API's requests and answers. Requests are checked for unknown fields and
types here; the rules (a patient's record, a line's fields, the cart's problems) are the pages'
own forms and services, called by the views."""

from rest_framework import serializers

from carts.services import EDITABLE_FIELDS

from .base import StrictSerializer
from .models import Scope, WebhookEvent

# --- patients -----------------------------------------------------------------------------------

PATIENT_FIELDS = ["chart_id", "first_name", "last_name", "date_of_birth", "phone", "email",
                  "address_line1", "address_line2", "city", "state", "zip_code"]


class PatientInSerializer(StrictSerializer):
    """A patient to create or update, found by ``chart_id``. A new patient needs every field the
    cart's "new patient" form needs; for an existing one, the address, date of birth and phone
    given are updated (as a coordinator completes them on the cart)."""

    chart_id = serializers.CharField(max_length=40)
    first_name = serializers.CharField(max_length=100, required=False)
    last_name = serializers.CharField(max_length=100, required=False)
    date_of_birth = serializers.CharField(required=False, help_text="YYYY-MM-DD")
    phone = serializers.CharField(required=False, allow_blank=True)
    email = serializers.CharField(required=False, allow_blank=True)
    address_line1 = serializers.CharField(required=False, allow_blank=True)
    address_line2 = serializers.CharField(required=False, allow_blank=True)
    city = serializers.CharField(required=False, allow_blank=True)
    state = serializers.CharField(required=False, allow_blank=True, help_text="Two-letter US state")
    zip_code = serializers.CharField(required=False, allow_blank=True)


class PatientSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    chart_id = serializers.CharField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    date_of_birth = serializers.DateField(allow_null=True)
    phone = serializers.CharField()
    email = serializers.CharField()
    address_line1 = serializers.CharField()
    address_line2 = serializers.CharField()
    city = serializers.CharField()
    state = serializers.CharField()
    zip_code = serializers.CharField()
    updated_at = serializers.DateTimeField()


# --- cart ---------------------------------------------------------------------------------------


class LineInSerializer(StrictSerializer):
    """One line: the patient (``patient`` id or ``chart_id``), the product (``product`` id or
    ``product_sku``), the prescriber (``prescriber`` id or ``prescriber_npi``) and the line's fields."""

    patient = serializers.IntegerField(required=False)
    chart_id = serializers.CharField(required=False)
    product = serializers.IntegerField(required=False)
    product_sku = serializers.CharField(required=False)
    prescriber = serializers.IntegerField(required=False, allow_null=True)
    prescriber_npi = serializers.CharField(required=False)
    quantity = serializers.IntegerField()
    sig = serializers.CharField(required=False, allow_blank=True)
    days_supply = serializers.IntegerField(required=False, allow_null=True)
    refills = serializers.IntegerField(required=False)
    clinical_difference = serializers.CharField(required=False, allow_blank=True)
    notes = serializers.CharField(required=False, allow_blank=True)


class LinesInSerializer(StrictSerializer):
    lines = LineInSerializer(many=True, allow_empty=False, max_length=500)


class LineChangeSerializer(StrictSerializer):
    """The fields to change on a cart line; those not sent stay as they are."""

    prescriber = serializers.IntegerField(required=False, allow_null=True)
    quantity = serializers.IntegerField(required=False)
    sig = serializers.CharField(required=False, allow_blank=True)
    days_supply = serializers.IntegerField(required=False, allow_null=True)
    refills = serializers.IntegerField(required=False)
    clinical_difference = serializers.CharField(required=False, allow_blank=True)
    notes = serializers.CharField(required=False, allow_blank=True)


assert set(LineChangeSerializer().fields) == set(EDITABLE_FIELDS)


class ProblemSerializer(serializers.Serializer):
    """A problem of the cart, exactly as the cart page shows it (``carts.validation.Problem``)."""

    line = serializers.IntegerField(source="line_id", allow_null=True)
    field = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()
    severity = serializers.ChoiceField(choices=["error", "warning"])
    acknowledged = serializers.BooleanField()


class RoutingSerializer(serializers.Serializer):
    routed = serializers.BooleanField()
    partner = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    unit_price = serializers.DecimalField(max_digits=10, decimal_places=2, allow_null=True)
    shipping_share = serializers.DecimalField(max_digits=10, decimal_places=2)
    landed_cost = serializers.DecimalField(max_digits=10, decimal_places=2, allow_null=True)


class CartLineSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    patient = serializers.IntegerField()
    chart_id = serializers.CharField()
    product = serializers.IntegerField()
    product_sku = serializers.CharField()
    product_name = serializers.CharField()
    prescriber = serializers.IntegerField(allow_null=True)
    quantity = serializers.IntegerField()
    sig = serializers.CharField()
    days_supply = serializers.IntegerField(allow_null=True)
    refills = serializers.IntegerField()
    clinical_difference = serializers.CharField()
    notes = serializers.CharField()
    acknowledged_warnings = serializers.ListField(child=serializers.CharField())
    routing = RoutingSerializer(allow_null=True)
    landed_cost = serializers.DecimalField(max_digits=10, decimal_places=2, allow_null=True)
    problems = ProblemSerializer(many=True)


class AddLinesResultSerializer(serializers.Serializer):
    created = serializers.ListField(child=serializers.IntegerField())
    merged = serializers.ListField(child=serializers.IntegerField())
    messages = serializers.ListField(child=serializers.CharField())
    lines = CartLineSerializer(many=True)


class CartSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    lines = serializers.IntegerField()
    patients = serializers.IntegerField()
    drugs = serializers.DecimalField(max_digits=12, decimal_places=2)
    fee = serializers.DecimalField(max_digits=12, decimal_places=2)
    total = serializers.DecimalField(max_digits=12, decimal_places=2)
    unrouted_lines = serializers.ListField(child=serializers.IntegerField())
    errors = serializers.IntegerField()
    warnings = serializers.IntegerField()
    can_checkout = serializers.BooleanField()


class ValidationResultSerializer(serializers.Serializer):
    cart = CartSerializer()
    problems = ProblemSerializer(many=True)


class ReadyInSerializer(StrictSerializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=300)


class ReadyResultSerializer(serializers.Serializer):
    cart = CartSerializer()
    notified = serializers.IntegerField(help_text="How many of the clinic's coordinators were emailed.")


# --- orders -------------------------------------------------------------------------------------


class OrderLineSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    patient = serializers.IntegerField()
    chart_id = serializers.CharField()
    product = serializers.IntegerField()
    quantity = serializers.IntegerField()
    status = serializers.CharField()
    reason_code = serializers.CharField()
    status_changed_at = serializers.DateTimeField(allow_null=True)
    partner = serializers.CharField()
    carrier = serializers.CharField()
    tracking_number = serializers.CharField()
    tracking_url = serializers.CharField()
    price = serializers.DecimalField(max_digits=10, decimal_places=2)
    net_charged = serializers.DecimalField(max_digits=10, decimal_places=2)


class OrderMoneySerializer(serializers.Serializer):
    authorized = serializers.DecimalField(max_digits=12, decimal_places=2)
    captured = serializers.DecimalField(max_digits=12, decimal_places=2)
    charged_later = serializers.DecimalField(max_digits=12, decimal_places=2)
    refunded = serializers.DecimalField(max_digits=12, decimal_places=2)
    fee = serializers.DecimalField(max_digits=12, decimal_places=2)
    net = serializers.DecimalField(max_digits=12, decimal_places=2)


class OrderSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.CharField()
    placed_at = serializers.DateTimeField()
    total = serializers.DecimalField(max_digits=12, decimal_places=2)
    payment_status = serializers.CharField()
    lines = serializers.IntegerField()
    statuses = serializers.DictField(child=serializers.IntegerField())


class OrderSerializer(OrderSummarySerializer):
    money = OrderMoneySerializer()
    order_lines = OrderLineSerializer(many=True)


# --- webhooks -----------------------------------------------------------------------------------


class SubscriptionInSerializer(StrictSerializer):
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.values), allow_empty=False)


class SubscriptionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class NewSubscriptionSerializer(SubscriptionSerializer):
    secret = serializers.CharField(help_text="whsec_…: verify our signatures with it (Standard Webhooks). Shown once.")


SCOPES = Scope.values


# --- prescriptions ------------------------------------------------------------------------------


class PrescriptionInSerializer(StrictSerializer):
    """A prescription of record: from an e-prescription (``source: erx`` with ``erx_message_id``
    and/or ``rx_number``) or a signed document (``source: document`` with the file in base64)."""

    patient = serializers.IntegerField(required=False)
    chart_id = serializers.CharField(required=False)
    product = serializers.IntegerField(required=False)
    product_sku = serializers.CharField(required=False)
    prescriber = serializers.IntegerField(required=False)
    prescriber_npi = serializers.CharField(required=False)
    source = serializers.ChoiceField(choices=["erx", "document"])
    sig = serializers.CharField()
    quantity = serializers.IntegerField()
    days_supply = serializers.IntegerField()
    refills_authorized = serializers.IntegerField(required=False)
    written_on = serializers.DateField()
    erx_message_id = serializers.CharField(required=False, allow_blank=True, max_length=100)
    rx_number = serializers.CharField(required=False, allow_blank=True, max_length=40)
    document_base64 = serializers.CharField(required=False, help_text="The signed PDF, JPEG or PNG (≤ 10 MB), base64.")
    document_name = serializers.CharField(required=False, max_length=100)


class PrescriptionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reference = serializers.CharField()
    patient = serializers.IntegerField()
    product = serializers.IntegerField()
    prescriber = serializers.IntegerField()
    source = serializers.CharField()
    status = serializers.CharField()
    quantity = serializers.IntegerField()
    days_supply = serializers.IntegerField()
    refills_authorized = serializers.IntegerField()
    fills_remaining = serializers.IntegerField()
    written_on = serializers.DateField()
    expires_on = serializers.DateField()
    erx_message_id = serializers.CharField()
    rx_number = serializers.CharField()
    has_document = serializers.BooleanField()
