"""Needs attention as a worklist: items open until resolved, plain words, a resolved tab, a badge."""

import pytest

from catalog.tests.factories import PartnerFactory
from clinics.models import AuditEntry
from fulfillment.models import AttentionItem, OrderLine
from fulfillment.status import line_apply_status
from fulfillment.tests.factories import order_with_lines

pytestmark = pytest.mark.django_db
S = OrderLine.Status


@pytest.fixture
def order_a(clinic_a, alice):
    order = order_with_lines(clinic=clinic_a, partners=[PartnerFactory(name="Harbor")], lines_per_partner=3,
                             placed_by=alice)
    OrderLine.objects.filter(order=order).update(status=S.SENT)
    rejected, held, shipped = order.lines.order_by("pk")
    line_apply_status(line=rejected, to=S.REJECTED, source="webhook", reason="Directions say 'as directed'.",
                      reason_code="sig_unclear")
    line_apply_status(line=held, to=S.ON_HOLD, source="webhook", reason="Please send the signed prescription.",
                      reason_code="prescription_needed")
    line_apply_status(line=shipped, to=S.SHIPPED, source="webhook")
    return order


def test_open_items_in_plain_words_with_what_to_do(client_alice, order_a):
    response = client_alice.get("/orders/attention")
    page = response.content.decode()
    assert response.context["nav"] == "attention"
    assert page.count('<tr id="item-') == 2
    assert "Harbor rejected it: directions (sig) unclear." in page
    assert "Rewrite the directions" in page and "Directions say" in page
    assert "Harbor holds it: signed prescription needed." in page
    assert "could not reach" not in page


def test_failed_line_does_not_contradict_itself(client_alice, clinic_a):
    order = order_with_lines(clinic=clinic_a, partners=[PartnerFactory(name="Harbor")], lines_per_partner=1)
    line = order.lines.get()
    line_apply_status(line=line, to=S.FAILED, source="system", reason="Harbor refused the order (404): unknown SKU.")
    page = client_alice.get("/orders/attention").content.decode()
    assert "It could not be sent to Harbor." in page and "refused the order (404)" in page
    assert "could not reach" not in page.lower()


def test_badge_counts_open_items_on_every_page_in_one_query(client_alice, order_a, django_assert_num_queries):
    page = client_alice.get("/orders/").content.decode()
    assert 'id="attention-count" aria-label="2 open">2<' in page
    from fulfillment.selectors import attention_open_count

    with django_assert_num_queries(1):
        assert attention_open_count(clinic=order_a.clinic) == 2


def test_dismiss_needs_a_reason_and_moves_the_item_to_resolved_with_who_and_when(client_alice, alice, order_a):
    item = AttentionItem.objects.get(line__status=S.ON_HOLD)
    response = client_alice.post(f"/orders/attention/{item.pk}/dismiss", {"reason": " "}, follow=True)
    assert "Say why you dismiss" in response.content.decode()
    client_alice.post(f"/orders/attention/{item.pk}/dismiss", {"reason": "Patient stopped the therapy"})
    item.refresh_from_db()
    assert item.resolution == AttentionItem.Resolution.DISMISSED and item.resolved_by == alice and item.resolved_at
    assert AuditEntry.objects.filter(action="attention.resolve", object_id=str(item.pk)).exists()
    page = client_alice.get("/orders/attention").content.decode()
    assert f'id="item-{item.pk}"' not in page and 'aria-label="1 open"' in page
    page = client_alice.get("/orders/attention?tab=resolved").content.decode()
    assert f'id="item-{item.pk}"' in page and "Dismissed" in page and "Patient stopped the therapy" in page


def test_the_pharmacy_moving_a_held_line_resolves_its_item(client_alice, order_a):
    held = order_a.lines.get(status=S.ON_HOLD)
    line_apply_status(line=held, to=S.ACCEPTED, source="webhook")
    item = AttentionItem.objects.get(line=held)
    assert item.resolution == AttentionItem.Resolution.RESUMED
    assert 'aria-label="1 open"' in client_alice.get("/orders/attention").content.decode()


def test_another_clinic_gets_404_on_dismiss_and_sees_none_of_the_items(client_bob, order_a):
    item = AttentionItem.objects.filter(clinic=order_a.clinic).first()
    assert client_bob.post(f"/orders/attention/{item.pk}/dismiss", {"reason": "x"}).status_code == 404
    page = client_bob.get("/orders/attention").content.decode()
    assert 'id="item-' not in page and "attention-count" not in page


def _queries_for_attention_page(client, clinic, n):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    order = order_with_lines(clinic=clinic, partners=[PartnerFactory()], lines_per_partner=n)
    OrderLine.objects.filter(order=order).update(status=S.SENT)
    for line in order.lines.all():
        line_apply_status(line=line, to=S.REJECTED, source="webhook", reason="No.", reason_code="other")
    client.get("/orders/attention")  # the session's clinic is set on a first visit
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/orders/attention").content.decode()
    return len(queries), page.count('<tr id="item-')


def test_the_worklist_costs_the_same_queries_for_few_or_many_items(client_alice, clinic_a):
    few, shown = _queries_for_attention_page(client_alice, clinic_a, 2)
    assert shown == 2
    many, shown = _queries_for_attention_page(client_alice, clinic_a, 8)
    assert shown == 10 and many == few


def test_the_coordinators_digest_lists_open_items_only(order_a):
    from notices.selectors import digest_items

    assert {line.status for line in digest_items(clinic=order_a.clinic)} == {S.REJECTED, S.ON_HOLD}
    item = AttentionItem.objects.get(line__status=S.ON_HOLD)
    from fulfillment.attention import attention_dismiss

    attention_dismiss(item=item, actor=None, reason="Handled by phone")
    assert [line.status for line in digest_items(clinic=order_a.clinic)] == [S.REJECTED]
