"""Payment services on orders, through the sandbox gateway (the Stripe path has its own tests)."""

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from carts.checkout import authorization_metadata
from carts.models import Cart
from catalog.tests.factories import PartnerFactory, ProductFactory
from clinics.models import AuditEntry
from clinics.payment_messages import decline_message
from clinics.tests.factories import PatientFactory
from fizy.lib.payments import CANCELED, REQUIRES_CAPTURE, SUCCEEDED, PaymentError, SandboxGateway
from fulfillment import settlement, stripe_webhooks
from fulfillment.models import Order, OrderLine, PartnerOrder, PaymentEvent
from fulfillment.settlement import (
    PaymentServiceError,
    order_line_refund,
    order_record_authorization,
    order_settle_payment,
    payment_record_failure,
)
from fulfillment.stripe_webhooks import Reconciled, reconcile_payment_intent

S = OrderLine.Status
PS = Order.PaymentStatus
Kind = PaymentEvent.Kind


class RecordingGateway(SandboxGateway):
    """The sandbox, remembering every call; ``on_capture`` runs in the middle of a capture."""

    def __init__(self):
        self.calls = []
        self.on_capture = None
        self.fail_capture = False

    def capture(self, **kwargs):
        self.calls.append(("capture", kwargs))
        if self.on_capture:
            self.on_capture()
        if self.fail_capture:
            raise PaymentError("Fizy could not reach Stripe to capture the payment.", retryable=True)
        return super().capture(**kwargs)

    def cancel(self, **kwargs):
        self.calls.append(("cancel", kwargs))
        return super().cancel(**kwargs)

    def refund(self, **kwargs):
        self.calls.append(("refund", kwargs))
        return super().refund(**kwargs)

    def kinds(self):
        return [name for name, _ in self.calls]


@pytest.fixture
def gateway(monkeypatch):
    gw = RecordingGateway()
    monkeypatch.setattr(settlement, "get_gateway", lambda: gw)
    monkeypatch.setattr(stripe_webhooks, "get_gateway", lambda: gw)
    return gw


def make_order(clinic, lines, *, authorize=True, fee=None) -> Order:
    """An order of ``lines`` = [(status, landed cost), ...] at one partner, authorized for the total
    (with ``fee`` = each line's share of a platform fee, when given)."""
    fees = [Decimal(f) for f in fee] if fee else [Decimal("0.00")] * len(lines)
    total = sum((Decimal(cost) for _, cost in lines), Decimal("0.00")) + sum(fees, Decimal("0.00"))
    order = Order.objects.create(clinic=clinic, placed_at=timezone.now(), total=total, fee=sum(fees, Decimal("0.00")))
    po = PartnerOrder.objects.create(order=order, partner=PartnerFactory())
    for (status, cost), share in zip(lines, fees, strict=True):
        product = ProductFactory()
        OrderLine.objects.create(
            order=order, partner_order=po, patient=PatientFactory(organization=clinic.organization),
            product=product, product_name=product.name, partner_sku="PSKU-1", quantity=1,
            sig="Inject 0.25 mg weekly.", unit_price=Decimal(cost), landed_cost=Decimal(cost), status=status,
            fee_share=share,
        )
    if authorize:
        authorization = SandboxGateway().authorize(
            amount=total, currency="usd", customer_id="cus_sandbox_x", payment_method_id="pm_sandbox_visa",
            idempotency_key=f"test-order-{order.pk}",
        )
        order_record_authorization(order=order, authorization=authorization, gateway_name="sandbox")
    order.refresh_from_db()
    return order


def set_status(order, index, status):
    line = order.lines.order_by("id")[index]
    OrderLine.objects.filter(pk=line.pk).update(status=status)
    line.refresh_from_db()
    return line


def kinds(order):
    return list(order.payment_events.values_list("kind", flat=True))


def test_authorization_is_recorded_with_an_event_and_an_audit_row(clinic_a):
    order = make_order(clinic_a, [(S.PENDING, "110.00"), (S.PENDING, "55.50")])

    assert order.payment_status == PS.AUTHORIZED
    assert order.payment_gateway == "sandbox"
    assert order.payment_reference.startswith("pi_sandbox_")
    assert order.amount_authorized == Decimal("165.50")
    assert kinds(order) == [Kind.AUTHORIZED]
    assert AuditEntry.objects.filter(action="payment.authorized", clinic=clinic_a, object_id=str(order.pk)).exists()


def test_a_declined_authorization_cannot_pay_for_an_order(clinic_a):
    order = make_order(clinic_a, [(S.PENDING, "10.00")], authorize=False)
    declined = SandboxGateway().authorize(
        amount=Decimal("10.00"), currency="usd", customer_id="c", payment_method_id="pm_sandbox_declined",
        idempotency_key="k",
    )
    with pytest.raises(PaymentServiceError):
        order_record_authorization(order=order, authorization=declined, gateway_name="sandbox")


def test_a_failed_authorization_is_a_row_without_an_order(clinic_a):
    declined = SandboxGateway().authorize(
        amount=Decimal("80.00"), currency="usd", customer_id="c", payment_method_id="pm_sandbox_declined",
        idempotency_key="cart-1-v3",
    )
    event = payment_record_failure(
        clinic=clinic_a, message=decline_message(declined), reference=declined.reference, amount=declined.amount,
        gateway_name="sandbox", decline_code=declined.decline_code,
    )
    assert event.kind == Kind.FAILED and event.order is None
    assert "card ending 0002" in event.message and "insufficient funds" in event.message
    assert AuditEntry.objects.filter(action="payment.failed", clinic=clinic_a).count() == 1


def test_settle_captures_only_the_lines_partners_accepted(clinic_a, gateway):
    order = make_order(clinic_a, [(S.ACCEPTED, "100.00"), (S.REJECTED, "50.00"), (S.SHIPPED, "30.00"), (S.FAILED, "9.99")])

    order = order_settle_payment(order_id=order.pk)

    assert order.payment_status == PS.PARTIALLY_CAPTURED
    assert order.amount_captured == Decimal("130.00")
    assert gateway.calls == [("capture", {
        "reference": order.payment_reference, "amount": Decimal("130.00"),
        "idempotency_key": f"fizy-order-{order.pk}-capture-13000",
    })]
    event = order.payment_events.get(kind=Kind.PARTIALLY_CAPTURED)
    rejected = [line.pk for line in order.lines.exclude(status__in=[S.ACCEPTED, S.SHIPPED])]
    assert event.amount == Decimal("130.00")
    assert not set(rejected) & set(event.payload["line_ids"])
    assert AuditEntry.objects.filter(action="payment.partially_captured", object_id=str(order.pk)).exists()


def test_settle_captures_everything_when_every_line_was_accepted(clinic_a, gateway):
    order = make_order(clinic_a, [(S.ACCEPTED, "100.00"), (S.DELIVERED, "20.00")])

    order = order_settle_payment(order_id=order.pk)

    assert order.payment_status == PS.CAPTURED
    assert order.amount_captured == Decimal("120.00")
    assert kinds(order) == [Kind.AUTHORIZED, Kind.CAPTURED]


def test_an_order_whose_lines_were_all_rejected_has_its_authorization_cancelled(clinic_a, gateway):
    order = make_order(clinic_a, [(S.REJECTED, "100.00"), (S.REJECTED, "20.00"), (S.CANCELLED, "5.00")])

    order = order_settle_payment(order_id=order.pk)

    assert gateway.kinds() == ["cancel"]
    assert order.payment_status == PS.CANCELLED
    assert order.amount_captured == Decimal("0.00")
    assert kinds(order) == [Kind.AUTHORIZED, Kind.CANCELLED]


def test_settling_twice_captures_once(clinic_a, gateway):
    order = make_order(clinic_a, [(S.ACCEPTED, "100.00"), (S.REJECTED, "20.00")])

    order_settle_payment(order_id=order.pk)
    order = order_settle_payment(order_id=order.pk)

    assert gateway.kinds() == ["capture"]
    assert order.amount_captured == Decimal("100.00")
    assert kinds(order) == [Kind.AUTHORIZED, Kind.PARTIALLY_CAPTURED]


def test_settle_waits_while_a_line_has_no_final_answer(clinic_a, gateway):
    order = make_order(clinic_a, [(S.ACCEPTED, "100.00"), (S.ON_HOLD, "20.00")])
    Order.objects.filter(pk=order.pk).update(settlement_requested_at=timezone.now())

    order = order_settle_payment(order_id=order.pk)

    assert gateway.calls == []
    assert order.payment_status == PS.AUTHORIZED
    order.refresh_from_db()
    assert order.settlement_requested_at is None  # the next final answer queues settlement again


def test_a_gateway_failure_during_capture_is_recorded_and_raised_for_a_retry(clinic_a, gateway):
    order = make_order(clinic_a, [(S.ACCEPTED, "100.00")])
    gateway.fail_capture = True

    with pytest.raises(PaymentError):
        order_settle_payment(order_id=order.pk)

    order.refresh_from_db()
    assert order.payment_status == PS.AUTHORIZED
    assert kinds(order) == [Kind.AUTHORIZED, Kind.FAILED]
    gateway.fail_capture = False
    assert order_settle_payment(order_id=order.pk).payment_status == PS.CAPTURED


def test_cancelling_a_line_before_capture_leaves_it_out_of_the_capture(clinic_a, gateway):
    order = make_order(clinic_a, [(S.ACCEPTED, "100.00"), (S.ACCEPTED, "40.00")])
    cancelled = set_status(order, 1, S.CANCELLED)

    assert order_line_refund(line=cancelled, actor=None) is None
    order = order_settle_payment(order_id=order.pk)

    assert order.amount_captured == Decimal("100.00")
    assert gateway.kinds() == ["capture"]


def test_cancelling_a_captured_line_refunds_its_landed_cost_once(clinic_a, clinic_admin_a, gateway):
    order = make_order(clinic_a, [(S.ACCEPTED, "100.00"), (S.COMPOUNDING, "40.00")])
    order_settle_payment(order_id=order.pk)
    cancelled = set_status(order, 1, S.CANCELLED)

    event = order_line_refund(line=cancelled, actor=clinic_admin_a)
    again = order_line_refund(line=cancelled, actor=clinic_admin_a)

    order.refresh_from_db()
    assert event.kind == Kind.REFUNDED and event.amount == Decimal("40.00")
    assert event.payload["line_id"] == cancelled.pk
    assert again is None
    assert order.amount_refunded == Decimal("40.00")
    assert gateway.kinds() == ["capture", "refund"]
    assert gateway.calls[1][1]["idempotency_key"] == f"fizy-line-{cancelled.pk}-refund"
    audit = AuditEntry.objects.get(action="payment.refunded")
    assert audit.actor == clinic_admin_a and audit.patient == cancelled.patient


def test_a_line_that_is_still_accepted_or_shipped_is_not_refunded(clinic_a, gateway):
    order = make_order(clinic_a, [(S.SHIPPED, "100.00")])
    order_settle_payment(order_id=order.pk)

    with pytest.raises(PaymentServiceError, match="shipped"):
        order_line_refund(line=order.lines.get(), actor=None)
    assert gateway.kinds() == ["capture"]


def test_a_line_cancelled_while_the_capture_was_in_flight_is_refunded(clinic_a, gateway):
    order = make_order(clinic_a, [(S.ACCEPTED, "100.00"), (S.ACCEPTED, "40.00")])
    gateway.on_capture = lambda: set_status(order, 1, S.CANCELLED)

    order = order_settle_payment(order_id=order.pk)

    assert gateway.kinds() == ["capture", "refund"]
    assert order.amount_captured == Decimal("140.00")
    assert order.amount_refunded == Decimal("40.00")


# --- reconciliation (Stripe events) ------------------------------------------------------------


def checkout_cart(clinic, *, started_minutes_ago):
    cart = Cart.objects.create(clinic=clinic, status=Cart.Status.CHECKING_OUT, version=4)
    Cart.objects.filter(pk=cart.pk).update(
        checkout_started_at=timezone.now() - datetime.timedelta(minutes=started_minutes_ago)
    )
    cart.refresh_from_db()
    return cart


def intent(reference, *, status=REQUIRES_CAPTURE, cents=12000, cart=None, clinic=None, **extra):
    metadata = authorization_metadata(cart=cart) if cart else {}
    if clinic is not None:
        metadata["clinic_id"] = str(clinic.pk)
    return {"id": reference, "object": "payment_intent", "status": status, "amount": cents,
            "amount_capturable": cents if status == REQUIRES_CAPTURE else 0, "metadata": metadata, **extra}


def test_reconcile_cancels_an_authorization_whose_checkout_died(clinic_a, gateway):
    cart = checkout_cart(clinic_a, started_minutes_ago=25)

    outcome = reconcile_payment_intent(intent=intent("pi_orphan1", cart=cart))
    again = reconcile_payment_intent(intent=intent("pi_orphan1", cart=cart))

    assert outcome == again == Reconciled.CANCELLED_ORPHAN
    event = PaymentEvent.objects.get(reference="pi_orphan1")
    assert event.kind == Kind.CANCELLED and event.order is None and event.clinic == clinic_a
    assert event.amount == Decimal("120.00")
    assert gateway.calls[0] == ("cancel", {"reference": "pi_orphan1", "idempotency_key": "fizy-orphan-pi_orphan1-cancel"})


def test_reconcile_leaves_a_checkout_still_in_progress_alone(clinic_a, gateway):
    cart = checkout_cart(clinic_a, started_minutes_ago=2)

    assert reconcile_payment_intent(intent=intent("pi_young", cart=cart)) == Reconciled.IN_PROGRESS
    assert gateway.calls == [] and not PaymentEvent.objects.exists()


def test_reconcile_leaves_an_authorization_that_has_an_order(clinic_a, gateway):
    order = make_order(clinic_a, [(S.PENDING, "120.00")])

    outcome = reconcile_payment_intent(intent=intent(order.payment_reference, clinic=clinic_a))

    order.refresh_from_db()
    assert outcome == Reconciled.IN_SYNC
    assert gateway.calls == []
    assert order.payment_status == PS.AUTHORIZED
    assert kinds(order) == [Kind.AUTHORIZED]


def test_reconcile_cancels_a_second_authorization_for_a_cart_that_already_has_its_order(clinic_a, gateway):
    cart = Cart.objects.create(clinic=clinic_a, status=Cart.Status.SUBMITTED)
    order = make_order(clinic_a, [(S.PENDING, "120.00")])
    Order.objects.filter(pk=order.pk).update(cart_id=cart.pk)

    outcome = reconcile_payment_intent(intent=intent("pi_duplicate", cart=cart))

    assert outcome == Reconciled.CANCELLED_ORPHAN
    assert gateway.kinds() == ["cancel"]
    assert kinds(order) == [Kind.AUTHORIZED]


def test_reconcile_keeps_the_order_in_step_with_stripe(clinic_a, gateway):
    order = make_order(clinic_a, [(S.PENDING, "120.00")])

    outcome = reconcile_payment_intent(intent=intent(order.payment_reference, status=CANCELED, clinic=clinic_a))

    order.refresh_from_db()
    assert outcome == Reconciled.UPDATED
    assert order.payment_status == PS.CANCELLED
    assert kinds(order) == [Kind.AUTHORIZED, Kind.CANCELLED]
    assert reconcile_payment_intent(intent=intent(order.payment_reference, status=CANCELED)) == Reconciled.IN_SYNC


def test_reconcile_records_a_capture_stripe_reports(clinic_a, gateway):
    order = make_order(clinic_a, [(S.ACCEPTED, "120.00")])

    reconcile_payment_intent(intent=intent(order.payment_reference, status=SUCCEEDED, amount_received=12000))

    order.refresh_from_db()
    assert order.payment_status == PS.CAPTURED and order.amount_captured == Decimal("120.00")


def test_reconcile_refunds_a_charge_without_an_order(clinic_a, gateway):
    outcome = reconcile_payment_intent(
        intent=intent("pi_charged", status=SUCCEEDED, clinic=clinic_a, amount_received=5000)
    )

    assert outcome == Reconciled.REFUNDED_ORPHAN
    assert gateway.kinds() == ["refund"]
    assert PaymentEvent.objects.get(reference="pi_charged").amount == Decimal("50.00")


def test_reconcile_ignores_intents_that_are_not_fizys(db, gateway):
    assert reconcile_payment_intent(intent=intent("pi_someone_else")) == Reconciled.IGNORED
    assert gateway.calls == []


def test_partner_answers_settle_the_payment_through_the_task(clinic_a, gateway, django_capture_on_commit_callbacks):
    """End to end with the line state machine: the last final answer queues settlement (django-q2
    runs inline in tests), which captures the accepted line only."""
    from fulfillment.status import line_apply_status

    order = make_order(clinic_a, [(S.SENT, "100.00"), (S.SENT, "40.00")])
    accepted, rejected = order.lines.order_by("id")

    with django_capture_on_commit_callbacks(execute=True):
        line_apply_status(line=accepted, to=S.ACCEPTED, source="system")
        line_apply_status(line=rejected, to=S.REJECTED, source="system", reason="Out of stock")

    order.refresh_from_db()
    assert gateway.kinds() == ["capture"]
    assert order.payment_status == PS.PARTIALLY_CAPTURED
    assert order.amount_captured == Decimal("100.00")
