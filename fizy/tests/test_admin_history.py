"""Every admin save of the configuration (partners, products, offerings, routing rules, memberships,
organizations' fees) shows who changed what, before → after, on the object's History page; the
partner's secrets are never there (issue 14)."""

import re
from html import unescape

import pytest
from django.urls import reverse

from catalog.models import Partner
from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory
from clinics.models import Membership
from clinics.roles import FINANCE, INTEGRATIONS, USER_ADMIN
from conftest import verified_login
from fizy.tests.admin_forms import admin_form_data
from routing.tests.factories import RoutingRuleFactory

pytestmark = pytest.mark.django_db


def admin_url(obj, view):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_{view}", args=[obj.pk])


def save_in_admin(client, obj, **changes):
    page = client.get(admin_url(obj, "change")).content.decode()
    form = admin_form_data(page, f"{obj._meta.model_name}_form", **changes)
    response = client.post(admin_url(obj, "change"), form)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    return response


def history_text(client, obj) -> str:
    page = client.get(admin_url(obj, "history")).content.decode()
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", page)))


CASES = {
    "partner": (INTEGRATIONS, lambda a, b: PartnerFactory(), {"support_email": "ops@pharmacy.example"},
                "support email: → ops@pharmacy.example"),
    "product": (INTEGRATIONS, lambda a, b: ProductFactory(max_quantity_per_line=10), {"max_quantity_per_line": "4"},
                "max quantity per line: 10 → 4"),
    "offering": (INTEGRATIONS, lambda a, b: OfferingFactory(unit_price="10.00"), {"unit_price": "12.50"},
                 "unit price: 10.00 → 12.50"),
    "routingrule": (INTEGRATIONS, lambda a, b: RoutingRuleFactory(priority=100), {"priority": "5"}, "priority: 100 → 5"),
    "membership": (USER_ADMIN, lambda clinic, alice: Membership.objects.get(user=alice), {"role": "clinic_admin"},
                   "role: coordinator → clinic_admin"),
    "organization": (FINANCE, lambda clinic, alice: clinic.organization, {"platform_fee_percent": "3.00"},
                     "platform fee (% of drug cost): 0.00 → 3.00"),
}


@pytest.mark.parametrize("name", CASES)
def test_an_admin_save_shows_before_and_after_in_the_history(name, client, make_staff, clinic_a, alice):
    role, make, changes, shown = CASES[name]
    obj = make(clinic_a, alice)
    staff = make_staff("editor", role)
    verified_login(client, staff)
    save_in_admin(client, obj, **changes)
    text = history_text(client, obj)
    assert shown.lower() in text.lower(), text[-1500:]
    assert "Changed" in text and "editor" in text
    record = obj.history.latest()
    assert (record.history_type, record.history_user) == ("~", staff)


def test_partner_secrets_never_reach_the_history(client, make_staff):
    partner = PartnerFactory(api_key="sk-first-key")
    verified_login(client, make_staff("editor", INTEGRATIONS))
    save_in_admin(client, partner, new_api_key="sk-rotated-in-admin", support_email="a@b.example")
    text = history_text(client, partner)
    assert "replaced: api_key" in text  # that it was replaced is recorded, never the value
    for secret in ["sk-first-key", "sk-rotated-in-admin", partner.webhook_secret]:
        assert secret not in text
    history_model = Partner.history.model
    assert not {"api_key", "webhook_secret", "webhook_secret_next"} & {f.name for f in history_model._meta.fields}
    assert Partner.objects.get(pk=partner.pk).api_key == "sk-rotated-in-admin"


def test_the_history_is_a_record_not_an_undo_button(client, make_staff):
    partner = PartnerFactory(api_base_url="https://pharmacy.example/api")
    verified_login(client, make_staff("editor", INTEGRATIONS))
    save_in_admin(client, partner, support_email="a@b.example")
    first = partner.history.earliest()
    page = client.get(reverse("admin:catalog_partner_simple_history", args=[partner.pk, first.history_id]))
    assert 'name="_save"' not in page.content.decode()
