"""Partners report their stock with a signed ``stock`` event: the offering's stock becomes what
they have on hand; a replay or an older report changes nothing; bad ones are refused clearly."""

import datetime

import pytest
from django.utils import timezone

from catalog.models import Offering
from catalog.tests.factories import OfferingFactory, PartnerFactory
from fulfillment.models import WebhookEvent
from fulfillment.tests.conftest import post_event

pytestmark = pytest.mark.django_db


def stock(sku, quantity, *, event_id, minutes_ago=0):
    at = timezone.now() - datetime.timedelta(minutes=minutes_ago)
    return {"event_id": event_id, "occurred_at": at.isoformat(), "type": "stock", "partner_sku": sku,
            "quantity_on_hand": quantity}


def test_a_stock_report_sets_the_offering_stock_once(client):
    offering = OfferingFactory(partner=PartnerFactory(), partner_sku="CED-SEMA-5", stock_quantity=3)
    partner = offering.partner

    response = post_event(client, partner, stock("CED-SEMA-5", 40, event_id="stk-1"))
    assert response.status_code == 200 and response.json() == {"status": "applied", "event_id": "stk-1", "stock": 40}
    offering.refresh_from_db()
    assert offering.stock_quantity == 40 and offering.stock_reported_at is not None

    Offering.objects.filter(pk=offering.pk).update(stock_quantity=38)  # two vials ordered since
    again = post_event(client, partner, stock("CED-SEMA-5", 40, event_id="stk-1"))
    assert again.json()["status"] == "duplicate"
    older = post_event(client, partner, stock("CED-SEMA-5", 5, event_id="stk-0", minutes_ago=30))
    assert "A later stock report was applied already" in older.json()["detail"]
    offering.refresh_from_db()
    assert offering.stock_quantity == 38


def test_an_unknown_sku_or_a_malformed_report_is_refused_with_a_reason(client):
    partner = OfferingFactory(partner_sku="CED-1").partner
    unknown = post_event(client, partner, stock("NOPE-9", 4, event_id="stk-x"))
    assert unknown.status_code == 404 and "no product with SKU 'NOPE-9'" in unknown.json()["error"]
    negative = post_event(client, partner, stock("CED-1", -1, event_id="stk-y"))
    assert negative.status_code == 400 and "quantity_on_hand" in negative.json()["fields"]
    odd = post_event(client, partner, {**stock("CED-1", 1, event_id="stk-z"), "type": "price"})
    assert odd.status_code == 400 and "Unknown event type 'price'" in odd.json()["error"]
    assert WebhookEvent.objects.filter(outcome="invalid").count() == 3


def test_another_partners_sku_is_not_touched(client):
    mine = OfferingFactory(partner_sku="SAME-SKU", stock_quantity=7)
    other = OfferingFactory(partner_sku="SAME-SKU", stock_quantity=2)
    post_event(client, mine.partner, stock("SAME-SKU", 99, event_id="stk-mine"))
    other.refresh_from_db()
    assert other.stock_quantity == 2
