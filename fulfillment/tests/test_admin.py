import pytest

from catalog.tests.factories import PartnerFactory
from clinics.models import AuditEntry
from fulfillment.models import LineEvent, OrderLine, PartnerOrder, PaymentEvent, WebhookEvent
from fulfillment.tasks import dispatch_partner_order
from fulfillment.tests.factories import order_with_lines

pytestmark = pytest.mark.django_db
S = OrderLine.Status
ACTION = "_selected_action"


@pytest.fixture
def order():
    return order_with_lines(lines_per_partner=2)


def test_staff_pages_show_orders_lines_history_webhooks_and_payments(client_charlie, order):
    line = order.lines.first()
    LineEvent.objects.create(line=line, from_status="pending", to_status="sent", source="system", reason="unique-reason")
    WebhookEvent.objects.create(partner_slug="cedar", event_id="evt-123", body="{}")
    PaymentEvent.objects.create(order=order, clinic=order.clinic, kind="authorized", amount=1, gateway="sandbox", reference="pi_x")
    assert line.product_name in client_charlie.get(f"/admin/fulfillment/order/{order.pk}/change/").content.decode()
    assert "unique-reason" in client_charlie.get(f"/admin/fulfillment/orderline/{line.pk}/change/").content.decode()
    assert "evt-123" in client_charlie.get("/admin/fulfillment/webhookevent/").content.decode()
    assert "pi_x" in client_charlie.get("/admin/fulfillment/paymentevent/").content.decode()
    assert client_charlie.get("/admin/fulfillment/webhookevent/add/").status_code == 403


def test_set_line_status_offers_only_allowed_transitions_and_is_audited(client_charlie, charlie, order):
    OrderLine.objects.filter(order=order).update(status=S.SENT)
    ids = [str(pk) for pk in order.lines.values_list("pk", flat=True)]
    form = client_charlie.post("/admin/fulfillment/orderline/", {"action": "set_line_status", ACTION: ids})
    choices = [value for value, _ in form.context["form"].fields["to"].choices]
    assert choices == ["accepted", "compounding", "shipped", "delivered", "rejected", "on_hold", "cancelled"]

    refused = client_charlie.post("/admin/fulfillment/orderline/", {
        "action": "set_line_status", ACTION: ids, "apply": "1", "to": "pending", "reason": "x"})
    assert refused.status_code == 200 and "pending" in str(refused.context["form"].errors)

    done = client_charlie.post("/admin/fulfillment/orderline/", {
        "action": "set_line_status", ACTION: ids, "apply": "1", "to": "on_hold", "reason": "Called the pharmacy"})
    assert done.status_code == 302
    assert set(order.lines.values_list("status", flat=True)) == {S.ON_HOLD}
    event = LineEvent.objects.filter(line__order=order, to_status="on_hold").first()
    assert (event.source, event.actor, event.reason) == ("staff", charlie, "Called the pharmacy")
    assert AuditEntry.objects.filter(action="order_line.status_changed", actor=charlie).count() == 2


def test_retry_dispatch_action(client_charlie, rsps, django_capture_on_commit_callbacks):
    down, up = PartnerFactory(), PartnerFactory()
    order = order_with_lines(partners=[down, up])
    OrderLine.objects.filter(partner_order__partner=up).update(status=S.SENT)  # still waiting for its answer
    partner_order = order.partner_orders.get(partner=down)
    url = f"{down.api_base_url}/orders"
    rsps.post(url, status=403, json={"error": "key revoked"})
    rsps.post(url, json={"reference": "R-9"})
    dispatch_partner_order(partner_order.pk)
    partner_order.refresh_from_db()
    assert partner_order.status == PartnerOrder.Status.FAILED and "key revoked" in partner_order.last_error
    with django_capture_on_commit_callbacks(execute=True):
        response = client_charlie.post("/admin/fulfillment/partnerorder/", {"action": "retry_dispatch", ACTION: [partner_order.pk]})
    assert response.status_code == 302
    partner_order.refresh_from_db()
    assert (partner_order.status, partner_order.partner_reference) == (PartnerOrder.Status.SENT, "R-9")
    assert AuditEntry.objects.filter(action="partner_order.retry_dispatch").exists()


def test_retry_dispatch_action_explains_a_refusal(client_charlie, order):
    partner_order = order.partner_orders.get()
    PartnerOrder.objects.filter(pk=partner_order.pk).update(status=PartnerOrder.Status.SENT)
    response = client_charlie.post(
        "/admin/fulfillment/partnerorder/", {"action": "retry_dispatch", ACTION: [partner_order.pk]}, follow=True
    )
    assert "is sent, not failed or stuck; nothing to retry" in response.content.decode()


def test_a_staff_transition_the_state_machine_refuses_is_recorded_not_rolled_back(
    client_charlie, charlie, order, monkeypatch
):
    from fulfillment import admin as fulfillment_admin
    from fulfillment.status import line_set_status_by_staff

    OrderLine.objects.filter(order=order).update(status=S.SENT)
    ids = [str(pk) for pk in order.lines.values_list("pk", flat=True)]
    delivered = order.lines.order_by("pk").first()

    def partner_delivers_first(*, line, **kwargs):
        # The partner's "delivered" webhook lands between the form's check and the change.
        if line.pk == delivered.pk:
            OrderLine.objects.filter(pk=line.pk).update(status=S.DELIVERED)
        return line_set_status_by_staff(line=line, **kwargs)

    monkeypatch.setattr(fulfillment_admin, "line_set_status_by_staff", partner_delivers_first)
    response = client_charlie.post("/admin/fulfillment/orderline/", {
        "action": "set_line_status", ACTION: ids, "apply": "1", "to": "cancelled", "reason": "Clinic called to stop it"},
        follow=True)

    page = response.content.decode()
    assert f"Line {delivered.pk}: A line that is delivered cannot become cancelled." in page
    assert "1 line(s) set to cancelled." in page
    refused = LineEvent.objects.get(line=delivered, applied=False)
    assert (refused.from_status, refused.to_status, refused.source, refused.actor, refused.reason) == (
        "delivered", "cancelled", "staff", charlie, "Clinic called to stop it")
    delivered.refresh_from_db()
    assert delivered.status == S.DELIVERED
