import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.tests.factories import PartnerFactory
from fulfillment.models import OrderLine
from fulfillment.status import IllegalTransition, line_apply_status
from fulfillment.tests.factories import OrderLineFactory, order_with_lines

pytestmark = pytest.mark.django_db
S = OrderLine.Status


@pytest.fixture
def order_a(clinic_a, alice):
    order = order_with_lines(clinic=clinic_a, partners=[PartnerFactory(name="Cedar"), PartnerFactory(name="Harbor")], placed_by=alice)
    OrderLine.objects.filter(order=order).update(status=S.SENT)
    first, second, third, fourth = order.lines.select_related("patient").order_by("pk")
    line_apply_status(line=first, to=S.SHIPPED, source="webhook", tracking_number="1Z999", carrier="UPS")
    line_apply_status(line=second, to=S.REJECTED, source="webhook", reason="License not verified")
    line_apply_status(line=third, to=S.ON_HOLD, source="webhook", reason="Awaiting prescriber callback")
    return order


def test_orders_list_shows_number_lines_status_and_total(client_alice, order_a):
    page = client_alice.get("/orders/").content.decode()
    assert order_a.number in page and f"${order_a.total}" in page
    assert "1 shipped" in page and "1 rejected" in page and "1 sent to pharmacy" in page
    assert "alice" in page


def test_order_page_has_one_row_per_patient_line_and_polls(client_alice, order_a):
    response = client_alice.get(f"/orders/{order_a.pk}")
    page = response.content.decode()
    for line in order_a.lines.select_related("patient"):
        assert f'id="line-{line.pk}"' in page and line.patient.full_name in page
    assert "https://www.ups.com/track?tracknum=1Z999" in page
    assert 'hx-trigger="every 5s"' in page and "Cedar" in page and "License not verified" in page
    assert response.context["nav"] == "orders"


def test_order_page_filters_and_htmx_partial(client_alice, order_a):
    rejected = order_a.lines.get(status=S.REJECTED)
    response = client_alice.get(f"/orders/{order_a.pk}?status=rejected", headers={"HX-Request": "true"})
    page = response.content.decode()
    assert page.lstrip().startswith('<section id="order-lines"')
    assert f'id="line-{rejected.pk}"' in page and page.count('<tr id="line-') == 1
    assert f'hx-get="/orders/{order_a.pk}?status=rejected"' in page  # polling keeps the filter
    patient = order_a.lines.select_related("patient").get(status=S.SHIPPED).patient
    page = client_alice.get(f"/orders/{order_a.pk}", {"q": patient.chart_id}).content.decode()
    assert page.count('<tr id="line-') == 2  # the same patient at two partners


def test_polling_stops_when_nothing_can_change(client_alice, clinic_a):
    order = order_with_lines(clinic=clinic_a, lines_per_partner=1)
    OrderLine.objects.filter(order=order).update(status=S.DELIVERED)
    assert "every 5s" not in client_alice.get(f"/orders/{order.pk}").content.decode()


def test_line_history(client_alice, order_a):
    line = order_a.lines.get(status=S.SHIPPED)
    with pytest.raises(IllegalTransition):
        line_apply_status(line=line, to=S.ACCEPTED, source="webhook")
    page = client_alice.get(f"/orders/{order_a.pk}/lines/{line.pk}", headers={"HX-Request": "true"}).content.decode()
    assert page.lstrip().startswith('<section id="line-history"')
    assert "sent to pharmacy → shipped" in page and "shipped ↛ accepted (refused)" in page


def test_order_page_reads_plainly_on_hold_and_just_now(client_alice, order_a):
    page = client_alice.get(f"/orders/{order_a.pk}").content.decode()
    assert "→ on hold" in page and "on_hold" not in page.split('id="order-lines"')[1].replace('data-status="on_hold"', "")
    assert "just now" in page and "0\xa0minutes ago" not in page and "0 minutes ago" not in page


def test_a_lines_history_opens_in_a_row_under_it_and_stays_open_while_polling(client_alice, order_a):
    shipped = order_a.lines.get(status=S.SHIPPED)
    page = client_alice.get(f"/orders/{order_a.pk}", {"history": shipped.pk, "status": ""},
                            headers={"HX-Request": "true", "HX-Trigger": f"history-link-{shipped.pk}"}).content.decode()
    assert page.lstrip().startswith('<section id="order-lines"')
    row = page.index(f'<tr id="line-{shipped.pk}"')
    history = page.index(f'<tr class="history-row" id="history-{shipped.pk}"')
    assert row < history and page.count("<tr id=\"line-", row, history) == 1  # right under its row
    assert "sent to pharmacy → shipped" in page and "autofocus" in page
    assert f"history={shipped.pk}" in page.split("hx-get=")[1].split(" ")[0]  # the poll keeps it open
    polled = client_alice.get(f"/orders/{order_a.pk}", {"history": shipped.pk},
                              headers={"HX-Request": "true", "HX-Trigger": "order-lines"}).content.decode()
    assert f'id="history-{shipped.pk}"' in polled and "autofocus" not in polled  # polling does not move focus


def test_another_orders_line_is_not_opened_as_history(client_alice, clinic_a, order_a):
    other = order_with_lines(clinic=clinic_a, lines_per_partner=1).lines.first()
    page = client_alice.get(f"/orders/{order_a.pk}", {"history": other.pk}).content.decode()
    assert "history-row" not in page


def test_orders_list_searches_by_patient_status_and_date(client_alice, clinic_a, order_a):
    import datetime

    from django.utils import timezone

    other = order_with_lines(clinic=clinic_a, lines_per_partner=1)
    OrderLine.objects.filter(order=other).update(status=S.DELIVERED)
    old = order_with_lines(clinic=clinic_a, lines_per_partner=1)
    type(old).objects.filter(pk=old.pk).update(placed_at=timezone.now() - datetime.timedelta(days=40))
    on_hold = order_a.lines.select_related("patient").get(status=S.ON_HOLD).patient

    def listed(**query):
        page = client_alice.get("/orders/", query).content.decode()
        return {o.number for o in (order_a, other, old) if o.number in page}

    assert listed() == {order_a.number, other.number, old.number}
    assert listed(q=on_hold.last_name) == {order_a.number}
    assert listed(q=on_hold.chart_id) == {order_a.number}
    assert listed(status="on_hold") == {order_a.number}
    assert listed(status="delivered") == {other.number}
    since = (timezone.localdate() - datetime.timedelta(days=7)).isoformat()
    assert listed(**{"from": since}) == {order_a.number, other.number}
    assert listed(to=(timezone.localdate() - datetime.timedelta(days=30)).isoformat()) == {old.number}
    assert listed(status="nonsense", **{"from": "not-a-date"}) == {order_a.number, other.number, old.number}
    assert "No order matches these filters." in client_alice.get("/orders/", {"q": "zzzz-nobody"}).content.decode()


def test_attention_lists_rejected_on_hold_and_failed_with_next_steps(client_alice, order_a):
    response = client_alice.get("/orders/attention")
    page = response.content.decode()
    assert response.context["nav"] == "attention"
    assert "License not verified" in page and "Re-order" in page
    assert "Awaiting prescriber callback" in page and "Dismiss" in page
    shipped = order_a.lines.get(status=S.SHIPPED)
    assert f'data-line="{shipped.pk}"' not in page


def test_another_clinics_order_and_line_ids_are_404_on_every_coordinator_url(client_bob, clinic_b, order_a):
    own = order_with_lines(clinic=clinic_b, lines_per_partner=1)
    line_a = order_a.lines.first()
    for url in [
        f"/orders/{order_a.pk}",
        f"/orders/{order_a.pk}?status=sent",
        f"/orders/{order_a.pk}/lines/{line_a.pk}",
        f"/orders/{own.pk}/lines/{line_a.pk}",  # own order, foreign line
    ]:
        assert client_bob.get(url).status_code == 404, url
        assert client_bob.get(url, headers={"HX-Request": "true"}).status_code == 404, url
    for url in ["/orders/", "/orders/attention"]:
        page = client_bob.get(url).content.decode()
        assert order_a.number not in page
        assert f'id="line-{line_a.pk}"' not in page


def test_coordinator_pages_need_a_login(client, order_a):
    assert client.get(f"/orders/{order_a.pk}").status_code == 302


def _queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx)


@pytest.mark.parametrize("url", ["/orders/{pk}", "/orders/attention", "/orders/"])
def test_pages_take_the_same_number_of_queries_with_20_and_200_lines(client_alice, clinic_a, url):
    client_alice.get("/orders/")  # the first request of a session stores the active clinic
    counts = []
    for size in (20, 200):
        order = order_with_lines(clinic=clinic_a, lines_per_partner=1)
        partner_order = order.partner_orders.get()
        OrderLineFactory.create_batch(size - 1, partner_order=partner_order, patient=order.lines.first().patient)
        OrderLine.objects.filter(order=order).update(status=S.REJECTED, status_reason="no")
        counts.append(_queries(client_alice, url.format(pk=order.pk)))
    assert counts[0] == counts[1]
