"""Coordinators are told: one email per order for the rejections and holds that happen together,
and a daily digest at the clinic's hour of what still needs attention."""

import datetime

import pytest
from django.core import mail

from clinics.models import Membership
from clinics.tests.factories import ClinicFactory, MembershipFactory, UserFactory
from fulfillment.models import OrderLine
from notices.coordinators import alerts_send_due, digests_send_due
from notices.models import AttentionAlert, DigestRun, NoticeSettings
from notices.scan import notices_scan
from notices.tests.conftest import at_local, consenting_patient, move, order_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic():
    clinic = ClinicFactory(name="Bloom Wellness — Denver", timezone="America/Denver")
    MembershipFactory(clinic=clinic, user=UserFactory(username="coord", email="coord@bloom.example"))
    MembershipFactory(clinic=clinic, user=UserFactory(username="boss", email="boss@bloom.example"),
                      role=Membership.Role.CLINIC_ADMIN)
    MembershipFactory(clinic=ClinicFactory(), user=UserFactory(username="elsewhere", email="other@clinic.example"))
    return clinic


def test_rejections_and_holds_of_one_order_make_one_email(clinic):
    patients = [consenting_patient(clinic.organization, first_name=f"P{i}") for i in range(4)]
    order = order_for(clinic, patients)
    lines = list(order.lines.order_by("pk"))
    move(lines, "sent")
    move(lines[:2], "rejected")
    move(lines[2:3], "on_hold")
    noon = at_local(clinic, 12)
    notices_scan(now=noon)
    assert alerts_send_due(now=noon) == 0  # batching window
    move(lines[3:], "cancelled")  # moments later: joins the same alert
    notices_scan(now=noon + datetime.timedelta(seconds=30))
    assert alerts_send_due(now=noon + datetime.timedelta(minutes=2)) == 1

    (email,) = mail.outbox
    assert sorted(email.to) == ["boss@bloom.example", "coord@bloom.example"]
    assert email.subject == f"Bloom Wellness — Denver: order {order.number} needs your attention (4 lines)"
    assert "2 rejected by the pharmacy" in email.body and "1 put on hold" in email.body and "1 cancelled" in email.body
    assert "/orders/attention" in email.body
    for patient in patients:  # no patient names in an email
        assert patient.first_name not in email.body and patient.last_name not in email.body
    assert alerts_send_due(now=noon + datetime.timedelta(minutes=5)) == 0

    # A later hold of another line is a new email.
    more = order_for(clinic, [patients[0]])
    move(more.lines.all(), "sent", "on_hold")
    notices_scan(now=noon + datetime.timedelta(hours=1))
    assert alerts_send_due(now=noon + datetime.timedelta(hours=1, minutes=2)) == 1
    assert AttentionAlert.objects.filter(status="sent").count() == 2


def test_a_rejected_line_fizy_sent_elsewhere_is_said_so(clinic):
    from fulfillment.tests.factories import OrderLineFactory, PartnerOrderFactory

    patients = [consenting_patient(clinic.organization, first_name=f"P{i}") for i in range(2)]
    order = order_for(clinic, patients)
    lines = list(order.lines.order_by("pk"))
    move(lines, "sent")
    move(lines, "rejected")
    # Fizy rerouted the first (fulfillment.reroute): a new line at another pharmacy replaces it.
    OrderLineFactory(partner_order=PartnerOrderFactory(order=order, is_reroute=True), patient=lines[0].patient,
                     rerouted_from=lines[0])
    noon = at_local(clinic, 12)
    notices_scan(now=noon)
    alerts_send_due(now=noon + datetime.timedelta(minutes=5))
    (email,) = mail.outbox
    assert "1 rejected by the pharmacy, 1 rejected by the pharmacy and sent to another one by Fizy" in email.body


def test_the_digest_goes_once_a_day_at_the_clinics_hour(clinic):
    NoticeSettings.objects.create(clinic=clinic, digest_hour=7)
    order = order_for(clinic, [consenting_patient(clinic.organization) for _ in range(3)])
    lines = list(order.lines.order_by("pk"))
    move(lines, "sent")
    move(lines[:1], "rejected")
    move(lines[1:2], "on_hold")

    assert digests_send_due(now=at_local(clinic, 6, 59)) == 0
    assert digests_send_due(now=at_local(clinic, 7, 0)) == 1
    assert digests_send_due(now=at_local(clinic, 7, 1)) == 0  # once a day
    (email,) = [m for m in mail.outbox if "digest" in m.subject or "need" in m.subject]
    assert email.subject == "Bloom Wellness — Denver: 2 lines need attention"
    assert "1 rejected by the pharmacy, 1 put on hold" in email.body and order.number in email.body
    assert sorted(email.to) == ["boss@bloom.example", "coord@bloom.example"]
    assert DigestRun.objects.get(clinic=clinic).items == 2
    assert digests_send_due(now=at_local(clinic, 7, 0, days=1)) == 1  # the next day


def test_the_digest_names_lines_with_no_news_past_their_expected_time(clinic):
    NoticeSettings.objects.create(clinic=clinic, digest_hour=7)
    order = order_for(clinic, [consenting_patient(clinic.organization) for _ in range(3)])
    lines = list(order.lines.order_by("pk"))
    move(lines, "sent")
    move(lines, "accepted")
    seven = at_local(clinic, 7, 0)
    # Accepted six days before the digest: shipped was expected within 5 days (the default).
    OrderLine.objects.filter(pk=lines[0].pk).update(status_changed_at=seven - datetime.timedelta(days=6))
    OrderLine.objects.filter(pk__in=[line.pk for line in lines[1:]]).update(
        status_changed_at=seven - datetime.timedelta(days=2))

    assert digests_send_due(now=seven) == 1
    (email,) = mail.outbox
    assert email.subject == "Bloom Wellness — Denver: 1 line needs attention"
    assert "1 line of 1 order still needs attention: 1 overdue (no news from the pharmacy for longer than " \
           "expected)." in email.body and order.number in email.body
    assert DigestRun.objects.get(clinic=clinic).items == 1


def test_a_day_with_nothing_open_sends_no_digest(clinic):
    assert digests_send_due(now=at_local(clinic, 9)) == 0
    assert mail.outbox == [] and DigestRun.objects.get(clinic=clinic).items == 0
