"""The patient's tracking page: the minimum necessary, nothing for a bad link, every view recorded."""

import datetime
import io
import re

import pytest
from django.core.management import call_command
from django.utils import timezone
from django.utils.dateformat import format as date_format

from clinics.models import AuditEntry, Clinic, Patient, Prescriber
from clinics.tests.factories import MembershipFactory, PatientFactory, UserFactory
from fizy import demo_data
from fulfillment.models import OrderLine
from fulfillment.tests.factories import OrderFactory, OrderLineFactory, PartnerOrderFactory
from notices import tracking
from notices.models import NoticeSettings, TrackingAccess, TrackingLink
from notices.tracking import link_token, tracking_link_for
from notices.tests.conftest import move

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded():
    call_command("seed_demo", stdout=io.StringIO())
    clinic = Clinic.objects.get(name="Bloom Wellness — Austin")
    patient = Patient.objects.get(chart_id="BW-1003")
    other = Patient.objects.get(chart_id="BW-1004")
    prescriber = Prescriber.objects.get(last_name="Patel")
    order = OrderFactory(clinic=clinic)
    partner_order = PartnerOrderFactory(order=order)
    sig = demo_data.HISTORY_SIG["FZ-SEMA-25"]
    mine = [OrderLineFactory(partner_order=partner_order, patient=patient, prescriber=prescriber, sig=sig,
                             unit_price="149.00", shipping_share="18.00", landed_cost="316.00") for _ in range(2)]
    OrderLineFactory(partner_order=partner_order, patient=other, prescriber=prescriber, sig=sig)
    return {"clinic": clinic, "patient": patient, "other": other, "prescriber": prescriber, "order": order,
            "lines": mine, "sig": sig}


def url_of(link) -> str:
    return f"/t/{link_token(link)}"


def test_the_page_shows_the_minimum_and_never_the_rest(client, seeded):
    patient, order, lines = seeded["patient"], seeded["order"], seeded["lines"]
    assert patient.date_of_birth and patient.address_line1 and patient.zip_code  # the seeded record has them all
    move(order.lines.all(), "sent", "accepted", "compounding")
    move([lines[0]], "shipped", tracking_number="1Z999AA10123456784", carrier="UPS")
    link = tracking_link_for(order_id=order.pk, patient_id=patient.pk)

    response = client.get(url_of(link))
    assert response.status_code == 200
    page = response.content.decode()
    assert f"Hi {patient.first_name} {patient.last_name[0]}." in page
    assert "Bloom Wellness — Austin" in page and "(512) 555-0143" in page
    assert lines[0].product.name in page
    assert "Shipped — UPS 1Z999AA10123456784" in page and "https://www.ups.com/track?tracknum=1Z999AA10123456784" in page
    assert "Expected by" in page and "Being prepared" in page and "Your pharmacy received your order" in page
    assert f"{patient.city}, {patient.state}" in page

    dob = patient.date_of_birth
    never = {
        "date of birth": [dob.isoformat(), dob.strftime("%m/%d/%Y"), date_format(dob, "M j, Y"), date_format(dob, "F j, Y"),
                          date_format(dob, "N j, Y"), str(dob.year)],
        "street address": [patient.address_line1, patient.zip_code] + ([patient.address_line2] if patient.address_line2 else []),
        "price": ["149.00", "316.00", "18.00", "$"],
        "prescriber": [seeded["prescriber"].last_name, seeded["prescriber"].npi],
        "SIG": [seeded["sig"], "subcutaneously"],
        "last name": [patient.last_name],
        "another patient": [seeded["other"].first_name, seeded["other"].last_name, seeded["other"].chart_id],
        "chart id, phone, email": [patient.chart_id, str(patient.phone)[-4:], patient.email],
    }
    for what, values in never.items():
        for value in values:
            assert value not in page, f"the page shows the {what}: {value!r}"
    assert response["Referrer-Policy"] == "no-referrer" and response["Cache-Control"] == "no-store"
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page) is None  # no inline script


def test_the_clinic_can_hide_product_names(client, seeded):
    NoticeSettings.objects.update_or_create(clinic=seeded["clinic"], defaults={"show_products_on_page": False})
    link = tracking_link_for(order_id=seeded["order"].pk, patient_id=seeded["patient"].pk)
    page = client.get(url_of(link)).content.decode()
    assert seeded["lines"][0].product.name not in page and "Item 1" in page and "Item 2" in page


def test_a_wrong_tampered_revoked_or_expired_link_shows_no_data(client, seeded):
    patient, order = seeded["patient"], seeded["order"]
    link = tracking_link_for(order_id=order.pk, patient_id=patient.pk)
    token = link_token(link)
    nonce, signature = token.split(".")
    tampered = [f"{nonce[:-1]}{'A' if nonce[-1] != 'A' else 'B'}.{signature}", f"{nonce}.{signature[:-2]}xx",
                "nothing-here", nonce]
    for bad in tampered:
        response = client.get(f"/t/{bad}")
        assert response.status_code == 404
        page = response.content.decode()
        assert "contact your clinic" in page
        assert patient.first_name not in page and "Bloom" not in page and seeded["lines"][0].product.name not in page

    admin = MembershipFactory(clinic=seeded["clinic"], user=UserFactory(username="dana")).user
    tracking.tracking_link_revoke(link=link, clinic=seeded["clinic"], actor=admin)
    response = client.get(f"/t/{token}")
    assert response.status_code == 404 and patient.first_name not in response.content.decode()
    assert AuditEntry.objects.filter(action="tracking_link.revoke", patient=patient, actor=admin).exists()

    fresh = tracking_link_for(order_id=order.pk, patient_id=patient.pk)  # a new link works
    assert fresh.pk != link.pk and client.get(url_of(fresh)).status_code == 200

    move(seeded["lines"], "sent", "shipped", "delivered")
    OrderLine.objects.filter(pk__in=[line.pk for line in seeded["lines"]]).update(
        status_changed_at=timezone.now() - datetime.timedelta(days=31))
    response = client.get(url_of(fresh))
    assert response.status_code == 404 and patient.first_name not in response.content.decode()

    outcomes = list(TrackingAccess.objects.order_by("id").values_list("outcome", "link_id"))
    assert outcomes == [("invalid", None)] * 4 + [("revoked", link.pk), ("shown", fresh.pk), ("expired", fresh.pk)]


def test_a_link_works_until_the_set_days_after_the_last_line_is_final(seeded):
    link = tracking_link_for(order_id=seeded["order"].pk, patient_id=seeded["patient"].pk)
    lines = seeded["lines"]
    move(lines, "sent", "shipped")
    assert tracking.link_expires_at(link=link, lines=list(OrderLine.objects.filter(pk__in=[l.pk for l in lines])),
                                    valid_days=30) is None
    move(lines[:1], "delivered")
    move(lines[1:], "delivered")
    fresh = list(OrderLine.objects.filter(pk__in=[l.pk for l in lines]))
    expires = tracking.link_expires_at(link=link, lines=fresh, valid_days=30)
    assert expires == max(l.status_changed_at for l in fresh) + datetime.timedelta(days=30)
    assert tracking.tracking_page_for_token(link_token(link), now=expires - datetime.timedelta(minutes=1)).outcome == "shown"
    assert tracking.tracking_page_for_token(link_token(link), now=expires).outcome == "expired"


def test_every_view_is_recorded_without_patient_data(client, seeded):
    link = tracking_link_for(order_id=seeded["order"].pk, patient_id=seeded["patient"].pk)
    client.get(url_of(link), REMOTE_ADDR="203.0.113.7")
    client.get(url_of(link), REMOTE_ADDR="203.0.113.7", headers={"HX-Request": "true"})
    first, refresh = TrackingAccess.objects.order_by("id")
    assert (first.outcome, first.link, first.refresh) == ("shown", link, False)
    assert refresh.refresh and refresh.ip_hash == first.ip_hash and "203.0.113" not in first.ip_hash
    fields = {f.name for f in TrackingAccess._meta.fields}
    assert fields == {"id", "link", "at", "outcome", "ip_hash", "refresh"}


def test_the_page_refreshes_itself_until_nothing_can_change(client, seeded, settings):
    settings.TRACKING_POLL_SECONDS = 7
    link = tracking_link_for(order_id=seeded["order"].pk, patient_id=seeded["patient"].pk)
    page = client.get(url_of(link)).content.decode()
    assert 'hx-trigger="every 7s"' in page
    partial = client.get(url_of(link), headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section id="track-body"') and "<html" not in partial
    move(seeded["lines"], "sent", "rejected")
    page = client.get(url_of(link)).content.decode()
    assert "hx-trigger" not in page and "your clinic will contact you" in page


def test_the_page_is_rate_limited(client, seeded, monkeypatch):
    monkeypatch.setattr(tracking, "LIMIT_PER_ADDRESS", 5)
    monkeypatch.setattr(tracking, "LIMIT_FAILURES_PER_ADDRESS", 3)
    link = tracking_link_for(order_id=seeded["order"].pk, patient_id=seeded["patient"].pk)
    codes = [client.get(url_of(link), REMOTE_ADDR="198.51.100.1").status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2
    assert client.get(url_of(link), REMOTE_ADDR="198.51.100.2").status_code == 200  # another address
    # Guessing: three wrong links, then even a right one is refused from that address for a while.
    codes = [client.get(f"/t/guess{i}", REMOTE_ADDR="198.51.100.3").status_code for i in range(3)]
    assert codes == [404] * 3 and client.get(url_of(link), REMOTE_ADDR="198.51.100.3").status_code == 429
    limited = TrackingAccess.objects.filter(outcome="rate_limited")
    assert limited.count() == 2  # once per address and window, not once per request


@pytest.mark.parametrize("n_lines", [1, 6])
def test_the_page_costs_the_same_queries_for_one_line_or_many(client, seeded, n_lines, django_assert_max_num_queries):
    patient = PatientFactory(organization=seeded["clinic"].organization)
    order = OrderFactory(clinic=seeded["clinic"])
    partner_order = PartnerOrderFactory(order=order)
    lines = [OrderLineFactory(partner_order=partner_order, patient=patient) for _ in range(n_lines)]
    move(lines, "sent", "shipped")
    link = tracking_link_for(order_id=order.pk, patient_id=patient.pk)
    with django_assert_max_num_queries(6):
        assert client.get(url_of(link)).status_code == 200
