import hashlib

import pytest
from django.urls import reverse

from clinic_api.keys import api_key_create
from clinic_api.models import ApiKey, Scope
from clinics.models import AuditEntry
from conftest import verified_login

from .conftest import api_client

pytestmark = pytest.mark.django_db


def test_a_clinic_admin_creates_a_key_that_is_shown_once_and_stored_hashed(client, clinic_admin_a, clinic_a):
    verified_login(client, clinic_admin_a)
    response = client.post(reverse("clinic_api:key-create"), {"name": "EHR sync", "scopes": ["cart:write", "orders:read"]},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    page = response.content.decode()
    key = ApiKey.objects.get(clinic=clinic_a)
    token = page.split('id="new-key-token">')[1].split("<")[0]
    assert token.startswith(f"fz_{key.prefix}_") and len(token) > 40
    assert key.hashed == hashlib.sha256(token.encode()).hexdigest() and token not in str(ApiKey.objects.values().get())
    assert key.scopes == ["cart:write", "orders:read"]
    # Listed afterwards, never shown again.
    listing = client.get(reverse("clinic_api:settings")).content.decode()
    assert "EHR sync" in listing and token not in listing and f"fz_{key.prefix}_" in listing
    assert AuditEntry.objects.filter(action="api_key.create", clinic=clinic_a, actor=clinic_admin_a).exists()


def test_a_key_needs_a_name_and_a_scope(client, clinic_admin_a):
    verified_login(client, clinic_admin_a)
    response = client.post(reverse("clinic_api:key-create"), {"name": ""}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and "Choose at least one scope" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_coordinators_cannot_see_or_manage_keys(client_alice, key_a):
    assert client_alice.get(reverse("clinic_api:settings")).status_code == 403
    assert client_alice.post(reverse("clinic_api:key-create"), {"name": "x", "scopes": ["cart:write"]}).status_code == 403
    assert client_alice.post(reverse("clinic_api:key-revoke", args=[key_a[0].pk])).status_code == 403
    assert ApiKey.objects.get().revoked_at is None


def test_a_revoked_key_gets_401(client, clinic_admin_a, key_a):
    key, token = key_a
    assert api_client(token).get("/api/v1/cart").status_code == 200
    verified_login(client, clinic_admin_a)
    response = client.post(reverse("clinic_api:key-revoke", args=[key.pk]), HTTP_HX_REQUEST="true")
    assert "revoked" in response.content.decode()
    answer = api_client(token).get("/api/v1/cart")
    assert answer.status_code == 401
    assert answer.json()["code"] == "invalid_api_key" and answer["WWW-Authenticate"].startswith("Bearer")


def test_no_key_or_a_made_up_key_gets_401(db):
    assert api_client(None).get("/api/v1/cart").json()["code"] == "not_authenticated"
    assert api_client("fz_00000000_nope").get("/api/v1/cart").status_code == 401
    assert api_client(None).get("/api/v1/cart").status_code == 401


def test_another_clinics_admin_cannot_revoke_the_key(client, clinic_b, key_a):
    from clinics.models import Membership
    from clinics.tests.factories import MembershipFactory, UserFactory

    admin_b = MembershipFactory(user=UserFactory(username="bert"), clinic=clinic_b, role=Membership.Role.CLINIC_ADMIN).user
    verified_login(client, admin_b)
    assert client.post(reverse("clinic_api:key-revoke", args=[key_a[0].pk])).status_code == 404
    assert ApiKey.objects.get().revoked_at is None


def test_a_key_without_the_scope_gets_403(clinic_a, clinic_admin_a, catalog_world):
    token = api_key_create(clinic=clinic_a, name="Reader", scopes=[Scope.ORDERS_READ], actor=clinic_admin_a).token
    answer = api_client(token).post("/api/v1/cart/lines", {"lines": []}, format="json")
    assert answer.status_code == 403
    assert answer.json()["code"] == "scope_missing" and "cart:write" in answer.json()["message"]
    assert api_client(token).get("/api/v1/orders").status_code == 200


def test_requests_per_key_are_limited(settings, api, key_a):
    from django.core.cache import cache

    cache.clear()
    settings.CLINIC_API_RATE = "3/min"
    assert [api.get("/api/v1/cart").status_code for _ in range(4)] == [200, 200, 200, 429]
    answer = api.get("/api/v1/cart")
    assert answer.json()["code"] == "rate_limited" and int(answer["Retry-After"]) > 0
    cache.clear()


def test_the_api_ignores_the_browser_session_and_its_second_factor(client, clinic_admin_a, key_a):
    """A clinic admin's browser, logged in but before the second factor, calling the API with a
    key (e.g. from the docs page): the key decides, the session's second-factor step does not."""
    client.force_login(clinic_admin_a)
    assert client.get(reverse("clinic_api:settings")).status_code == 302  # pages wait for the second factor
    answer = client.get("/api/v1/cart", HTTP_AUTHORIZATION=f"Bearer {key_a[1]}")
    assert answer.status_code == 200 and answer.json()["lines"] == 0
    assert client.get("/api/v1/cart").status_code == 401  # the session alone is no credential
