import itertools

import pytest

from clinics.models import AuditEntry
from fulfillment.models import LineEvent, OrderLine
from fulfillment.status import TRANSITIONS, IllegalTransition, line_apply_status
from fulfillment.tests.factories import OrderLineFactory, order_with_lines

S = OrderLine.Status
LEGAL = [(f, t) for f, targets in TRANSITIONS.items() for t in sorted(targets)]
ILLEGAL = [(f, t) for f, t in itertools.product(S.values, S.values) if t not in TRANSITIONS[f]]


def test_table_covers_every_status():
    assert set(TRANSITIONS) == set(S.values)
    assert all(targets <= set(S.values) for targets in TRANSITIONS.values())


@pytest.mark.django_db
@pytest.mark.parametrize(("from_status", "to_status"), LEGAL)
def test_every_legal_transition_is_applied_recorded_and_audited(from_status, to_status, charlie):
    line = OrderLineFactory(status=from_status)
    event = line_apply_status(line=line, to=to_status, source=LineEvent.Source.STAFF, actor=charlie, reason="ops fix")
    line.refresh_from_db()
    assert line.status == to_status
    assert line.status_reason == "ops fix"
    assert (event.from_status, event.to_status, event.applied, event.actor) == (from_status, to_status, True, charlie)
    audit = AuditEntry.objects.get(action="order_line.status_changed", object_id=str(line.pk))
    assert audit.actor == charlie and audit.detail["to"] == to_status and audit.clinic == line.order.clinic


@pytest.mark.django_db
@pytest.mark.parametrize(("from_status", "to_status"), ILLEGAL)
def test_every_illegal_transition_is_refused_and_recorded(from_status, to_status):
    line = OrderLineFactory(status=from_status)
    with pytest.raises(IllegalTransition) as refused:
        line_apply_status(line=line, to=to_status, source=LineEvent.Source.WEBHOOK, actor_label="Partner")
    line.refresh_from_db()
    assert line.status == from_status
    event = LineEvent.objects.get(line=line)
    assert (event.from_status, event.to_status, event.applied) == (from_status, to_status, False)
    assert refused.value.event == event
    assert not AuditEntry.objects.filter(object_id=str(line.pk), action="order_line.status_changed").exists()


@pytest.mark.django_db
def test_webhook_changes_are_not_audited_but_are_events():
    line = OrderLineFactory(status=S.SENT)
    line_apply_status(line=line, to=S.ACCEPTED, source=LineEvent.Source.WEBHOOK, actor_label="Cedar", payload={"x": 1})
    assert LineEvent.objects.get(line=line).payload == {"x": 1}
    assert not AuditEntry.objects.filter(object_id=str(line.pk)).exists()


@pytest.mark.django_db
def test_late_accepted_after_shipped_does_not_move_the_line_back():
    line = OrderLineFactory(status=S.SENT)
    line_apply_status(line=line, to=S.SHIPPED, source="webhook", tracking_number="1Z9", carrier="UPS")
    with pytest.raises(IllegalTransition):
        line_apply_status(line=line, to=S.ACCEPTED, source="webhook")
    line.refresh_from_db()
    assert (line.status, line.tracking_number, line.carrier) == (S.SHIPPED, "1Z9", "UPS")
    assert [(e.to_status, e.applied) for e in line.events.all()] == [(S.SHIPPED, True), (S.ACCEPTED, False)]


@pytest.mark.django_db
def test_settlement_is_queued_once_when_the_last_line_gets_its_answer(settle_calls, django_capture_on_commit_callbacks):
    order = order_with_lines(lines_per_partner=3)
    OrderLine.objects.filter(order=order).update(status=S.SENT)
    first, second, third = order.lines.order_by("pk")
    with django_capture_on_commit_callbacks(execute=True):
        line_apply_status(line=first, to=S.ACCEPTED, source="webhook")
        line_apply_status(line=second, to=S.REJECTED, source="webhook", reason="no")
        assert settle_calls == []
        line_apply_status(line=third, to=S.ON_HOLD, source="webhook", reason="callback")
        assert settle_calls == []
        line_apply_status(line=third, to=S.SHIPPED, source="webhook")
        line_apply_status(line=third, to=S.DELIVERED, source="webhook")
        line_apply_status(line=first, to=S.COMPOUNDING, source="webhook")
    assert settle_calls == [order.pk]
    order.refresh_from_db()
    assert order.settlement_requested_at is not None
