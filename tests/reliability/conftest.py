"""Shared pieces of the reliability suite: a clinic cart ready to order, and fake partner APIs
that can go down and come back (``responses``: nothing leaves the machine). Threads that start
together: ``fizy.tests.concurrency.run_threads``."""

import datetime
import re
import threading
from decimal import Decimal

import pytest
import requests
import responses as responses_lib

from carts.models import CartLine
from carts.services import LineInput, cart_add_lines
from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory
from clinics.tests.factories import PatientFactory, PrescriberFactory, PrescriberLicenseFactory
from prescriptions.tests.factories import prescriptions_on_file


class FakePartners:
    """Every partner's order API under http://partner.test/<slug>/orders. A partner is up
    (201 with a reference) unless marked down: then it refuses connections or answers 503.
    Every request is recorded with its partner, Idempotency-Key, line ids and answer."""

    def __init__(self, mock):
        self.mock = mock
        self.down: dict[str, str] = {}  # slug -> "connection" | "503"
        self.calls: list[dict] = []
        self._lock = threading.Lock()
        mock.add_callback(responses_lib.POST, re.compile(r"http://partner\.test/[^/]+/orders"), callback=self._answer)
        mock.add_passthru("http://127.0.0.1:")  # the local fake Stripe server, when a test starts one

    def _answer(self, request):
        import json

        slug = request.url.split("/")[3]
        body = json.loads(request.body)
        how = self.down.get(slug)
        with self._lock:
            self.calls.append({"slug": slug, "key": request.headers["Idempotency-Key"], "ok": how is None,
                               "line_ids": [line["line_id"] for line in body["lines"]]})
        if how == "connection":
            raise requests.ConnectionError(f"{slug} refused the connection")
        if how == "503":
            return 503, {"Content-Type": "application/json"}, json.dumps({"error": "maintenance"})
        return 201, {"Content-Type": "application/json"}, json.dumps({"reference": f"{slug.upper()}-REF"})

    def for_partner(self, partner, *, ok=None):
        return [c for c in self.calls if c["slug"] == partner.slug and (ok is None or c["ok"] == ok)]


@pytest.fixture
def partners():
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakePartners(mock)


def with_saved_card(clinic, payment_method_id="pm_sandbox_visa"):
    clinic.stripe_customer_id = "cus_sandbox_reliability"
    clinic.payment_method_id = payment_method_id
    clinic.card_brand, clinic.card_last4, clinic.card_exp = "visa", {
        "pm_sandbox_visa": "4242", "pm_sandbox_declined": "0002", "pm_sandbox_auth_required": "3155"}[payment_method_id], "12/2034"
    clinic.save()
    return clinic


def build_cart(clinic, actor, *, patients_per_partner=3):
    """The clinic's cart with valid lines routed to two partners (Cedar carries semaglutide,
    Harbor naltrexone), every patient with one line at each partner; the clinic has a card."""
    with_saved_card(clinic)
    org = clinic.organization
    cedar = PartnerFactory(name="Cedar", states=["TX"])
    harbor = PartnerFactory(name="Harbor", states=["TX"])
    sema = ProductFactory(name="Semaglutide", max_quantity_per_line=40, requires_clinical_difference=False)
    ldn = ProductFactory(name="Naltrexone", max_quantity_per_line=90, dosage_form="capsule",
                         requires_clinical_difference=False)
    OfferingFactory(partner=cedar, product=sema, unit_price=Decimal("150.00"), shipping_fee=Decimal("20.00"))
    OfferingFactory(partner=harbor, product=ldn, unit_price=Decimal("0.50"), shipping_fee=Decimal("10.00"))
    prescriber = PrescriberFactory(organization=org)
    PrescriberLicenseFactory(prescriber=prescriber, state="TX",
                             expires_on=datetime.date.today() + datetime.timedelta(days=400))
    patients = [PatientFactory(organization=org, state="TX", last_name=f"Reliable{i}") for i in range(patients_per_partner)]
    items = []
    for i, patient in enumerate(patients):
        items.append(LineInput(patient=patient, product=sema, prescriber=prescriber, quantity=1 + i, days_supply=28,
                               sig=f"Inject {i + 1} units subcutaneously once weekly"))
        items.append(LineInput(patient=patient, product=ldn, prescriber=prescriber, quantity=30, days_supply=30,
                               sig="Take 1 capsule by mouth nightly"))
    prescriptions_on_file(clinic, items)
    cart = cart_add_lines(clinic=clinic, actor=actor, items=items).created[0].cart
    cart.refresh_from_db()
    return {"cart": cart, "cedar": cedar, "harbor": harbor, "sema": sema, "ldn": ldn, "prescriber": prescriber,
            "patients": patients}


@pytest.fixture
def world_a(clinic_a, alice):
    return build_cart(clinic_a, alice)


def cart_state(cart):
    """What a coordinator sees of a cart: status, version and every line's patient, product,
    quantity, SIG and prescriber."""
    cart.refresh_from_db()
    return cart.status, cart.version, sorted(CartLine.objects.filter(cart=cart).values_list(
        "patient_id", "product_id", "quantity", "sig", "prescriber_id"))


from fizy.tests.fake_stripe import fake_stripe  # noqa: E402,F401  (fixture: a local fake Stripe server)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Every reliability scenario that touched the database ends with the money invariant
    (``check_money``) holding over every order it made."""
    result = yield
    uses_db = item.get_closest_marker("django_db") or {"db", "transactional_db"} & set(item.fixturenames)
    if uses_db:
        from fulfillment.ledger import money_violations

        violations = money_violations()
        assert not violations, "check_money: " + "; ".join(map(str, violations))
    return result
