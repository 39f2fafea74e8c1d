"""Re-order from Needs attention: one click puts a rejected line back into the cart, flagged."""

import pytest

from carts.models import Cart, CartLine
from carts.validation import ERROR, WARNING, validate_cart
from catalog.tests.factories import PartnerFactory
from clinics.models import AuditEntry
from fulfillment.models import AttentionItem, OrderLine
from fulfillment.status import line_apply_status
from fulfillment.tests.factories import order_with_lines

pytestmark = pytest.mark.django_db
S = OrderLine.Status


def _rejected(clinic, code, reason="The pharmacy says no."):
    order = order_with_lines(clinic=clinic, partners=[PartnerFactory(name="Harbor")], lines_per_partner=1)
    line = order.lines.get()
    OrderLine.objects.filter(pk=line.pk).update(status=S.SENT)
    line.refresh_from_db()
    line_apply_status(line=line, to=S.REJECTED, source="webhook", reason=reason, reason_code=code)
    return line


def test_sig_unclear_one_click_back_in_the_cart_with_the_sig_flagged(client_alice, alice, clinic_a):
    line = _rejected(clinic_a, "sig_unclear", "Directions say 'as directed'.")
    response = client_alice.post(f"/cart/reorder/{line.pk}")
    assert response.status_code == 302 and response.url == "/cart/"
    cart_line = CartLine.objects.get(cart__clinic=clinic_a, cart__status=Cart.Status.OPEN)
    assert (cart_line.patient_id, cart_line.product_id, cart_line.quantity, cart_line.sig) == (
        line.patient_id, line.product_id, line.quantity, line.sig)
    problems = [p for p in validate_cart(cart_line.cart) if p.code == "pharmacy_sig_unclear"]
    assert [(p.field, p.severity) for p in problems] == [("sig", ERROR)]
    assert "Harbor rejected this line" in problems[0].message and "as directed" in problems[0].message
    page = client_alice.get("/cart/").content.decode()
    assert "the pharmacy found the directions unclear" in page
    item = AttentionItem.objects.get(line=line)
    assert item.resolution == AttentionItem.Resolution.REORDERED and item.resolved_by == alice
    assert item.cart_line_id == cart_line.pk
    assert AuditEntry.objects.filter(action="cart.reorder", object_id=str(cart_line.pk)).exists()
    assert AuditEntry.objects.filter(action="attention.resolve", object_id=str(line.pk)).exists()
    # Changing the directions clears the flag; a second click does not add the line again.
    CartLine.objects.filter(pk=cart_line.pk).update(sig="Inject 0.5 mg subcutaneously once weekly on Mondays.")
    assert not [p for p in validate_cart(cart_line.cart) if p.code.startswith("pharmacy_")]
    response = client_alice.post(f"/cart/reorder/{line.pk}", follow=True)
    assert "already re-ordered" in response.content.decode()
    assert CartLine.objects.get(pk=cart_line.pk).quantity == line.quantity


@pytest.mark.parametrize("code, field, severity", [
    ("license_unverified", "prescriber", ERROR),
    ("dob_mismatch", "patient", WARNING),
    ("prescription_needed", "prescriber", WARNING),
])
def test_each_reason_flags_the_field_it_implies(client_alice, clinic_a, code, field, severity):
    line = _rejected(clinic_a, code)
    client_alice.post(f"/cart/reorder/{line.pk}")
    cart = Cart.objects.get(clinic=clinic_a, status=Cart.Status.OPEN)
    flagged = [(p.field, p.severity) for p in validate_cart(cart) if p.code == f"pharmacy_{code}"]
    assert flagged == [(field, severity)]


def test_another_clinic_gets_404(client_bob, clinic_a):
    line = _rejected(clinic_a, "sig_unclear")
    assert client_bob.post(f"/cart/reorder/{line.pk}").status_code == 404
    assert not CartLine.objects.exists() and AttentionItem.objects.get(line=line).is_open


def test_a_line_that_moved_on_is_refused(client_alice, clinic_a):
    order = order_with_lines(clinic=clinic_a, lines_per_partner=1)
    shipped = order.lines.get()
    OrderLine.objects.filter(pk=shipped.pk).update(status=S.SHIPPED)
    response = client_alice.post(f"/cart/reorder/{shipped.pk}", follow=True)
    assert "only a rejected or unsent line" in response.content.decode()
    assert not CartLine.objects.exists()


def test_a_failed_line_re_ordered_is_not_sent_again_by_a_staff_retry(client_alice, clinic_a, charlie):
    from fulfillment.dispatch import partner_order_retry_dispatch
    from fulfillment.models import PartnerOrder

    order = order_with_lines(clinic=clinic_a, lines_per_partner=2)
    reordered, other = order.lines.order_by("pk")
    for line in (reordered, other):
        line_apply_status(line=line, to=S.FAILED, source="system", reason="Harbor refused the order (404).")
    PartnerOrder.objects.filter(order=order).update(status=PartnerOrder.Status.FAILED)
    client_alice.post(f"/cart/reorder/{reordered.pk}")
    assert AttentionItem.objects.get(line=reordered).resolution == AttentionItem.Resolution.REORDERED

    partner_order_retry_dispatch(partner_order=order.partner_orders.get(), actor=charlie)

    reordered.refresh_from_db()
    other.refresh_from_db()
    assert (reordered.status, other.status) == (S.FAILED, S.PENDING)
