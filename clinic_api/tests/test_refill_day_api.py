"""Refill day through the API: the clinic's EHR creates 40 patients, records their e-prescriptions and pushes their 40 lines
(one request retried), validates the cart and marks it ready; a coordinator places the order in
the browser's place-order form; the EHR's webhook receiver gets every line's status changes,
signed and verifiable with the standardwebhooks library, and reads the order back."""

import datetime
import re
from decimal import Decimal

import pytest
import responses as responses_lib
from django.urls import reverse
from standardwebhooks import Webhook

from carts.models import CartLine
from carts.tests.checkout_form import place_order_data
from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory
from clinic_api.webhooks import webhooks_scan
from clinics.tests.factories import PrescriberFactory, PrescriberLicenseFactory
from fulfillment.models import LineEvent, Order
from fulfillment.status import line_apply_status

from .fake_receiver import FakeReceiver

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]
N = 40


@pytest.fixture
def pharmacy(clinic_a):
    clinic_a.stripe_customer_id, clinic_a.payment_method_id = "cus_sandbox_test", "pm_sandbox_visa"
    clinic_a.card_brand, clinic_a.card_last4, clinic_a.card_exp = "visa", "4242", "12/2034"
    clinic_a.save()
    cedar = PartnerFactory(name="Cedar", states=["TX"])
    sema = ProductFactory(name="Semaglutide", sku="SEMA-5", max_quantity_per_line=4, requires_clinical_difference=False)
    OfferingFactory(partner=cedar, product=sema, unit_price=Decimal("150.00"), shipping_fee=Decimal("20.00"),
                    stock_quantity=10_000)
    prescriber = PrescriberFactory(organization=clinic_a.organization)
    PrescriberLicenseFactory(prescriber=prescriber, state="TX",
                             expires_on=datetime.date.today() + datetime.timedelta(days=400))
    return {"prescriber": prescriber, "product": sema}


def patient_body(i: int) -> dict:
    return {"chart_id": f"EHR-{i:03d}", "first_name": f"Pat{i}", "last_name": f"Ient{i}", "date_of_birth": "1980-01-31",
            "phone": "+15125550100", "email": f"p{i}@example.com", "address_line1": f"{i} Congress Ave",
            "city": "Austin", "state": "TX", "zip_code": "78701"}


def line_body(i: int, npi: str) -> dict:
    return {"chart_id": f"EHR-{i:03d}", "product_sku": "SEMA-5", "prescriber_npi": npi, "quantity": 1 + i % 2,
            "sig": "Inject 0.25 mg subcutaneously once weekly", "days_supply": 28}


def test_a_40_line_refill_day_through_the_api(api, client_alice, settings, clinic_a, pharmacy, mailoutbox,
                                              django_capture_on_commit_callbacks):
    settings.CLINIC_WEBHOOK_ALLOW_HTTP = True
    npi = pharmacy["prescriber"].npi
    with FakeReceiver() as receiver:
        secret = api.post("/api/v1/webhooks", {"url": receiver.url, "events": ["line.status_changed"]},
                          format="json").json()["secret"]

        # 1. The EHR creates the day's patients.
        for i in range(N):
            assert api.post("/api/v1/patients", patient_body(i), format="json").status_code == 201
        # ... and records each one's e-prescription (up to 2 vials a fill, 3 refills).
        written = (datetime.date.today() - datetime.timedelta(days=3)).isoformat()
        for i in range(N):
            answer = api.post("/api/v1/prescriptions", {
                "chart_id": f"EHR-{i:03d}", "product_sku": "SEMA-5", "prescriber_npi": npi, "source": "erx",
                "erx_message_id": f"SS-{i:05d}", "sig": "Inject 0.25 mg subcutaneously once weekly", "quantity": 2,
                "days_supply": 28, "refills_authorized": 3, "written_on": written}, format="json")
            assert answer.status_code == 201, answer.json()

        # 2. It pushes the lines in two requests; the second is retried (its answer was lost).
        first = api.post("/api/v1/cart/lines", {"lines": [line_body(i, npi) for i in range(20)]}, format="json",
                         HTTP_IDEMPOTENCY_KEY="2026-11-27-a")
        second_body = {"lines": [line_body(i, npi) for i in range(20, N)]}
        second = api.post("/api/v1/cart/lines", second_body, format="json", HTTP_IDEMPOTENCY_KEY="2026-11-27-b")
        retried = api.post("/api/v1/cart/lines", second_body, format="json", HTTP_IDEMPOTENCY_KEY="2026-11-27-b")
        assert first.status_code == second.status_code == retried.status_code == 201
        assert retried.json() == second.json() and len(retried.json()["created"]) == 20
        assert CartLine.objects.filter(cart__clinic=clinic_a).count() == N
        assert sum(CartLine.objects.filter(cart__clinic=clinic_a).values_list("quantity", flat=True)) == 60

        # 3. Validate, then ask a coordinator to review.
        validation = api.post("/api/v1/cart/validate").json()
        assert validation["problems"] == [] and validation["cart"]["can_checkout"] and validation["cart"]["lines"] == N
        with django_capture_on_commit_callbacks(execute=True):
            assert api.post("/api/v1/cart/ready", {}, format="json").status_code == 202
        assert "ready for review (40 lines)" in mailoutbox[0].subject

        # 4. The coordinator places it with the review page's form (the partner's API is faked).
        with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as partner:
            partner.add(responses_lib.POST, re.compile(r"http://partner\.test/.*"), json={"reference": "PX-1"}, status=201)
            with django_capture_on_commit_callbacks(execute=True):
                response = client_alice.post(reverse("carts:checkout"), place_order_data(client_alice))
        assert response.status_code == 302
        order = Order.objects.get(clinic=clinic_a)
        assert order.lines.count() == N

        # 5. The pharmacy moves every line along (as its webhooks do); the minute's scan tells the EHR.
        for line in order.lines.all():
            for to in ("accepted", "compounding", "shipped", "delivered"):
                line_apply_status(line=line, to=to, source="webhook", tracking_number="1Z999" if to == "shipped" else "")
        with django_capture_on_commit_callbacks(execute=True):
            webhooks_scan()

    hook = Webhook(secret)
    got: dict[int, list[str]] = {}
    for request in receiver.received:
        payload = hook.verify(request["body"], request["headers"])  # each one signed
        got.setdefault(payload["data"]["line"], []).append(payload["data"]["status"])
        assert "Pat" not in request["body"] and "Inject" not in request["body"]
    expected = {}
    for event in LineEvent.objects.filter(line__order=order, applied=True).order_by("at", "id"):
        if event.from_status != event.to_status:
            expected.setdefault(event.line_id, []).append(event.to_status)
    assert got == expected and len(got) == N
    assert all(statuses[-4:] == ["accepted", "compounding", "shipped", "delivered"] for statuses in got.values())

    # 6. The EHR reads the order: every line delivered, with tracking and money.
    read = api.get(f"/api/v1/orders/{order.pk}").json()
    assert read["statuses"] == {"delivered": N} and len(read["order_lines"]) == N
    assert {l["tracking_number"] for l in read["order_lines"]} == {"1Z999"}
    assert Decimal(read["total"]) == order.total and "money" in read
    assert [o["id"] for o in api.get("/api/v1/orders").json()] == [order.pk]
    # Each prescription gave one fill to the order.
    rx = api.get(f"/api/v1/prescriptions/{order.lines.first().prescription_id}").json()
    assert rx["fills_remaining"] == 3
