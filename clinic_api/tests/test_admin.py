import pytest
from django.urls import reverse

from clinic_api.models import WebhookDelivery
from clinic_api.webhooks import subscription_create
from clinics.tests.factories import UserFactory
from conftest import verified_login

pytestmark = pytest.mark.django_db


def test_staff_see_keys_webhooks_and_deliveries_without_their_secrets(client, key_a, clinic_a):
    sub = subscription_create(clinic=clinic_a, url="https://ehr.example/hook", events=["order.settled"])
    delivery = WebhookDelivery.objects.create(subscription=sub, clinic=clinic_a, event_type="order.settled",
                                              message_id="msg_1", source="order_settled:1")
    verified_login(client, UserFactory(username="root", is_staff=True, is_superuser=True))
    key, token = key_a
    for model, obj in (("apikey", key), ("webhooksubscription", sub), ("webhookdelivery", delivery)):
        listing = client.get(reverse(f"admin:clinic_api_{model}_changelist"))
        page = client.get(reverse(f"admin:clinic_api_{model}_change", args=[obj.pk]))
        assert listing.status_code == page.status_code == 200
        for secret in (token, key.hashed, sub.secret):
            assert secret not in listing.content.decode() + page.content.decode()
