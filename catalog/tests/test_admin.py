"""The partner page: credentials are write-only (never shown after saving, blank keeps them)."""

import pytest
from django.urls import reverse

from catalog.models import Partner
from catalog.tests.factories import PartnerFactory
from fizy.lib.webhook_signing import generate_secret

pytestmark = pytest.mark.django_db


def form_data(partner, **changes):
    data = {
        "name": partner.name, "slug": partner.slug, "active": "on", "legitscript_id": partner.legitscript_id,
        "support_email": "", "support_phone": "", "api_base_url": partner.api_base_url,
        "new_api_key": "", "new_webhook_secret": "", "new_webhook_secret_next": "",
        "sends_webhooks": "on", "poll_minutes": "15",
        "state_licenses-TOTAL_FORMS": "0", "state_licenses-INITIAL_FORMS": "0",
        "offerings-TOTAL_FORMS": "0", "offerings-INITIAL_FORMS": "0",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not False}


def test_credentials_are_write_only_and_blank_keeps_them(client_charlie):
    partner = PartnerFactory(api_key="sk-live-partner-key")
    secret = partner.webhook_secret
    url = reverse("admin:catalog_partner_change", args=[partner.pk])
    page = client_charlie.get(url).content.decode()
    assert "sk-live-partner-key" not in page and secret not in page
    assert 'name="new_api_key"' in page and "API key: set" in page

    response = client_charlie.post(url, form_data(partner, support_email="help@partner.example"))
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    partner.refresh_from_db()
    assert (partner.api_key, partner.webhook_secret, partner.support_email) == ("sk-live-partner-key", secret, "help@partner.example")

    new_next = generate_secret()
    client_charlie.post(url, form_data(partner, new_api_key="sk-rotated", new_webhook_secret_next=new_next))
    partner.refresh_from_db()
    assert (partner.api_key, partner.webhook_secret, partner.webhook_secret_next) == ("sk-rotated", secret, new_next)
    assert partner.api_key_changed_at and partner.webhook_secret_next_changed_at and not partner.webhook_secret_changed_at
    page = client_charlie.get(url).content.decode()
    assert "sk-rotated" not in page and new_next not in page

    client_charlie.post(url, form_data(partner, promote_next_secret="on"))
    partner.refresh_from_db()
    assert (partner.webhook_secret, partner.webhook_secret_next) == (new_next, "")


def test_a_webhook_secret_must_be_a_standard_webhooks_secret(client_charlie):
    partner = PartnerFactory()
    url = reverse("admin:catalog_partner_change", args=[partner.pk])
    response = client_charlie.post(url, form_data(partner, new_webhook_secret="password123"))
    assert response.status_code == 200
    assert "whsec_" in str(response.context["adminform"].form.errors["new_webhook_secret"])
    response = client_charlie.post(url, form_data(partner, promote_next_secret="on"))
    assert "no next secret" in str(response.context["adminform"].form.errors)
    assert Partner.objects.get(pk=partner.pk).webhook_secret == partner.webhook_secret
