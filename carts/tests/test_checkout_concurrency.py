"""A double (or tenfold) submit yields one authorization and one order (PostgreSQL row locks)."""

import pytest
from django.test import Client
from django.urls import reverse

from fizy.tests.concurrency import run_threads
from fulfillment.models import Order, PaymentEvent
from carts.tests.checkout_form import place_order_data

SUBMITS = 10


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_place_order_requests_make_one_charge_and_one_order(alice, ready_cart, monkeypatch):
    from fizy.lib import payments

    authorizations = []
    real_authorize = payments.SandboxGateway.authorize

    def counting_authorize(self, **kwargs):
        authorizations.append(kwargs["idempotency_key"])
        return real_authorize(self, **kwargs)

    monkeypatch.setattr(payments.SandboxGateway, "authorize", counting_authorize)
    reviewer = Client()
    reviewer.force_login(alice)
    form = place_order_data(reviewer)
    assert form["version"] == str(ready_cart["cart"].version)
    statuses = []

    def submit():
        client = Client()
        client.force_login(alice)
        statuses.append(client.post(reverse("carts:checkout"), form).status_code)

    assert run_threads(*[submit] * SUBMITS) == []
    assert len(statuses) == SUBMITS
    assert statuses.count(302) == 1  # the one that placed the order is sent to its status page
    assert len(authorizations) == 1
    assert Order.objects.count() == 1
    assert PaymentEvent.objects.filter(kind="authorized").count() == 1
