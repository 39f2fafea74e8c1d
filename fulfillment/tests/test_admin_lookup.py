"""Staff find an order the way a clinic describes it, read it without being able to change it, and
see a partner order's status as its lines tell it (issue 12, item 6)."""

import pytest

from catalog.tests.factories import PartnerFactory
from fulfillment.models import Order, OrderLine, PartnerOrder
from fulfillment.tests.factories import order_with_lines

pytestmark = pytest.mark.django_db
S = OrderLine.Status


def found_orders(client, query) -> list[Order]:
    response = client.get("/admin/fulfillment/order/", {"q": query})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_an_order_is_found_by_its_printed_number_a_patient_or_a_partner_reference(client_charlie):
    others = [order_with_lines() for _ in range(2)]
    order = order_with_lines(lines_per_partner=2)
    patient = order.lines.order_by("pk").first().patient
    order.partner_orders.update(partner_reference="HAR-77812", status=PartnerOrder.Status.SENT)

    assert found_orders(client_charlie, order.number) == [order]  # "FZ-000036"
    assert found_orders(client_charlie, order.number.lower().replace("-", " ")) == [order]
    assert found_orders(client_charlie, f"{patient.first_name} {patient.last_name}") == [order]
    assert found_orders(client_charlie, patient.chart_id) == [order]
    assert found_orders(client_charlie, "HAR-77812") == [order]
    assert found_orders(client_charlie, "FZ-999999") == []
    # Newest first, without a search too.
    assert found_orders(client_charlie, "") == [order, *reversed(others)]

    lines = client_charlie.get("/admin/fulfillment/orderline/", {"q": order.number}).context["cl"].result_list
    assert {line.order_id for line in lines} == {order.pk} and len(lines) == 2
    newest_first = client_charlie.get("/admin/fulfillment/orderline/").context["cl"].result_list
    assert [line.pk for line in newest_first] == sorted(OrderLine.objects.values_list("pk", flat=True), reverse=True)


def test_the_order_page_is_read_only_with_a_readable_ship_to(client_charlie):
    order = order_with_lines()
    url = f"/admin/fulfillment/order/{order.pk}/change/"
    page = client_charlie.get(url).content.decode()
    clinic = order.clinic
    assert f"NPI: {clinic.npi}" in page and f"Address: {clinic.address_line1}" in page
    assert "&quot;npi&quot;" not in page and '"npi":' not in page  # not the raw JSON
    for button in ('name="_save"', 'name="_continue"', 'name="_addanother"'):
        assert button not in page
    assert 'name="partner_orders-MAX_NUM_FORMS" value="0"' in page  # inlines offer no "Add another" row
    total = order.total
    assert client_charlie.post(url, {"total": "1.00"}).status_code == 403
    order.refresh_from_db()
    assert order.total == total
    assert client_charlie.get("/admin/fulfillment/order/add/").status_code == 403

    line = order.lines.first()
    line_page = client_charlie.get(f"/admin/fulfillment/orderline/{line.pk}/change/").content.decode()
    assert 'name="_save"' not in line_page


def test_a_partner_order_whose_lines_all_ended_is_no_longer_shown_as_sent(client_charlie, django_assert_max_num_queries):
    order = order_with_lines(partners=[PartnerFactory(name="Harbor"), PartnerFactory(name="Cedar")], lines_per_partner=2)
    harbor, cedar = order.partner_orders.get(partner__name="Harbor"), order.partner_orders.get(partner__name="Cedar")
    PartnerOrder.objects.filter(order=order).update(status=PartnerOrder.Status.SENT)
    OrderLine.objects.filter(partner_order=harbor).update(status=S.DELIVERED)
    first, second = cedar.lines.order_by("pk")
    OrderLine.objects.filter(pk=first.pk).update(status=S.DELIVERED)
    OrderLine.objects.filter(pk=second.pk).update(status=S.ACCEPTED)

    rows = dict(client_charlie.get("/admin/fulfillment/partnerorder/").context["cl"].result_list.values_list("pk", "status"))
    assert rows[harbor.pk] == "sent"  # stored as sent; shown rolled up:
    listing = client_charlie.get("/admin/fulfillment/partnerorder/").content.decode()
    assert "Delivered" in listing and "Sent (1 of 2 lines open)" in listing

    OrderLine.objects.filter(pk=second.pk).update(status=S.REJECTED)
    page = client_charlie.get(f"/admin/fulfillment/order/{order.pk}/change/").content.decode()
    assert "Closed: 1 delivered, 1 rejected" in page and "Sent (" not in page

    # The roll-up costs no query per partner order.
    with django_assert_max_num_queries(12):
        client_charlie.get("/admin/fulfillment/partnerorder/")
    order_with_lines(partners=[PartnerFactory() for _ in range(5)])
    with django_assert_max_num_queries(12):
        client_charlie.get("/admin/fulfillment/partnerorder/")
