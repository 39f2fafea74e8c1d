"""Scenario 6: every URL pattern of the project (coordinator pages, APIs, admin), requested by
bob — a coordinator of clinic B — with clinic A's ids in every path parameter and in the usual
form fields, by GET and by POST. No response is a 500, none shows clinic A's patients, the
id-bearing coordinator URLs answer 404/403/405 (or send to a login page), and clinic A's data
is exactly the same afterwards.

Every pattern must be classified below; a new URL that is not makes this test fail, so that
whoever adds it decides how it is protected."""

import re

import pytest
from django.core.files.base import ContentFile
from django.contrib.contenttypes.models import ContentType
from django.urls import URLResolver, get_resolver

from carts.models import Cart, CartLine
from carts.services import LineInput, cart_add_lines
from clinic_api.models import ApiKey, WebhookDelivery, WebhookSubscription
from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory
from clinics.models import AuditEntry, Clinic, Membership, Patient, Prescriber
from clinics.tests.factories import PatientFactory, PrescriberFactory, PrescriberLicenseFactory
from fulfillment.models import AttentionItem, LineEvent, Order, OrderLine, PartnerOrder, PaymentEvent, WebhookEvent
from fulfillment.status import line_apply_status
from fulfillment.tests.factories import order_with_lines
from prescriptions.tests.factories import PrescriptionFactory

pytestmark = pytest.mark.django_db

# Coordinator URLs whose path carries an id: which of clinic A's objects each parameter gets.
ID_BEARING = {
    "carts:line": {"pk": "cart_line"},
    "carts:line-save": {"pk": "cart_line"},
    "carts:line-remove": {"pk": "cart_line"},
    "carts:line-acknowledge": {"pk": "cart_line"},
    "carts:line-fix": {"pk": "cart_line"},
    "carts:line-prescription": {"pk": "cart_line"},
    "prescriptions:document": {"pk": "prescription"},
    "carts:patient-fix": {"pk": "patient"},
    "carts:reorder": {"line_pk": "order_line"},
    "fulfillment:attention-dismiss": {"pk": "attention_item"},
    "fulfillment:order": {"pk": "order"},
    "fulfillment:line": {"pk": "order", "line_pk": "order_line"},
    "fulfillment:receipt": {"pk": "order"},
    "fulfillment:order-fhir": {"pk": "order"},
    "fulfillment:charge-again": {"pk": "order", "line_pk": "order_line"},
    "fulfillment:line-cancel": {"pk": "order", "line_pk": "order_line"},
    "fulfillment:line-reroute": {"pk": "order", "line_pk": "order_line"},
    "fulfillment:line-answer": {"pk": "order", "line_pk": "order_line"},
    "notices:order": {"pk": "order"},
    "notices:link-revoke": {"pk": "order", "patient_pk": "patient"},
    "notices:link-new": {"pk": "order", "patient_pk": "patient"},
    "notices:patient": {"pk": "patient"},
    # No id, but path parameters: clinic admins' template pages (bob, a coordinator, gets 403).
    "notices:template": {"milestone": "milestone", "channel": "channel"},
    "notices:template-preview": {"milestone": "milestone", "channel": "channel"},
    "clinic_api:key-revoke": {"pk": "api_key"},
    "clinic_api:webhook-remove": {"pk": "webhook"},
    "clinic_api:delivery-resend": {"pk": "webhook_delivery"},
}
# Coordinator URLs without an id in the path: they act on the user's own clinic only (the ids
# they take in the query or the form — patient, product, clinic — are clinic A's in this sweep).
OWN_CLINIC = {
    "home", "switch-clinic", "billing", "billing-setup", "billing-card",
    "carts:cart", "carts:patient-results", "carts:product-results", "carts:add-panel", "carts:patient-new",
    "carts:line-add", "carts:acknowledge-all", "carts:validate", "carts:checkout", "carts:refills", "carts:prescriptions-needed-csv", "carts:import",
    "carts:import-confirm", "carts:import-cancel", "carts:import-sample", "fulfillment:orders", "fulfillment:attention", "fulfillment:payments",
    "notices:index", "notices:patients", "notices:settings",
    "clinic_api:settings", "clinic_api:key-create", "clinic_api:webhook-create",
    # The user's own second factor (accounts/): no clinic's data at all.
    "accounts:enrol", "accounts:verify", "accounts:recovery-codes",
}
# Anyone may reach these.
PUBLIC = {"login", "logout", "favicon", "clinic_api:schema", "clinic_api:docs", "health"}
# Machine endpoints authenticated by a signature or an API key, never by a session.
SIGNED_APIS = {
    "fulfillment:partner-events": {"slug": "partner_slug"},
    "fulfillment:sandbox-orders": {"slug": "partner_slug"},
    "fulfillment:sandbox-order-status": {"slug": "partner_slug", "reference": "partner_reference"},
    "fulfillment:sandbox-cancel-line": {"slug": "partner_slug", "reference": "partner_reference", "line_id": "order_line"},
    "fulfillment:sandbox-hold-answer": {"slug": "partner_slug", "reference": "partner_reference", "line_id": "order_line"},
    "stripe-events": {},
    "notices:twilio-status": {},
    "notices:twilio-inbound": {},
    "notices:track": {"token": "token"},  # a patient's signed link; a wrong one shows nothing (404)
    "fulfillment:partner-prescription-document": {"token": "token"},  # signed for one partner and line; else 404
    # The clinic API (an API key; bob's clinic's key is swept in test_clinic_b_key_cannot_reach_clinic_a).
    "clinic_api:patients": {},
    "clinic_api:patient": {"pk": "patient"},
    "clinic_api:prescriptions": {},
    "clinic_api:prescription": {"pk": "prescription"},
    "clinic_api:cart": {},
    "clinic_api:cart-validate": {},
    "clinic_api:cart-ready": {},
    "clinic_api:webhooks": {},
    "clinic_api:webhook": {"pk": "webhook"},
    "clinic_api:cart-lines": {},
    "clinic_api:cart-line": {"pk": "cart_line"},
    "clinic_api:orders": {},
    "clinic_api:order": {"pk": "order"},
}
# Regex patterns cannot be filled generically: each is listed with what is requested instead.
REGEX_FILLS = {
    "admin:app_list": ["admin/clinics/", "admin/fulfillment/", "admin/carts/"],
    # Admin's final catch-all matches any path under admin/ and has no id of its own: it cannot be
    # "filled" with clinic A's ids, so one made-up path stands for it.
    "admin:(?P<url>.*)$": ["admin/no-such-page/42/"],
    # One past version of a configuration object (django-simple-history): object id, history id.
    **{f"admin:{name}_simple_history": [f"admin/{name.replace('_', '/', 1)}/1/history/1/"] for name in [
        "clinics_organization", "clinics_membership", "catalog_partner", "catalog_product", "catalog_offering",
        "routing_routingrule"]},
}
# Admin URLs (namespace "admin") are classified by rule: they need a staff login, which bob lacks.


def _key(namespace, pattern):
    name = pattern.name or str(pattern.pattern)
    return f"{namespace}:{name}" if namespace else name


def all_patterns(resolver=None, prefix="", namespace=""):
    """(key, route prefix, pattern) for every URLPattern, recursively (admin and APIs included)."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            ns = ":".join(x for x in [namespace, pattern.namespace] if x)
            yield from all_patterns(pattern, prefix + str(pattern.pattern), ns)
        else:
            yield _key(namespace, pattern), prefix, pattern


@pytest.fixture
def world(clinic_a, alice, bob, clinic_b):
    """Clinic A with everything a clinic has: a cart line, patients, prescriber, an order sent to
    a partner with a line history, payment and webhook records, audit rows."""
    org = clinic_a.organization
    clinic_a.stripe_customer_id, clinic_a.payment_method_id, clinic_a.card_last4 = "cus_sandbox_a", "pm_sandbox_visa", "4242"
    clinic_a.save()
    partner = PartnerFactory(name="Cedar", states=["TX"])
    product = ProductFactory(name="Semaglutide", requires_clinical_difference=False)
    OfferingFactory(partner=partner, product=product)
    prescriber = PrescriberFactory(organization=org)
    PrescriberLicenseFactory(prescriber=prescriber)
    patient = PatientFactory(organization=org, first_name="Zephyrine", last_name="Quackenbush", chart_id="A-CHART-777")
    PrescriptionFactory(clinic=clinic_a, patient=patient, product=product, prescriber=prescriber, quantity=3,
                        sig="A's secret directions", document=ContentFile(b"%PDF-1.4 A's signed Rx", name="a.pdf"),
                        source="document", document_content_type="application/pdf")
    cart_line = cart_add_lines(clinic=clinic_a, actor=alice, items=[LineInput(
        patient=patient, product=product, prescriber=prescriber, quantity=3, sig="A's secret directions")]).created[0]
    order = order_with_lines(clinic=clinic_a, partners=[partner], lines_per_partner=1, placed_by=alice)
    order_line = order.lines.get()
    Patient.objects.filter(pk=order_line.patient_id).update(
        first_name="Oswin", last_name="Fitzgerald-Vantongeren", chart_id="A-CHART-888")
    OrderLine.objects.filter(pk=order_line.pk).update(status=OrderLine.Status.SENT)
    line_apply_status(line=order_line, to="accepted", source="webhook")
    PaymentEvent.objects.create(order=order, clinic=clinic_a, kind="authorized", amount=order.total, gateway="sandbox")
    WebhookEvent.objects.create(partner=partner, partner_slug=partner.slug, event_id="evt-a", outcome="applied")
    item = AttentionItem.objects.create(clinic=clinic_a, line=order_line, kind=AttentionItem.Kind.ON_HOLD,
                                        reason_code="clinical_question", message="A's pharmacist asks")
    # Clinic B has a cart of its own, so bob's pages have something to render.
    cart_add_lines(clinic=clinic_b, actor=bob, items=[LineInput(
        patient=PatientFactory(organization=clinic_b.organization), product=product, prescriber=None, quantity=1)])
    api_key = ApiKey.objects.create(clinic=clinic_a, name="A's EHR", prefix="aaaaaaaa", hashed="a" * 64,
                                    scopes=["cart:write"])
    rx = PrescriptionFactory(clinic=clinic_a, patient=patient, prescriber=prescriber, product=product)
    webhook = WebhookSubscription.objects.create(clinic=clinic_a, url="https://a.example/hook", events=["order.settled"],
                                                 secret="whsec_" + "A" * 43 + "=")
    delivery = WebhookDelivery.objects.create(subscription=webhook, clinic=clinic_a, event_type="order.settled",
                                              message_id="msg_a", source="order_settled:1", status="delivered")
    ids = {
        "api_key": api_key.pk, "webhook": webhook.pk, "prescription": rx.pk, "webhook_delivery": delivery.pk,
        "cart_line": cart_line.pk, "patient": patient.pk, "order": order.pk, "order_line": order_line.pk,
        "partner_slug": partner.slug, "partner_reference": order_line.partner_order.partner_reference or "REF",
        "clinic": clinic_a.pk, "alice": alice.pk, "product": product.pk, "prescriber": prescriber.pk,
        "milestone": "shipped", "channel": "sms", "token": "x.y", "attention_item": item.pk,
    }
    # For admin URLs: one of clinic A's objects of each registered model, where it has one.
    a_objects = {
        Clinic: clinic_a.pk, Patient: patient.pk, Prescriber: prescriber.pk, Order: order.pk,
        OrderLine: order_line.pk, PartnerOrder: order_line.partner_order_id,
        Membership: Membership.objects.filter(clinic=clinic_a).first().pk, type(org): org.pk,
        AuditEntry: AuditEntry.objects.filter(clinic=clinic_a).first().pk,
        PaymentEvent: PaymentEvent.objects.get(clinic=clinic_a).pk, WebhookEvent: WebhookEvent.objects.get().pk,
        type(alice): alice.pk, type(partner): partner.pk, type(product): product.pk,
    }
    secrets = ["Zephyrine", "Quackenbush", "A-CHART-777", "Oswin", "Fitzgerald-Vantongeren", "A-CHART-888",
               "secret directions"]
    return {"ids": ids, "a_objects": a_objects, "secrets": secrets, "clinic": clinic_a, "patient": patient}


def clinic_a_fingerprint(clinic):
    """Every row of clinic A's data a request could change."""
    lines = OrderLine.objects.filter(order__clinic=clinic)
    return {
        "clinic": list(Clinic.objects.filter(pk=clinic.pk).values()),
        "carts": list(Cart.objects.filter(clinic=clinic).order_by("pk").values()),
        "cart_lines": list(CartLine.objects.filter(cart__clinic=clinic).order_by("pk").values()),
        "patients": list(Patient.objects.filter(organization=clinic.organization).order_by("pk").values()),
        "prescribers": list(Prescriber.objects.filter(organization=clinic.organization).order_by("pk").values()),
        "memberships": list(Membership.objects.filter(clinic=clinic).order_by("pk").values()),
        "api_keys": list(ApiKey.objects.filter(clinic=clinic).order_by("pk").values()),
        "webhooks": list(WebhookSubscription.objects.filter(clinic=clinic).order_by("pk").values()),
        "webhook_deliveries": list(WebhookDelivery.objects.filter(clinic=clinic).order_by("pk").values()),
        "orders": list(Order.objects.filter(clinic=clinic).order_by("pk").values()),
        "partner_orders": list(PartnerOrder.objects.filter(order__clinic=clinic).order_by("pk").values()),
        "order_lines": list(lines.order_by("pk").values()),
        "line_events": LineEvent.objects.filter(line__in=lines).count(),
        "attention": list(AttentionItem.objects.filter(clinic=clinic).order_by("pk").values()),
        "payment_events": PaymentEvent.objects.filter(clinic=clinic).count(),
        "audit": AuditEntry.objects.filter(clinic=clinic).count(),
    }


def fill_route(route, values):
    def sub(match):
        name = match.group("name")
        assert name in values, f"no value for <{name}> in {route}"
        return str(values[name])
    return re.sub(r"<(?:(?P<conv>[^>:]+):)?(?P<name>[^>]+)>", sub, route)


def test_bob_cannot_reach_clinic_a_through_any_url(client, bob, world):
    before = clinic_a_fingerprint(world["clinic"])
    requested = sweep(client, bob, world)
    assert requested > 150  # the walk really covered the admin and every app
    assert clinic_a_fingerprint(world["clinic"]) == before


def test_clinic_b_key_cannot_reach_clinic_a_through_the_api(bob, clinic_b, world):
    """Every clinic API pattern, with a key of clinic B (every scope) and clinic A's ids in the
    path and the body, by every method: ids of A are 404, nothing of A is shown or changed."""
    from rest_framework.test import APIClient

    from clinic_api.keys import api_key_create
    from clinic_api.models import Scope

    Membership.objects.filter(user=bob).update(role=Membership.Role.CLINIC_ADMIN)
    token = api_key_create(clinic=clinic_b, name="B's EHR", scopes=list(Scope.values), actor=bob).token
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    ids = world["ids"]
    body = {"lines": [{"patient": ids["patient"], "product": ids["product"], "prescriber": ids["prescriber"],
                       "quantity": 7, "sig": "Bob was here, weekly", "days_supply": 30}]}
    before = clinic_a_fingerprint(world["clinic"])
    problems, requested = [], 0
    for key, prefix, pattern in all_patterns():
        route = str(pattern.pattern)
        if not (key.startswith("clinic_api:") and route.startswith("api/v1/")) or key in PUBLIC:
            continue
        path = "/" + fill_route(prefix + route, {p: ids[w] for p, w in SIGNED_APIS[key].items()})
        for method in ("get", "post", "patch", "delete"):
            response = getattr(api, method)(path, body, format="json")
            requested += 1
            text = response.content.decode(errors="replace")
            if response.status_code >= 500:
                problems.append(f"{method} {path}: {response.status_code}")
            if any(s in text for s in world["secrets"]):
                problems.append(f"{method} {path}: shows clinic A's data")
            if "<" in route and response.status_code not in (404, 405):
                problems.append(f"{method} {path}: {response.status_code} for clinic A's id")
    assert requested >= 30 and problems == []
    assert clinic_a_fingerprint(world["clinic"]) == before


def test_a_url_pattern_nobody_classified_fails_the_sweep(client, bob, world, settings):
    settings.ROOT_URLCONF = "tests.reliability.urls_with_a_new_page"
    with pytest.raises(AssertionError, match="classify these URL patterns") as failure:
        sweep(client, bob, world, dry_run=True)
    assert "carts:new-page" in str(failure.value) and "my-export" in str(failure.value)


def sweep(client, bob, world, *, dry_run=False):
    """Request every URL pattern as bob; fail on an unclassified pattern or any leak. Returns
    the number of requests made (none with ``dry_run``: only the classification is checked)."""
    ids, a_objects, secrets = world["ids"], world["a_objects"], world["secrets"]
    form = {  # the usual form and query fields, all pointing at clinic A
        "patient": ids["patient"], "choose_patient": ids["patient"], "product": ids["product"],
        "prescriber": ids["prescriber"], "clinic": ids["clinic"], "line": ids["cart_line"], "pk": ids["cart_line"],
        "order": ids["order"], "quantity": 7, "sig": "Bob was here", "refills": 0, "days_supply": 30,
        "code": "duplicate_therapy", "item": f"{ids['patient']}:{ids['product']}", "q": "Zeph",  # a search for A's patient would show her full name
        "setup_intent_id": "seti_sandbox.cus_sandbox_a.0000000000:pm_sandbox_declined", "city": "Hacked",
        "date_of_birth": "1990-01-01", "version": 2, "next": f"/orders/{ids['order']}",
    }
    unclassified, problems, requested = [], [], 0

    for key, prefix, pattern in all_patterns():
        route = str(pattern.pattern)
        is_regex = not hasattr(pattern.pattern, "_route")
        if key.startswith("admin:"):
            kind = "admin"
            if is_regex:
                if key not in REGEX_FILLS:
                    unclassified.append(key)
                    continue
                paths = ["/" + p for p in REGEX_FILLS[key]]
            else:
                model_admin = getattr(pattern.callback, "model_admin", None)
                values = {"object_id": ids["clinic"], "id": ids["alice"],
                          "content_type_id": ContentType.objects.get_for_model(Patient).pk}
                if model_admin is not None:
                    values["object_id"] = a_objects.get(model_admin.model, 1)
                if "object_id" in route and model_admin is None and "content_type_id" in route:
                    values["object_id"] = ids["patient"]
                paths = ["/" + fill_route(prefix + route, values)]
        elif key in ID_BEARING:
            kind = "id"
            paths = ["/" + fill_route(prefix + route, {p: ids[w] for p, w in ID_BEARING[key].items()})]
        elif key in SIGNED_APIS:
            kind = "api"
            paths = ["/" + fill_route(prefix + route, {p: ids[w] for p, w in SIGNED_APIS[key].items()})]
        elif key in OWN_CLINIC or key in PUBLIC:
            if "<" in route or is_regex:
                unclassified.append(f"{key} (now takes a path parameter: classify it in ID_BEARING)")
                continue
            kind = "own" if key in OWN_CLINIC else "public"
            paths = ["/" + prefix + route]
        else:
            unclassified.append(key)
            continue

        for path in [] if dry_run else paths:
            for method in ("get", "post"):
                client.force_login(bob)  # a logout URL may have ended the session
                if kind == "api":
                    response = getattr(client, method)(
                        path, data=f'{{"event_id": "x", "line_id": {ids["order_line"]}, "status": "delivered"}}',
                        content_type="application/json") if method == "post" else client.get(path)
                else:
                    response = getattr(client, method)(path, form)
                requested += 1
                status, body = response.status_code, response.content.decode(errors="replace")
                where = f"{method.upper()} {path} ({key})"
                location = response.get("Location", "")
                if status >= 500:
                    problems.append(f"{where}: {status}")
                if status == 200 and any(s in body for s in secrets):
                    problems.append(f"{where}: 200 shows clinic A's data: "
                                    f"{[s for s in secrets if s in body]}")
                if any(s in location.split("?")[0] for s in secrets):
                    problems.append(f"{where}: redirect leaks {location}")
                to_login = status == 302 and (location.startswith("/login/") or location.startswith("/admin/login/"))
                if kind == "id" and not (status in (403, 404, 405) or to_login):
                    problems.append(f"{where}: {status} {location}")
                if kind == "admin" and not (to_login or status == 405
                                            or (key == "admin:login" and status == 200)  # "not authorized" page
                                            or (key == "admin:logout" and location == "/admin/")):
                    problems.append(f"{where}: {status} {location} (bob is not staff)")
                if kind == "api" and status not in (400, 401, 403, 404, 405):
                    problems.append(f"{where}: {status} (no signature or API key was sent)")
                if kind == "own" and status not in (200, 302, 400, 403, 404, 405):
                    problems.append(f"{where}: {status}")
                if kind == "own" and status == 302 and location == f"/orders/{ids['order']}":
                    problems.append(f"{where}: redirects bob into clinic A's order")

    assert unclassified == [], "classify these URL patterns in tests/reliability/test_tenancy_sweep.py"
    assert problems == []
    return requested
