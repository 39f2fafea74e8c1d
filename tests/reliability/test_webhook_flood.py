"""Scenario: anyone on the internet posts large bodies to partner webhook URLs, known slugs and
guessed ones, without a valid signature. The database must barely grow: a refused request keeps
its metadata and at most 1 KB of its body; a body over 64 KB is not read at all."""

import base64
import json
import os

import pytest
from django.db import connection

from catalog.tests.factories import PartnerFactory
from fulfillment.models import RefusedWebhookRequest, WebhookEvent
from fulfillment.webhooks import webhook_headers

POSTS = 1000


def database_bytes() -> int:
    """Every table of the schema with its indexes and TOAST, as PostgreSQL stores them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        )
        return int(cursor.fetchone()[0])


def random_text(size: int) -> bytes:
    """Incompressible (so TOAST cannot hide it), and valid UTF-8 JSON-ish text."""
    return json.dumps({"event_id": "x", "junk": base64.b64encode(os.urandom(size)).decode()}).encode()[:size]


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize(("size", "status", "budget"), [
    (100_000, 413, 2_000_000),  # the attack: refused unread
    (60_000, 401, 2_000_000),   # under the size limit: read, refused, 1 KB kept of each
])
def test_a_thousand_unauthenticated_posts_barely_grow_the_database(client, size, status, budget):
    partner = PartnerFactory()
    body = random_text(size)
    assert len(body) == size
    before = database_bytes()
    for i in range(POSTS):
        slug = partner.slug if i % 2 else f"guessed-{i}"
        response = client.post(f"/api/partners/{slug}/events", data=body, content_type="application/json",
                               headers={"webhook-id": f"m{i}", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"})
        assert response.status_code == status
    grown = database_bytes() - before
    print(f"\n{POSTS} unauthenticated {size // 1000} KB posts ({status}): the database grew by {grown:,} bytes")
    assert grown < budget
    assert RefusedWebhookRequest.objects.count() == POSTS and not WebhookEvent.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_signed_100_kb_body_is_refused_with_413(client):
    partner = PartnerFactory()
    body = random_text(100_000)
    headers = webhook_headers(secret=partner.webhook_secret, body=body)
    response = client.post(f"/api/partners/{partner.slug}/events", data=body, content_type="application/json",
                           headers={k: v for k, v in headers.items() if k != "Content-Type"})
    assert response.status_code == 413
    assert RefusedWebhookRequest.objects.get().failed_check == RefusedWebhookRequest.Check.TOO_LARGE
