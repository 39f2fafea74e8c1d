"""Reroute (issue 12, item 4): a rejected line goes to the next eligible pharmacy as a new line in
a partner order of its own, automatically for the pharmacy's own problems, in one click otherwise;
never back to a pharmacy that refused it; the clinic sees why and where it went."""

from decimal import Decimal

import pytest
from django.test import Client

from catalog.tests.factories import OfferingFactory, PartnerFactory
from clinics.models import AuditEntry
from fulfillment.models import AttentionItem, LineEvent, OrderLine, PartnerOrder
from fulfillment.reroute import RerouteError, line_reroute
from fulfillment.status import line_apply_status
from fulfillment.tests.factories import order_with_lines

pytestmark = pytest.mark.django_db
S = OrderLine.Status


@pytest.fixture
def rejected(clinic_a):
    """Clinic A's line rejected by Harbor; Cedar (dearer) and Bayside (cheaper) also carry it."""
    harbor = PartnerFactory(name="Harbor", states=["TX"])
    order = order_with_lines(clinic=clinic_a, partners=[harbor], lines_per_partner=1)
    line = order.lines.get()
    OrderLine.objects.filter(pk=line.pk).update(status=S.SENT)
    OfferingFactory(partner=harbor, product=line.product)
    cedar = OfferingFactory(partner=PartnerFactory(name="Cedar", states=["TX"]), product=line.product,
                            unit_price=Decimal("90.00")).partner
    bayside = OfferingFactory(partner=PartnerFactory(name="Bayside", states=["TX"]), product=line.product,
                              unit_price=Decimal("95.00")).partner
    line.refresh_from_db()
    return {"line": line, "order": order, "harbor": harbor, "cedar": cedar, "bayside": bayside}


def test_one_click_reroute_sends_it_to_the_next_eligible_partner_and_says_why(client_alice, alice, rejected,
                                                                               django_capture_on_commit_callbacks):
    line, order = rejected["line"], rejected["order"]
    line_apply_status(line=line, to=S.REJECTED, source="webhook", reason="Cannot read the SIG.", reason_code="sig_unclear")
    assert not OrderLine.objects.filter(rerouted_from=line).exists()  # not the pharmacy's problem: no automatic reroute
    with django_capture_on_commit_callbacks() as queued:
        response = client_alice.post(f"/orders/{order.pk}/lines/{line.pk}/reroute", {"back": "attention"})
    assert response.status_code == 302 and response.url == "/orders/attention"
    new = OrderLine.objects.get(rerouted_from=line)
    assert new.partner_order.partner == rejected["cedar"] and new.status == S.PENDING and len(queued) == 1
    assert (new.patient_id, new.product_id, new.quantity, new.sig) == (line.patient_id, line.product_id, line.quantity, line.sig)
    assert new.unit_price == Decimal("90.00") and new.landed_cost == Decimal("190.00")
    item = AttentionItem.objects.get(line=line)
    assert item.resolution == AttentionItem.Resolution.REROUTED and item.resolved_by == alice
    event = LineEvent.objects.get(line=new)
    assert event.source == LineEvent.Source.CLINIC and "sent to Cedar instead" in event.reason
    assert AuditEntry.objects.filter(action="order_line.rerouted", object_id=str(new.pk), actor=alice).exists()
    page = client_alice.get(f"/orders/{order.pk}").content.decode()
    assert f'id="rerouted-from-{new.pk}"' in page and "Rerouted from Harbor (directions (sig) unclear)" in page
    assert f'id="rerouted-to-{line.pk}"' in page and "Sent to Cedar instead" in page
    page = client_alice.get("/orders/attention?tab=resolved").content.decode()
    assert "Sent to another pharmacy" in page and "to Cedar" in page
    # A second click changes nothing.
    with pytest.raises(RerouteError, match="only a line a pharmacy rejected|already"):
        line_reroute(line_id=line.pk, actor=alice)
    assert OrderLine.objects.filter(rerouted_from=line).count() == 1


def test_partner_side_rejection_is_rerouted_automatically_never_back_to_who_refused(rejected, client_alice,
                                                                                    django_capture_on_commit_callbacks):
    line = rejected["line"]
    with django_capture_on_commit_callbacks(execute=True):
        line_apply_status(line=line, to=S.REJECTED, source="webhook", reason="None left.", reason_code="out_of_stock")
    first = OrderLine.objects.get(rerouted_from=line)
    assert first.partner_order.partner == rejected["cedar"]
    assert LineEvent.objects.get(line=first).source == LineEvent.Source.SYSTEM
    assert AttentionItem.objects.get(line=line).resolution == AttentionItem.Resolution.REROUTED
    page = client_alice.get("/orders/attention?tab=resolved").content.decode()  # the coordinator is told
    assert "Automatically: Harbor rejected it (out of stock at the pharmacy); sent to Cedar instead" in page
    assert "Sent to another pharmacy" in page
    OrderLine.objects.filter(pk=first.pk).update(status=S.SENT)
    first.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        line_apply_status(line=first, to=S.REJECTED, source="webhook", reason="Full.", reason_code="capacity")
    second = OrderLine.objects.get(rerouted_from=first)
    assert second.partner_order.partner == rejected["bayside"]  # not Harbor, though cheaper
    OrderLine.objects.filter(pk=second.pk).update(status=S.SENT)
    second.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        line_apply_status(line=second, to=S.REJECTED, source="webhook", reason="Cannot.", reason_code="cannot_compound")
    assert not OrderLine.objects.filter(rerouted_from=second).exists()
    item = AttentionItem.objects.get(line=second)
    assert item.is_open and "could not send it to another pharmacy" in item.resolution_note
    assert "Fizy could not send it to another pharmacy" in client_alice.get("/orders/attention").content.decode()
    assert PartnerOrder.objects.filter(order=rejected["order"]).count() == 3


def test_another_clinic_gets_404_on_reroute(rejected, bob):
    line = rejected["line"]
    line_apply_status(line=line, to=S.REJECTED, source="webhook", reason="x", reason_code="other")
    client = Client()
    client.force_login(bob)
    assert client.post(f"/orders/{line.order_id}/lines/{line.pk}/reroute").status_code == 404
    assert not OrderLine.objects.filter(rerouted_from=line).exists()


def test_the_new_line_takes_a_fill_of_the_same_prescription_the_rejected_one_gave_back(rejected, alice):
    from prescriptions.models import Fill, Prescription
    from prescriptions.tests.factories import PrescriptionFactory

    line = rejected["line"]
    rx = PrescriptionFactory(clinic=line.order.clinic, patient=line.patient, product=line.product,
                             prescriber=line.prescriber, refills_authorized=0, fills_remaining=0,
                             status=Prescription.Status.EXHAUSTED)
    OrderLine.objects.filter(pk=line.pk).update(prescription=rx)
    Fill.objects.create(prescription=rx, status=Fill.Status.USED, order_line_id=line.pk)
    line.refresh_from_db()
    line_apply_status(line=line, to=S.REJECTED, source="webhook", reason="x", reason_code="other")
    rx.refresh_from_db()
    assert rx.fills_remaining == 1  # given back

    new = line_reroute(line_id=line.pk, actor=alice)

    rx.refresh_from_db()
    assert new.prescription_id == rx.pk and rx.fills_remaining == 0
    assert Fill.objects.get(order_line_id=new.pk).status == Fill.Status.USED


def test_no_fill_left_means_no_reroute_and_says_what_to_do(rejected, alice):
    from prescriptions.models import Prescription
    from prescriptions.tests.factories import PrescriptionFactory

    line = rejected["line"]
    rx = PrescriptionFactory(clinic=line.order.clinic, patient=line.patient, product=line.product,
                             prescriber=line.prescriber, status=Prescription.Status.CANCELLED)
    OrderLine.objects.filter(pk=line.pk).update(prescription=rx)
    line.refresh_from_db()
    line_apply_status(line=line, to=S.REJECTED, source="webhook", reason="x", reason_code="other")
    with pytest.raises(RerouteError, match="record a new prescription"):
        line_reroute(line_id=line.pk, actor=alice)
    assert not OrderLine.objects.filter(rerouted_from=line).exists()
    assert AttentionItem.objects.get(line=line).is_open
