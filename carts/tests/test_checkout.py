from decimal import Decimal

import pytest
from django.urls import reverse

from carts.checkout import CheckoutBlocked, CheckoutError, PaymentDeclined, cart_checkout
from carts.models import Cart, CartLine
from clinics.models import AuditEntry
from fulfillment.models import Order, PaymentEvent, PartnerOrder
from carts.tests.checkout_form import place_order_data

pytestmark = pytest.mark.django_db


def cart_state(cart):
    cart.refresh_from_db()
    return cart.status, cart.version, sorted(CartLine.objects.filter(cart=cart).values_list(
        "patient_id", "product_id", "quantity", "sig"))


def test_checkout_places_one_order_with_a_partner_order_per_pharmacy(
    clinic_a, alice, ready_cart, partner_api, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as dispatched:
        order = cart_checkout(clinic=clinic_a, actor=alice, expected_version=ready_cart["cart"].version)
    assert len(dispatched) == 2  # one dispatch task per partner order, queued after commit

    # Landed costs: Cedar ships Ann's and Bo's semaglutide separately (one package per patient).
    lines = {(l.patient.first_name, l.product.name): l for l in order.lines.all()}
    assert lines[("Ann", "Semaglutide")].landed_cost == Decimal("320.00")  # 2 × 150 + 20
    assert lines[("Bo", "Semaglutide")].landed_cost == Decimal("170.00")
    assert lines[("Ann", "Naltrexone")].landed_cost == Decimal("25.00")  # 30 × 0.50 + 10
    assert order.total == Decimal("515.00") == order.amount_authorized
    assert {po.partner.name: po.lines.count() for po in order.partner_orders.all()} == {"Cedar": 2, "Harbor": 1}
    assert {po.partner.name: po.subtotal for po in order.partner_orders.all()} == {
        "Cedar": Decimal("490.00"), "Harbor": Decimal("25.00")}

    # Snapshots: what was ordered, for whom, where it ships.
    ann_line = lines[("Ann", "Semaglutide")]
    assert ann_line.patient_snapshot["name"] == "Ann Lee"
    assert ann_line.patient_snapshot["address"]["state"] == "TX"
    assert ann_line.sig == "Inject 0.25 mg subcutaneously once weekly"
    assert ann_line.prescriber_snapshot["license"]["state"] == "TX"
    assert ann_line.partner_sku.startswith("PSKU-")
    assert order.ship_to["npi"] == clinic_a.npi

    # The cart is closed and a fresh empty one is open for the clinic.
    old = Cart.objects.get(pk=ready_cart["cart"].pk)
    assert old.status == Cart.Status.SUBMITTED
    assert Cart.objects.get(clinic=clinic_a, status=Cart.Status.OPEN).lines.count() == 0

    # One authorization, audited per line; each partner got its order (tasks run inline in tests).
    assert list(PaymentEvent.objects.values_list("kind", "amount")) == [("authorized", Decimal("515.00"))]
    assert AuditEntry.objects.filter(action="order.place").count() == 3
    posted = [c.request for c in partner_api.calls]
    assert len(posted) == 2 and all(r.headers["Idempotency-Key"] for r in posted)
    assert set(PartnerOrder.objects.values_list("status", flat=True)) == {"sent"}


def test_declined_card_leaves_the_cart_exactly_as_it_was(clinic_a, alice, ready_cart):
    clinic_a.payment_method_id = "pm_sandbox_declined"
    clinic_a.save()
    before = cart_state(ready_cart["cart"])
    with pytest.raises(PaymentDeclined) as exc:
        cart_checkout(clinic=clinic_a, actor=alice, expected_version=ready_cart["cart"].version)
    assert "0002" in str(exc.value) and "declined" in str(exc.value) and "Nothing was charged" in str(exc.value)
    assert cart_state(ready_cart["cart"]) == before
    assert not Order.objects.exists()
    assert list(PaymentEvent.objects.values_list("kind", flat=True)) == ["failed"]


def test_failed_authentication_is_explained_and_changes_nothing(clinic_a, alice, ready_cart):
    clinic_a.payment_method_id = "pm_sandbox_auth_required"
    clinic_a.save()
    before = cart_state(ready_cart["cart"])
    with pytest.raises(PaymentDeclined) as exc:
        cart_checkout(clinic=clinic_a, actor=alice)
    assert "3155" in str(exc.value)
    assert cart_state(ready_cart["cart"]) == before and not Order.objects.exists()


def test_a_cart_with_errors_is_not_authorized(clinic_a, alice, ready_cart):
    CartLine.objects.filter(patient=ready_cart["bo"]).update(sig="")
    with pytest.raises(CheckoutBlocked) as exc:
        cart_checkout(clinic=clinic_a, actor=alice)
    assert any(p.code == "sig_missing" for p in exc.value.problems)
    assert ready_cart["cart"].__class__.objects.get(pk=ready_cart["cart"].pk).status == Cart.Status.OPEN
    assert not PaymentEvent.objects.exists()


def test_a_cart_changed_since_review_is_not_ordered(clinic_a, alice, ready_cart):
    with pytest.raises(CheckoutError, match="changed since you reviewed it"):
        cart_checkout(clinic=clinic_a, actor=alice, expected_version=ready_cart["cart"].version - 1)
    assert not PaymentEvent.objects.exists() and not Order.objects.exists()


def test_no_saved_card_says_who_can_add_one(clinic_a, alice, ready_cart):
    clinic_a.payment_method_id = ""
    clinic_a.save()
    with pytest.raises(CheckoutError, match="clinic admin can add one on the Billing page"):
        cart_checkout(clinic=clinic_a, actor=alice)


def test_a_failure_after_authorization_cancels_it_and_reopens_the_cart(clinic_a, alice, ready_cart, monkeypatch):
    from fizy.lib import payments

    cancelled = []
    real_cancel = payments.SandboxGateway.cancel
    monkeypatch.setattr(payments.SandboxGateway, "cancel",
                        lambda self, **kw: cancelled.append(kw["reference"]) or real_cancel(self, **kw))

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("carts.checkout._create_order", broken)
    before = cart_state(ready_cart["cart"])
    with pytest.raises(RuntimeError):
        cart_checkout(clinic=clinic_a, actor=alice)
    assert len(cancelled) == 1
    assert cart_state(ready_cart["cart"]) == before and not Order.objects.exists()
    # The approval was written down before the order (so a crash could not lose it), then released.
    assert list(PaymentEvent.objects.order_by("pk").values_list("kind", "reference", "order")) == [
        ("authorized", cancelled[0], None), ("cancelled", cancelled[0], None)]
    assert PaymentEvent.objects.get(kind="authorized").payload["released"] is True


def test_second_submit_after_success_orders_nothing_more(clinic_a, alice, ready_cart):
    cart_checkout(clinic=clinic_a, actor=alice, expected_version=ready_cart["cart"].version)
    with pytest.raises(CheckoutError, match="nothing to order"):
        cart_checkout(clinic=clinic_a, actor=alice, expected_version=ready_cart["cart"].version)
    assert Order.objects.count() == 1 and PaymentEvent.objects.filter(kind="authorized").count() == 1


# --- the page ----------------------------------------------------------------------------------

def test_checkout_page_shows_lines_by_partner_total_and_card(client_alice, ready_cart):
    page = client_alice.get(reverse("carts:checkout")).content.decode()
    assert "Cedar" in page and "Harbor" in page
    assert "$515.00" in page and "Visa ending 4242" in page
    assert 'id="place-order"' in page and f'name="version" value="{ready_cart["cart"].version}"' in page


def test_review_groups_by_patient_with_subtotals_then_by_pharmacy_and_keeps_place_order_in_view(client_alice, ready_cart):
    page = client_alice.get(reverse("carts:checkout")).content.decode()
    ann, bo = ready_cart["ann"], ready_cart["bo"]
    ann_group = page.split(f'id="review-patient-{ann.pk}"')[1].split("</tbody>")[0]
    bo_group = page.split(f'id="review-patient-{bo.pk}"')[1].split("</tbody>")[0]
    assert "Lee, Ann" in ann_group and ann_group.count('<tr class="line">') == 2
    assert '<strong>$345.00</strong>' in ann_group  # 2 × $150 + $20 ship, 30 × $0.50 + $10 ship
    assert '<strong>$170.00</strong>' in bo_group
    by_pharmacy = page.split('id="review-by-pharmacy"')[1]
    assert page.index('id="review-by-patient"') < page.index('id="review-by-pharmacy"')
    assert "Cedar" in by_pharmacy and "$490.00" in by_pharmacy and "$25.00" in by_pharmacy
    bar = page.split('id="place-order-bar"')[1]
    assert 'class="card place-order sticky-bar"' in page and "Place order · $515.00" in bar
    assert "onsubmit" not in page


def test_placing_the_order_goes_to_its_status_page(client_alice, ready_cart):
    response = client_alice.post(reverse("carts:checkout"), place_order_data(client_alice))
    order = Order.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("fulfillment:order", args=[order.pk])


def test_a_decline_is_shown_on_the_checkout_page(client_alice, clinic_a, ready_cart):
    clinic_a.payment_method_id = "pm_sandbox_declined"
    clinic_a.save()
    page = client_alice.post(reverse("carts:checkout"), place_order_data(client_alice)).content.decode()
    assert 'id="checkout-error"' in page and "0002" in page and "the cart is unchanged" in page
    assert 'id="place-order"' in page  # they can try again once the card is fixed


def test_checkout_is_refused_while_errors_remain(client_alice, ready_cart):
    CartLine.objects.filter(patient=ready_cart["bo"]).update(sig="")
    page = client_alice.get(reverse("carts:checkout")).content.decode()
    assert 'id="place-order"' not in page and "Fix the problems" in page
    cart_page = client_alice.get(reverse("carts:cart")).content.decode()
    assert 'id="checkout-link" disabled' in cart_page
