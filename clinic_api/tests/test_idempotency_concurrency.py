"""The same request sent twice at the same moment with one Idempotency-Key (a client that retries
before the first answer came) adds its lines once, and both get the same answer (PostgreSQL)."""

import pytest

from carts.models import CartLine
from fizy.tests.concurrency import run_threads

from .conftest import api_client, line_body

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_simultaneous_requests_with_one_key_add_once(key_a, catalog_world):
    body = {"lines": [line_body(catalog_world, quantity=2)]}
    answers = []

    def send():
        answers.append(api_client(key_a[1]).post("/api/v1/cart/lines", body, format="json",
                                                 HTTP_IDEMPOTENCY_KEY="same-moment"))

    assert run_threads(send, send, send) == []
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert CartLine.objects.get().quantity == 2
