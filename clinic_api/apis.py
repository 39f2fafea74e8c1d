"""The clinic API's endpoints (``/api/v1/``). Thin: check the body's shape, call the same forms,
services and selectors as the coordinator's pages, answer JSON."""

from __future__ import annotations

import base64
import binascii

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Q
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from carts import selectors as cart_selectors
from carts.forms import CartLineForm, PatientFixForm, PatientQuickForm
from carts.models import CartLine
from carts.services import (
    CartError,
    CartLocked,
    LineInput,
    cart_add_lines,
    cart_get_active,
    cart_remove_line,
    cart_update_line,
)
from carts.validation import blocks_adding, validate_drafts
from catalog.models import Product
from clinics.models import Patient, Prescriber
from clinics.patients import PATIENT_FIX_FIELDS, PatientError, patient_create, patient_update
from fulfillment import selectors as fulfillment_selectors

from notices.selectors import coordinator_emails
from prescriptions.forms import PrescriptionForm
from prescriptions.selectors import prescription_get
from prescriptions.services import PrescriptionError, prescription_record

from . import presenters
from .base import IDEMPOTENCY_HEADER, ClinicApiView, form_errors
from .errors import ApiError, error
from .models import Scope, WebhookSubscription
from .review import cart_mark_ready
from .webhooks import WebhookError, subscription_create, subscription_remove
from .serializers import (
    AddLinesResultSerializer,
    CartLineSerializer,
    CartSerializer,
    LineChangeSerializer,
    LinesInSerializer,
    NewSubscriptionSerializer,
    ReadyInSerializer,
    ReadyResultSerializer,
    SubscriptionInSerializer,
    SubscriptionSerializer,
    OrderSerializer,
    OrderSummarySerializer,
    PrescriptionInSerializer,
    PrescriptionSerializer,
    PatientInSerializer,
    PatientSerializer,
    ValidationResultSerializer,
)

IDEMPOTENCY = OpenApiParameter(
    IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER, required=False,
    description="A key of yours, unique per request: a retry with the same key and body adds nothing and gets the "
                "first answer again; the same key with another body gets 422 idempotency_key_reused.")


def _checked(serializer_class, data, **kwargs):
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- patients -----------------------------------------------------------------------------------


class PatientsApi(ClinicApiView):
    scope = Scope.PATIENTS_WRITE

    @extend_schema(operation_id="patients_upsert", request=PatientInSerializer,
                   responses={200: PatientSerializer, 201: PatientSerializer},
                   summary="Create a patient, or update one found by chart_id")
    def post(self, request):
        """A new chart id creates the patient (every field of the cart's "new patient" form is
        needed); a known one updates the date of birth, phone and address given (names and email
        are changed by a coordinator)."""
        data = _checked(PatientInSerializer, self.data_object())
        raw = {name: value for name, value in self.data_object().items()}
        chart_id = data["chart_id"].strip()
        patient = Patient.objects.filter(organization_id=self.clinic.organization_id, chart_id=chart_id).first()
        if patient is None:
            form = PatientQuickForm(raw, clinic=self.clinic)
            if not form.is_valid():
                raise ApiError(400, "invalid", "", errors=form_errors(form))
            try:
                patient = patient_create(clinic=self.clinic, actor=None, **form.cleaned_data)
            except PatientError as exc:
                raise ApiError(409, "chart_id_taken", str(exc), field="chart_id") from None
            self.shown([patient])
            return Response(presenters.patient(patient), status=201)
        fixed = [name for name in PATIENT_FIX_FIELDS if name in raw]
        not_here = [name for name in ("first_name", "last_name", "email")
                    if name in raw and str(raw[name] or "").strip() != str(getattr(patient, name) or "")]
        if not_here:
            raise ApiError(400, "not_changeable", "", errors=[
                error("not_changeable", f"A patient's {name.replace('_', ' ')} is changed by a coordinator in Fizy, "
                                        "not through the API.", name) for name in not_here])
        if fixed:
            form = PatientFixForm(raw, instance=Patient.objects.get(pk=patient.pk), fields=fixed)
            if not form.is_valid():
                raise ApiError(400, "invalid", "", errors=form_errors(form))
            try:
                patient = patient_update(patient=patient, clinic=self.clinic, actor=None,
                                         **{name: form.cleaned_data[name] for name in fixed})
            except PatientError as exc:
                raise ApiError(400, "invalid", str(exc)) from None
        self.shown([patient])
        return Response(presenters.patient(patient), status=200)


    @extend_schema(operation_id="patients_find", responses={200: PatientSerializer(many=True)},
                   parameters=[OpenApiParameter("chart_id", str, required=True, description="The EHR's chart id.")],
                   summary="Find a patient by chart id (a list of zero or one)")
    def get(self, request):
        chart_id = request.query_params.get("chart_id", "").strip()
        if not chart_id:
            raise ApiError(400, "required", "Give the chart id to look for: ?chart_id=…", field="chart_id")
        patient = Patient.objects.filter(organization_id=self.clinic.organization_id, chart_id=chart_id).first()
        if patient is not None:
            self.audit_read(obj=patient, patient=patient)
            self.shown([patient])
        return Response([presenters.patient(patient)] if patient else [])


class PatientApi(ClinicApiView):
    scope = Scope.PATIENTS_WRITE

    @extend_schema(operation_id="patients_read", responses={200: PatientSerializer}, summary="Read a patient")
    def get(self, request, pk: int):
        patient = Patient.objects.filter(pk=pk, organization_id=self.clinic.organization_id).first()
        if patient is None:
            raise Http404
        self.audit_read(obj=patient, patient=patient)
        self.shown([patient])
        return Response(presenters.patient(patient))


# --- cart lines ---------------------------------------------------------------------------------


def _resolve(clinic, lines: list[dict]) -> tuple[list[LineInput | None], list[dict]]:
    """The patients, products and prescribers the lines name (a fixed number of queries), checked
    with the cart's line form; returns one LineInput per line (None where it has errors) and the errors."""
    org = clinic.organization_id
    patients = Patient.objects.filter(organization_id=org).filter(
        Q(pk__in=[l["patient"] for l in lines if "patient" in l])
        | Q(chart_id__in=[l["chart_id"] for l in lines if "chart_id" in l]))
    by_id, by_chart = {}, {}
    for p in patients:
        by_id[p.pk], by_chart[p.chart_id] = p, p
    products = Product.objects.filter(active=True).filter(
        Q(pk__in=[l["product"] for l in lines if "product" in l])
        | Q(sku__in=[l["product_sku"] for l in lines if "product_sku" in l]))
    product_id, product_sku = {}, {}
    for p in products:
        product_id[p.pk], product_sku[p.sku] = p, p
    npi = {p.npi: p.pk for p in Prescriber.objects.filter(
        organization_id=org, npi__in=[l["prescriber_npi"] for l in lines if "prescriber_npi" in l])}
    items, errors = [], []
    for index, line in enumerate(lines):
        at = f"lines[{index}]."
        line_errors = []
        patient = by_id.get(line["patient"]) if "patient" in line else by_chart.get(line.get("chart_id", "").strip())
        if patient is None:
            which = "patient" if "patient" in line else "chart_id"
            line_errors.append(error("patient_not_found", "No patient of this clinic with this id or chart id: "
                                     "create them with POST /api/v1/patients first.", at + which))
        product = product_id.get(line["product"]) if "product" in line else product_sku.get(line.get("product_sku", ""))
        if product is None:
            which = "product" if "product" in line else "product_sku"
            line_errors.append(error("product_not_found", "No product offered with this id or SKU.", at + which))
        prescriber = line.get("prescriber")
        if "prescriber_npi" in line:
            prescriber = npi.get(line["prescriber_npi"])
            if prescriber is None:
                line_errors.append(error("prescriber_not_found", f"No prescriber with NPI {line['prescriber_npi']} in "
                                         "this clinic's organization.", at + "prescriber_npi"))
        if line_errors:
            errors += line_errors
            items.append(None)
            continue
        form_data = {name: line.get(name, "") for name in ("quantity", "sig", "days_supply", "clinical_difference", "notes")}
        form_data.update(prescriber=prescriber or "", refills=line.get("refills", 0))
        form_data = {name: "" if value is None else value for name, value in form_data.items()}
        form = CartLineForm(form_data, clinic=clinic, state=patient.state)
        if not form.is_valid():
            errors += form_errors(form, prefix=at)
            items.append(None)
            continue
        items.append(LineInput(patient=patient, product=product, **form.changes()))
    return items, errors


def _cart_error(exc: CartError) -> ApiError:
    if isinstance(exc, CartLocked):
        return ApiError(409, "cart_locked", str(exc))
    return ApiError(400, "cart_refused", str(exc))


class CartLinesApi(ClinicApiView):
    scope = Scope.CART_WRITE

    @extend_schema(operation_id="cart_lines_list", responses={200: CartLineSerializer(many=True)},
                   summary="The cart's lines, each with its routing, landed cost and problems")
    def get(self, request):
        review = cart_selectors.cart_review(cart=cart_get_active(clinic=self.clinic))
        self.audit_read(detail={"lines": len(review.lines)})
        self.shown(line.patient_id for line in review.lines)
        return Response([presenters.cart_line(line, review) for line in review.lines])

    @extend_schema(operation_id="cart_lines_add", request=LinesInSerializer, parameters=[IDEMPOTENCY],
                   responses={201: AddLinesResultSerializer},
                   summary="Add one or many lines (a patient who has the product in the cart gets the quantity merged)")
    def post(self, request):
        """Each line is checked like the cart's add-line form: a line without a prescriber, a
        quantity, a SIG or a days supply is refused (422, the cart's problem codes, field
        ``lines[i].<field>``) and nothing is added; every other problem is reported on the line."""
        return self.idempotent(self._add)

    def _add(self):
        lines = _checked(LinesInSerializer, self.data_object())["lines"]
        items, errors = _resolve(self.clinic, lines)
        if errors:
            raise ApiError(400, "invalid", "", errors=errors)
        blocking = []
        for index, problems in enumerate(validate_drafts(items, clinic=self.clinic)):
            blocking += [error(p.code, p.message, f"lines[{index}].{p.field}") for p in blocks_adding(problems)]
        if blocking:
            raise ApiError(422, "line_incomplete", "", errors=blocking)
        try:
            result = cart_add_lines(clinic=self.clinic, items=items, actor=None)
        except CartError as exc:
            raise _cart_error(exc) from None
        review = cart_selectors.cart_review(cart=cart_get_active(clinic=self.clinic))
        touched = {line.pk for line in result.created} | {line.pk for line, _ in result.merged}
        self.shown(line.patient_id for line in review.lines if line.pk in touched)
        return Response({
            "created": [line.pk for line in result.created],
            "merged": [line.pk for line, _ in result.merged],
            "messages": result.messages(),
            "lines": [presenters.cart_line(line, review) for line in review.lines if line.pk in touched],
        }, status=201)


class CartLineApi(ClinicApiView):
    scope = Scope.CART_WRITE

    def _line(self, pk: int) -> CartLine:
        line = (CartLine.objects.select_related("cart__clinic", "patient", "product", "prescriber")
                .filter(pk=pk, cart__clinic=self.clinic).first())
        if line is None:
            raise Http404
        return line

    def _answer(self, pk: int, status: int = 200) -> Response:
        review = cart_selectors.cart_review(cart=cart_get_active(clinic=self.clinic))
        line = next((l for l in review.lines if l.pk == pk), None)
        if line is None:
            raise Http404
        self.shown([line.patient_id])
        return Response(presenters.cart_line(line, review), status=status)

    @extend_schema(operation_id="cart_lines_read", responses={200: CartLineSerializer}, summary="Read a cart line")
    def get(self, request, pk: int):
        line = self._line(pk)
        self.audit_read(obj=line, patient=line.patient)
        return self._answer(line.pk)

    @extend_schema(operation_id="cart_lines_change", request=LineChangeSerializer, responses={200: CartLineSerializer},
                   summary="Change a cart line's fields (as the cart's line form does)")
    def patch(self, request, pk: int):
        line = self._line(pk)
        changes = _checked(LineChangeSerializer, self.data_object())
        form = CartLineForm(CartLineForm.data_of(line, **{k: "" if v is None else v for k, v in changes.items()}),
                            instance=CartLine.objects.get(pk=line.pk), clinic=self.clinic, state=line.patient.state)
        if not form.is_valid():
            raise ApiError(400, "invalid", "", errors=form_errors(form))
        try:
            cart_update_line(line=line, actor=None, **form.changes())
        except CartError as exc:
            raise _cart_error(exc) from None
        return self._answer(line.pk)

    @extend_schema(operation_id="cart_lines_remove", responses={204: None}, summary="Remove a cart line")
    def delete(self, request, pk: int):
        line = self._line(pk)
        try:
            cart_remove_line(line=line, actor=None)
        except CartError as exc:
            raise _cart_error(exc) from None
        return Response(status=204)


class CartApi(ClinicApiView):
    scope = Scope.CART_WRITE

    @extend_schema(operation_id="cart_read", responses={200: CartSerializer},
                   summary="The cart's totals: drugs, the platform fee, the total, counts of problems")
    def get(self, request):
        review = cart_selectors.cart_review(cart=cart_get_active(clinic=self.clinic))
        return Response(presenters.cart(review))


class CartValidateApi(ClinicApiView):
    scope = Scope.CART_WRITE

    @extend_schema(operation_id="cart_validate", request=None, responses={200: ValidationResultSerializer},
                   summary="Validate the whole cart: every problem the cart page shows (errors block placing the order)")
    def post(self, request):
        review = cart_selectors.cart_review(cart=cart_get_active(clinic=self.clinic))
        return Response({"cart": presenters.cart(review), "problems": [presenters.problem(p) for p in review.problems]})


# --- orders -------------------------------------------------------------------------------------


class OrdersApi(ClinicApiView):
    scope = Scope.ORDERS_READ
    LIMIT = 100

    @extend_schema(operation_id="orders_list", responses={200: OrderSummarySerializer(many=True)},
                   parameters=[OpenApiParameter("before", int, description="Only orders with a smaller id (paging).")],
                   summary="The clinic's orders, newest first (100 at a time), with a count of lines per status")
    def get(self, request):
        orders = fulfillment_selectors.orders_for_clinic(clinic=self.clinic)
        before = request.query_params.get("before", "")
        if before:
            if not before.isdigit():
                raise ApiError(400, "invalid", "'before' is an order id (a whole number).", field="before")
            orders = orders.filter(pk__lt=int(before))
        orders = fulfillment_selectors.orders_with_summary(orders[:self.LIMIT])
        return Response([presenters.order_summary(o) for o in orders])


class OrderApi(ClinicApiView):
    scope = Scope.ORDERS_READ

    @extend_schema(operation_id="orders_read", responses={200: OrderSerializer},
                   summary="An order with each line's status, tracking and money")
    def get(self, request, pk: int):
        order = fulfillment_selectors.order_for_clinic(clinic=self.clinic, pk=pk)
        if order is None:
            raise Http404
        lines = fulfillment_selectors.order_lines(order=order)
        self.audit_read(obj=order, detail={"lines": len(lines)})
        self.shown(line.patient_id for line in lines)
        return Response(presenters.order(order, lines, fulfillment_selectors.order_money(order=order, lines=lines)))


class CartReadyApi(ClinicApiView):
    scope = Scope.CART_WRITE

    @extend_schema(operation_id="cart_ready_for_review", request=ReadyInSerializer, responses={202: ReadyResultSerializer},
                   summary="Mark the cart ready for review: the clinic's coordinators are emailed and place the order")
    def post(self, request):
        note = _checked(ReadyInSerializer, self.data_object() if request.data else {}).get("note", "")
        review = cart_selectors.cart_review(cart=cart_get_active(clinic=self.clinic))
        if not review.lines:
            raise ApiError(409, "cart_empty", "The cart is empty: add lines before asking for a review.")
        cart_mark_ready(review=review, api_key=self.key, note=note)
        return Response({"cart": presenters.cart(review), "notified": len(coordinator_emails(clinic=self.clinic))},
                        status=202)


# --- webhooks -----------------------------------------------------------------------------------


class WebhooksApi(ClinicApiView):
    scope = Scope.WEBHOOKS_MANAGE

    @extend_schema(operation_id="webhooks_list", responses={200: SubscriptionSerializer(many=True)},
                   summary="The clinic's webhook subscriptions")
    def get(self, request):
        subs = WebhookSubscription.objects.filter(clinic=self.clinic, active=True)
        return Response([presenters.subscription(s) for s in subs])

    @extend_schema(operation_id="webhooks_subscribe", request=SubscriptionInSerializer,
                   responses={201: NewSubscriptionSerializer},
                   summary="Subscribe a URL to events; the answer holds its signing secret, shown once")
    def post(self, request):
        data = _checked(SubscriptionInSerializer, self.data_object())
        try:
            sub = subscription_create(clinic=self.clinic, url=data["url"], events=data["events"])
        except WebhookError as exc:
            raise ApiError(400, "invalid", str(exc), field="url") from None
        return Response({**presenters.subscription(sub), "secret": sub.secret}, status=201)


class WebhookApi(ClinicApiView):
    scope = Scope.WEBHOOKS_MANAGE

    @extend_schema(operation_id="webhooks_unsubscribe", responses={204: None}, summary="Remove a webhook subscription")
    def delete(self, request, pk: int):
        sub = WebhookSubscription.objects.filter(pk=pk, clinic=self.clinic, active=True).first()
        if sub is None:
            raise Http404
        subscription_remove(subscription=sub)
        return Response(status=204)


# --- prescriptions ------------------------------------------------------------------------------


class PrescriptionsApi(ClinicApiView):
    scope = Scope.PATIENTS_WRITE
    max_body_bytes = 15 * 1024 * 1024  # a 10 MB document in base64

    @extend_schema(operation_id="prescriptions_record", request=PrescriptionInSerializer,
                   responses={201: PrescriptionSerializer},
                   summary="Record a prescription of record: an e-prescription reference or a signed document")
    def post(self, request):
        """Checked like the cart's "Record the prescription" form and service: the refill limits of
        the product's schedule in the patient's state, the expiry, the document's real type. Lines
        added afterwards for this patient and product use it."""
        raw = self.data_object()
        data = _checked(PrescriptionInSerializer, raw)
        refs, errors = _references(self.clinic, data)
        if errors:
            raise ApiError(400, "invalid", "", errors=errors)
        files = {}
        if data.get("document_base64"):
            try:
                content = base64.b64decode(data["document_base64"], validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "invalid", "document_base64 is not base64.", field="document_base64") from None
            files["document"] = SimpleUploadedFile(data.get("document_name") or "prescription", content)
        form_data = {name: raw.get(name, "") for name in ("source", "sig", "quantity", "days_supply", "written_on",
                                                          "erx_message_id", "rx_number")}
        form_data.update(prescriber=refs["prescriber"].pk, refills_authorized=raw.get("refills_authorized", 0))
        form = PrescriptionForm(form_data, files, organization_id=self.clinic.organization_id)
        if not form.is_valid():
            raise ApiError(400, "invalid", "", errors=form_errors(form))
        cleaned = form.cleaned_data
        try:
            rx = prescription_record(
                clinic=self.clinic, patient=refs["patient"], product=refs["product"], actor=None,
                prescriber=cleaned["prescriber"], sig=cleaned["sig"], quantity=cleaned["quantity"],
                days_supply=cleaned["days_supply"], refills_authorized=cleaned["refills_authorized"],
                written_on=cleaned["written_on"], source=cleaned["source"], erx_message_id=cleaned["erx_message_id"],
                rx_number=cleaned["rx_number"], document=cleaned["document"])
        except PrescriptionError as exc:
            raise ApiError(400, "prescription_refused", str(exc)) from None
        self.shown([rx.patient_id])
        return Response(presenters.prescription(rx), status=201)


class PrescriptionApi(ClinicApiView):
    scope = Scope.PATIENTS_WRITE

    @extend_schema(operation_id="prescriptions_read", responses={200: PrescriptionSerializer},
                   summary="Read a prescription: its status, fills remaining and expiry")
    def get(self, request, pk: int):
        rx = prescription_get(clinic=self.clinic, pk=pk)
        if rx is None:
            raise Http404
        self.audit_read(obj=rx, patient=rx.patient)
        self.shown([rx.patient_id])
        return Response(presenters.prescription(rx))


def _references(clinic, data: dict) -> tuple[dict, list[dict]]:
    """The patient, product and prescriber a prescription names (by id, chart id, SKU or NPI)."""
    org = clinic.organization_id
    found, errors = {}, []
    patients = Patient.objects.filter(organization_id=org)
    found["patient"] = (patients.filter(pk=data["patient"]).first() if "patient" in data
                        else patients.filter(chart_id=data.get("chart_id", "").strip()).first())
    products = Product.objects.filter(active=True)
    found["product"] = (products.filter(pk=data["product"]).first() if "product" in data
                        else products.filter(sku=data.get("product_sku", "")).first())
    prescribers = Prescriber.objects.filter(organization_id=org)
    found["prescriber"] = (prescribers.filter(pk=data["prescriber"]).first() if "prescriber" in data
                           else prescribers.filter(npi=data.get("prescriber_npi", "")).first())
    for name, by, code in (("patient", "chart_id", "patient_not_found"), ("product", "product_sku", "product_not_found"),
                           ("prescriber", "prescriber_npi", "prescriber_not_found")):
        if found[name] is None:
            errors.append(error(code, f"No {name} of this clinic with this {'id' if name in data else by}.",
                                name if name in data else by))
    return found, errors
