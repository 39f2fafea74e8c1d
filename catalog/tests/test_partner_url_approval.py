"""A partner's order API URL (where patients' data and the Bearer key go) changes only when a
second integrations staff member approves (issue 14)."""

import pytest
from django.urls import reverse

from catalog.models import Partner
from catalog.tests.factories import PartnerFactory
from clinics.models import Approval, AuditEntry
from clinics.roles import FINANCE, INTEGRATIONS
from conftest import verified_login
from fizy.tests.admin_forms import admin_form_data

pytestmark = pytest.mark.django_db
APPROVALS = reverse("admin:clinics_approval_changelist")
OLD, NEW = "https://pharmacy.example/api", "https://elsewhere.example/api"


def request_change(client, partner, url=NEW, **changes):
    change = reverse("admin:catalog_partner_change", args=[partner.pk])
    form = admin_form_data(client.get(change).content.decode(), "partner_form", api_base_url=url, **changes)
    return client.post(change, form, follow=True)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_a_partner_url_change_waits_for_a_second_approver(client, make_staff):
    partner = PartnerFactory(api_base_url=OLD)
    ira, iris = make_staff("ira", INTEGRATIONS), make_staff("iris", INTEGRATIONS)
    verified_login(client, ira)
    response = request_change(client, partner, support_email="ops@pharmacy.example")
    assert any("waits for a second integrations staff member" in m for m in messages_of(response))
    partner.refresh_from_db()
    assert partner.api_base_url == OLD and partner.support_email == "ops@pharmacy.example"  # the rest is saved
    approval = Approval.objects.get()
    assert (approval.kind, approval.status, approval.requested_by) == ("partner.api_url", "pending", ira)
    assert OLD in approval.summary and NEW in approval.summary
    assert any("already waits" in m for m in messages_of(request_change(client, partner, "https://third.example/")))

    decide = {"action": "approve", "_selected_action": [approval.pk]}
    response = client.post(APPROVALS, decide, follow=True)
    assert any("another staff member must approve" in m for m in messages_of(response))
    verified_login(client, make_staff("fran", FINANCE))  # another staff member, but not of the role
    client.post(APPROVALS, decide)
    assert Partner.objects.get(pk=partner.pk).api_base_url == OLD
    assert Approval.objects.get().status == "pending"

    verified_login(client, iris)
    response = client.post(APPROVALS, decide, follow=True)
    assert any(f"order API URL is now {NEW}" in m for m in messages_of(response))
    assert Partner.objects.get(pk=partner.pk).api_base_url == NEW
    assert partner.history.latest().history_user == iris  # the partner's History says who applied it
    approval.refresh_from_db()
    assert (approval.status, approval.decided_by) == ("approved", iris)
    audit = AuditEntry.objects.get(action="partner.api_url_changed")
    assert (audit.actor, audit.detail["from"], audit.detail["to"], audit.detail["requested_by"]) == (iris, OLD, NEW, ira.pk)
    assert AuditEntry.objects.filter(action="approval.requested", actor=ira).count() == 1


def test_a_declined_url_change_changes_nothing(client, make_staff):
    partner = PartnerFactory(api_base_url=OLD)
    verified_login(client, make_staff("ira", INTEGRATIONS))
    request_change(client, partner)
    verified_login(client, make_staff("iris", INTEGRATIONS))
    client.post(APPROVALS, {"action": "decline", "_selected_action": [Approval.objects.get().pk]})
    assert Approval.objects.get().status == "declined"
    assert Partner.objects.get(pk=partner.pk).api_base_url == OLD


def test_a_new_partners_first_url_waits_for_a_second_approver_too(client, make_staff):
    verified_login(client, make_staff("ira", INTEGRATIONS))
    add = reverse("admin:catalog_partner_add")
    form = admin_form_data(client.get(add).content.decode(), "partner_form", name="New Pharmacy", slug="new-pharmacy",
                           api_base_url=NEW, poll_minutes="15")
    response = client.post(add, form, follow=True)
    assert any("until then the partner has no order API URL and is sent no order" in m for m in messages_of(response))
    partner = Partner.objects.get(slug="new-pharmacy")
    assert partner.api_base_url == ""  # routing passes it by until then (routing/tests/test_engine.py)
    approval = Approval.objects.get()
    assert (approval.kind, approval.status, approval.payload["api_base_url"]) == ("partner.api_url", "pending", NEW)

    verified_login(client, make_staff("iris", INTEGRATIONS))
    client.post(APPROVALS, {"action": "approve", "_selected_action": [approval.pk]})
    assert Partner.objects.get(pk=partner.pk).api_base_url == NEW
