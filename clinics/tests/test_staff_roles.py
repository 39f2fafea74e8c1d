"""Fizy staff roles, walked through the admin as each role's user would (issue 14): every role
looks, each changes only what its work needs — refused by the server, not only by hidden buttons."""

from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse

from catalog.models import Partner
from catalog.tests.factories import PartnerFactory
from clinics.models import AuditEntry, Membership, Organization
from clinics.roles import DISPATCH, FINANCE, INTEGRATIONS, ROLES, SUPPORT, USER_ADMIN
from clinics.tests.factories import UserFactory
from conftest import verified_login
from fulfillment.tests.factories import order_with_lines
from fizy.tests.admin_forms import admin_form_data

pytestmark = pytest.mark.django_db

OUR_APPS = {"clinics", "catalog", "routing", "carts", "fulfillment", "notices"}


@pytest.fixture
def as_role(client, make_staff):
    """``as_role(FINANCE)``: the test client, logged in as a new staff user of that one role
    (``client.staff_user``)."""

    def login(role, username=None):
        client.staff_user = make_staff(username or role.group.lower().replace(" ", ""), role)
        verified_login(client, client.staff_user)
        return client

    return login


def change_url(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def test_the_roles_are_groups_made_by_the_migration():
    assert set(Group.objects.values_list("name", flat=True)) >= {role.group for role in ROLES}
    assert not Group.objects.filter(name="Pharmacy operations").exists()
    support = Group.objects.get(name=SUPPORT.group).permissions.values_list("codename", flat=True)
    assert support and all(codename.startswith("view_") for codename in support)
    assert "view_partner" in support and "view_orderline" in support and "view_auditentry" in support


def test_support_sees_every_page_and_changes_nothing(as_role, clinic_a, alice):
    client = as_role(SUPPORT)
    order = order_with_lines(clinic=clinic_a)
    partner = Partner.objects.first()
    for model in admin.site._registry:
        if model._meta.app_label in OUR_APPS:
            prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
            assert client.get(reverse(f"{prefix}_changelist")).status_code == 200, prefix
    page = client.get(change_url(partner)).content.decode()
    assert 'name="_save"' not in page and 'name="api_base_url"' not in page

    for obj in [partner, clinic_a, clinic_a.organization, Membership.objects.get(user=alice), order]:
        assert client.post(change_url(obj), {"name": "Changed"}).status_code == 403, obj
    assert client.post(reverse("admin:clinics_membership_add"), {}).status_code == 403
    assert client.post(reverse("admin:catalog_partner_add"), {}).status_code == 403
    line = order.lines.first()
    client.post(reverse("admin:fulfillment_orderline_changelist"),
                {"action": "set_line_status", "_selected_action": [line.pk], "apply": "1", "to": "cancelled", "reason": "x"})
    line.refresh_from_db()
    assert line.status != "cancelled"
    assert Partner.objects.get(pk=partner.pk).name == partner.name


def test_only_a_user_admin_adds_a_membership(as_role, clinic_a):
    newcomer = UserFactory(username="newcomer")
    data = {"user": newcomer.pk, "clinic": clinic_a.pk, "role": Membership.Role.CLINIC_ADMIN}
    for role in [SUPPORT, DISPATCH, FINANCE, INTEGRATIONS]:
        client = as_role(role)
        assert client.post(reverse("admin:clinics_membership_add"), data).status_code == 403, role
        assert client.get(reverse("admin:clinics_membership_add")).status_code == 403, role
    assert not Membership.objects.filter(user=newcomer).exists()

    client = as_role(USER_ADMIN)
    response = client.post(reverse("admin:clinics_membership_add"), data)
    assert response.status_code == 302
    assert Membership.objects.get(user=newcomer).role == Membership.Role.CLINIC_ADMIN


def test_only_integrations_sees_the_partner_credential_fields_and_never_the_secret(as_role):
    partner = PartnerFactory(api_key="sk-live-partner-key")
    secret = partner.webhook_secret
    for role in ROLES:
        client = as_role(role)
        page = client.get(change_url(partner)).content.decode()
        assert "sk-live-partner-key" not in page and secret not in page, role
        sees = 'name="new_api_key"' in page and "API key: set" in page
        assert sees == (role is INTEGRATIONS), role
        assert ('name="api_base_url"' in page) == (role is INTEGRATIONS), role


def test_only_integrations_changes_a_partner(as_role):
    partner = PartnerFactory()
    client = as_role(INTEGRATIONS)
    form = admin_form_data(client.get(change_url(partner)).content.decode(), "partner_form",
                           support_email="help@partner.example")
    for role in [SUPPORT, DISPATCH, FINANCE, USER_ADMIN]:
        client = as_role(role)
        assert client.post(change_url(partner), form).status_code == 403, role
    assert Partner.objects.get(pk=partner.pk).support_email == ""
    client = as_role(INTEGRATIONS, "integrations-b")
    assert client.post(change_url(partner), form).status_code == 302
    assert Partner.objects.get(pk=partner.pk).support_email == "help@partner.example"


def test_only_finance_sets_a_platform_fee(as_role, clinic_a):
    org = clinic_a.organization
    client = as_role(FINANCE)
    form = admin_form_data(client.get(change_url(org)).content.decode(), "organization_form",
                           platform_fee_percent="2.50", platform_fee_fixed="5.00")
    assert client.post(change_url(org), form).status_code == 302
    org.refresh_from_db()
    assert (org.platform_fee_percent, org.platform_fee_fixed) == (Decimal("2.50"), Decimal("5.00"))

    client = as_role(USER_ADMIN)
    page = client.get(change_url(org)).content.decode()
    assert 'name="platform_fee_percent"' not in page  # shown, not editable
    form = admin_form_data(page, "organization_form", name="Renamed", platform_fee_percent="0", platform_fee_fixed="0")
    assert client.post(change_url(org), form).status_code == 302
    org.refresh_from_db()
    assert (org.name, org.platform_fee_percent, org.platform_fee_fixed) == ("Renamed", Decimal("2.50"), Decimal("5.00"))
    for role in [SUPPORT, DISPATCH, INTEGRATIONS]:
        client = as_role(role)
        assert client.post(change_url(org), form).status_code == 403, role


def test_a_user_admin_gives_roles_but_never_superuser(as_role):
    staff = UserFactory(username="newstaff")
    client = as_role(USER_ADMIN)
    admin_user = client.staff_user
    page = client.get(change_url(staff)).content.decode()
    assert 'name="is_superuser"' not in page and 'name="user_permissions"' not in page
    finance = Group.objects.get(name=FINANCE.group)
    form = admin_form_data(page, "user_form", is_staff="on", is_superuser="on", groups=[str(finance.pk)])
    assert client.post(change_url(staff), form).status_code == 302
    staff.refresh_from_db()
    assert staff.is_staff and not staff.is_superuser and list(staff.groups.all()) == [finance]
    audit = AuditEntry.objects.get(action="staff.access_changed", object_id=str(staff.pk))
    assert audit.actor == admin_user and audit.detail["roles"] == {"from": [], "to": ["Finance"]}
    assert audit.detail["is_staff"] == {"from": False, "to": True}

    form = admin_form_data(client.get(change_url(admin_user)).content.decode(), "user_form", is_superuser="on")
    client.post(change_url(admin_user), form)
    admin_user.refresh_from_db()
    assert not admin_user.is_superuser
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    assert client.post(change_url(root), {"username": "root", "is_active": ""}).status_code == 403

    for role in [SUPPORT, DISPATCH, FINANCE, INTEGRATIONS]:
        client = as_role(role)
        assert client.post(change_url(staff), form).status_code == 403, role


def test_only_dispatch_sets_a_line_status(as_role, clinic_a):
    line = order_with_lines(clinic=clinic_a).lines.first()
    before = line.status
    post = {"action": "set_line_status", "_selected_action": [line.pk], "apply": "1", "to": "cancelled",
            "reason": "Clinic called"}
    for role in [SUPPORT, FINANCE, INTEGRATIONS, USER_ADMIN]:
        client = as_role(role)
        client.post(reverse("admin:fulfillment_orderline_changelist"), post)
        line.refresh_from_db()
        assert line.status == before, role
    client = as_role(DISPATCH)
    client.post(reverse("admin:fulfillment_orderline_changelist"), post)
    line.refresh_from_db()
    assert line.status == "cancelled"
