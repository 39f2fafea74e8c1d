import json
import re

import pytest
import responses as responses_lib
from django.test import Client
from django.utils import timezone

from fulfillment.webhooks import legacy_webhook_headers, webhook_headers

FIZY = "http://fizy.test"


@pytest.fixture
def rsps():
    """Fake partners with ``responses``: nothing leaves the machine."""
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def route_to_django(rsps):
    """Send every ``requests`` call to http://fizy.test/... into this Django project (the sandbox
    partner's order API and our webhook endpoint), through the real HTTP client code."""
    client = Client()

    def handle(request):
        path = request.url[len(FIZY):]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "content-type", "host")}
        response = client.generic(
            request.method, path, data=request.body or b"", content_type=request.headers.get("Content-Type", ""),
            headers=headers,
        )
        return response.status_code, {"Content-Type": response.get("Content-Type", "")}, response.content

    for method in (responses_lib.POST, responses_lib.GET):
        rsps.add_callback(method, re.compile(re.escape(FIZY) + r"/.*"), callback=handle)
    return FIZY


@pytest.fixture
def settle_calls(monkeypatch):
    """Observe payment settlement without depending on the gateway: records order ids."""
    from fulfillment import settlement

    calls = []
    monkeypatch.setattr(settlement, "order_settle_payment", lambda *, order_id: calls.append(order_id))
    return calls


def event_body(line, status, *, event_id=None, **fields) -> dict:
    body = {
        "event_id": event_id or f"evt-{line.pk}-{status}",
        "occurred_at": timezone.now().isoformat(),
        "line_id": line.pk,
        "status": status,
    }
    if status in ("rejected", "on_hold", "cancelled"):
        body.update(reason=f"{status} for a test", reason_code="other")
    if status == "shipped":
        body.update(tracking_number="1ZTEST0001", carrier="UPS")
    body.update(fields)
    return body


def post_event(client, partner, body, *, timestamp=None, secret=None, raw: bytes | None = None, signature=None,
               legacy=False, slug=None, **extra):
    """POST ``body`` (or ``raw`` bytes) signed as ``partner`` would: Standard Webhooks, or the
    X-Fizy-* scheme with ``legacy=True``. ``signature`` replaces the signature header's value."""
    data = raw if raw is not None else json.dumps(body).encode()
    if legacy:
        headers = legacy_webhook_headers(secret=secret or partner.webhook_secret, body=data, timestamp=timestamp)
        if signature is not None:
            headers["X-Fizy-Signature"] = signature
    else:
        # Standard Webhooks signs text: a body that is not UTF-8 can only be signed as its decoded
        # (replaced) text, which is what a sender would have done, and is never verified.
        text = data.decode("utf-8", "replace").encode()
        headers = webhook_headers(secret=secret or partner.webhook_secret, body=text, timestamp=timestamp)
        if signature is not None:
            headers["webhook-signature"] = signature
    headers.pop("Content-Type")
    return client.post(f"/api/partners/{slug or partner.slug}/events", data=data, content_type="application/json",
                       headers=headers, **extra)
