import base64
import datetime
import json
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django.utils import timezone

from catalog.models import Partner
from catalog.tests.factories import PartnerFactory
from fizy.lib import webhook_signing
from fulfillment.models import LineEvent, OrderLine, RefusedWebhookRequest, WebhookEvent
from fulfillment.tests.conftest import event_body, post_event
from fulfillment.webhooks import UNVERIFIED, webhook_headers
from fulfillment.tests.factories import order_with_lines

pytestmark = pytest.mark.django_db
S = OrderLine.Status
W = WebhookEvent.Outcome
R = RefusedWebhookRequest.Check


@pytest.fixture
def sent_line():
    order = order_with_lines(lines_per_partner=1)
    OrderLine.objects.filter(order=order).update(status=S.SENT)
    return order.lines.select_related("partner_order__partner").get()


@pytest.fixture
def partner(sent_line):
    return sent_line.partner_order.partner


def test_good_signature_is_applied(client, sent_line, partner):
    response = post_event(client, partner, event_body(sent_line, "accepted", event_id="e-1"))
    assert response.status_code == 200
    assert response.json() == {"status": "applied", "event_id": "e-1", "line_status": "accepted"}
    sent_line.refresh_from_db()
    assert sent_line.status == S.ACCEPTED
    event = LineEvent.objects.get(line=sent_line)
    assert (event.source, event.actor_label, event.applied) == ("webhook", partner.name, True)
    stored = WebhookEvent.objects.get()
    assert (stored.partner, stored.event_id, stored.outcome) == (partner, "e-1", W.APPLIED)
    assert stored.headers["webhook-signature"].startswith("v1,") and json.loads(stored.body)["line_id"] == sent_line.pk
    assert not RefusedWebhookRequest.objects.exists()


def test_shipped_records_tracking(client, sent_line, partner):
    post_event(client, partner, event_body(sent_line, "shipped", tracking_number="9400111", carrier="USPS"))
    sent_line.refresh_from_db()
    assert (sent_line.status, sent_line.tracking_number, sent_line.carrier) == (S.SHIPPED, "9400111", "USPS")


@pytest.mark.parametrize("how", ["bad signature", "other secret", "no signature", "malformed signature", "stale",
                                 "future", "no timestamp", "not utf-8"])
def test_bad_signature_or_timestamp_is_refused_and_only_its_metadata_kept(client, sent_line, partner, how):
    body = event_body(sent_line, "accepted")
    kwargs = {
        "bad signature": {"signature": "v1," + base64.b64encode(b"0" * 32).decode()},
        "other secret": {"secret": "whsec_" + base64.b64encode(b"not-the-secret-at-all-32-bytes!!").decode()},
        "no signature": {"signature": ""},
        "malformed signature": {"signature": "v1,abc,def v2"},
        "stale": {"timestamp": int(time.time()) - 400},
        "future": {"timestamp": int(time.time()) + 400},
        "no timestamp": {"timestamp": "x"},
        "not utf-8": {"raw": b'{"event_id": "\xff"}'},
    }[how]
    if how == "no timestamp":
        response = client.post(f"/api/partners/{partner.slug}/events", data=json.dumps(body), content_type="application/json",
                               headers={"webhook-id": "m1", "webhook-signature": "v1,xyz"})
    else:
        response = post_event(client, partner, body, **kwargs)
    assert response.status_code == 401 and response.json() == UNVERIFIED
    sent_line.refresh_from_db()
    assert sent_line.status == S.SENT and not LineEvent.objects.exists()
    assert not WebhookEvent.objects.exists()  # nothing unverified is stored whole
    refused = RefusedWebhookRequest.objects.get()
    raw = kwargs.get("raw") or json.dumps(body).encode()
    assert (refused.partner, refused.partner_slug, refused.failed_check) == (partner, partner.slug, R.SIGNATURE)
    assert refused.size == len(raw) and refused.source_address == "127.0.0.1" and refused.detail
    assert refused.body_prefix == raw.decode("utf-8", "replace")


def test_a_signature_over_another_body_is_refused(client, sent_line, partner):
    signed = json.dumps(event_body(sent_line, "accepted")).encode()
    headers = webhook_headers(secret=partner.webhook_secret, body=signed)
    tampered = json.dumps(event_body(sent_line, "rejected")).encode()
    response = client.post(f"/api/partners/{partner.slug}/events", data=tampered, content_type="application/json",
                           headers={k: v for k, v in headers.items() if k != "Content-Type"})
    assert response.status_code == 401
    assert RefusedWebhookRequest.objects.get().failed_check == R.SIGNATURE


def test_unknown_and_known_slugs_get_the_same_401(client, sent_line, partner):
    body = event_body(sent_line, "accepted")
    unknown_signed = post_event(client, partner, body, slug="nobody")  # a real signature, the wrong slug
    unknown_unsigned = client.post("/api/partners/nobody-else/events", data=b"{}", content_type="application/json")
    known_bad = post_event(client, partner, body, signature="v1,AAAA")
    known_unsigned = client.post(f"/api/partners/{partner.slug}/events", data=b"{}", content_type="application/json")
    answers = [(r.status_code, r.content, r.get("Content-Type")) for r in (unknown_signed, unknown_unsigned, known_bad, known_unsigned)]
    assert len(set(answers)) == 1 and answers[0][0] == 401
    assert list(RefusedWebhookRequest.objects.order_by("id").values_list("partner_slug", "failed_check")) == [
        ("nobody", R.UNKNOWN_PARTNER), ("nobody-else", R.UNKNOWN_PARTNER),
        (partner.slug, R.SIGNATURE), (partner.slug, R.SIGNATURE),
    ]
    assert not WebhookEvent.objects.exists()


def test_a_partner_without_a_secret_refuses_everything(client, sent_line, partner):
    secret = partner.webhook_secret
    Partner.objects.filter(pk=partner.pk).update(webhook_secret="")
    response = post_event(client, partner, event_body(sent_line, "accepted"), secret=secret)
    assert response.status_code == 401 and response.json() == UNVERIFIED
    assert RefusedWebhookRequest.objects.get().failed_check == R.NO_SECRET


@pytest.mark.parametrize("slug", ["known", "unknown"])
def test_a_body_over_64_kb_is_refused_with_413_before_being_read(client, sent_line, partner, slug):
    body = event_body(sent_line, "accepted", reason="x" * 100_000)
    raw = json.dumps(body).encode()
    response = post_event(client, partner, body, slug=partner.slug if slug == "known" else "nobody")  # signed
    assert response.status_code == 413 and "65536" in response.json()["error"]
    sent_line.refresh_from_db()
    assert sent_line.status == S.SENT and not WebhookEvent.objects.exists()
    refused = RefusedWebhookRequest.objects.get()
    assert (refused.failed_check, refused.size, refused.body_prefix) == (R.TOO_LARGE, len(raw), "")


def test_a_body_of_exactly_64_kb_is_read(client, sent_line, partner):
    body = event_body(sent_line, "accepted", event_id="big")
    body["event_id"] = "big"
    padding = 64 * 1024 - len(json.dumps({**body, "pad": ""}).encode())
    raw = json.dumps({**body, "pad": " " * padding}).encode()
    assert len(raw) == 64 * 1024
    assert post_event(client, partner, None, raw=raw).json()["status"] == "applied"
    assert post_event(client, partner, None, raw=raw + b" ").status_code == 413


def test_a_refused_request_keeps_at_most_1_kb_of_its_body(client, partner):
    raw = ("é" * 30_000).encode()  # 60,000 bytes, unsigned
    response = client.post(f"/api/partners/{partner.slug}/events", data=raw, content_type="application/json")
    assert response.status_code == 401
    refused = RefusedWebhookRequest.objects.get()
    assert refused.size == 60_000 and refused.body_prefix == "é" * 512 and len(refused.body_prefix.encode()) == 1024


def test_during_a_rotation_events_signed_with_either_secret_are_applied(client, sent_line, partner):
    old, new = partner.webhook_secret, webhook_signing.generate_secret()
    partner.set_credential("webhook_secret_next", new)
    partner.save()
    assert post_event(client, partner, event_body(sent_line, "accepted"), secret=new).json()["status"] == "applied"
    assert post_event(client, partner, event_body(sent_line, "compounding"), secret=old).json()["status"] == "applied"
    both = post_event(client, partner, event_body(sent_line, "shipped"), secret=[old, new])  # the partner signs with both
    assert both.json()["status"] == "applied"
    # The rotation ends: the next secret becomes the current one; the old one is refused from then on.
    partner.set_credential("webhook_secret", new)
    partner.set_credential("webhook_secret_next", "")
    partner.save()
    assert post_event(client, partner, event_body(sent_line, "delivered"), secret=old).status_code == 401
    assert post_event(client, partner, event_body(sent_line, "delivered"), secret=new).json()["status"] == "applied"
    sent_line.refresh_from_db()
    assert sent_line.status == S.DELIVERED


def test_the_sandbox_partner_signs_with_both_secrets_during_a_rotation(sent_line, partner, rsps):
    from fulfillment.sandbox import sandbox_send_event

    partner.set_credential("webhook_secret_next", webhook_signing.generate_secret())
    partner.save()
    rsps.post(re.compile(r".*/api/partners/.*"), json={"status": "applied"})
    sandbox_send_event(partner=partner, event=event_body(sent_line, "accepted"))
    sent = rsps.calls[0].request
    signatures = sent.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for secret in (partner.webhook_secret, partner.webhook_secret_next):
        assert webhook_signing.verify(secrets_=[secret], body=sent.body, headers=sent.headers) == (0, "")


def test_the_old_x_fizy_scheme_is_accepted_until_its_end_date(client, sent_line, partner, settings):
    today = timezone.localdate()
    settings.WEBHOOK_LEGACY_SIGNATURES_UNTIL = today
    assert post_event(client, partner, event_body(sent_line, "accepted"), legacy=True).json()["status"] == "applied"
    assert post_event(client, partner, event_body(sent_line, "compounding"), legacy=True,
                      signature="sha256=" + "0" * 64).status_code == 401
    settings.WEBHOOK_LEGACY_SIGNATURES_UNTIL = today - datetime.timedelta(days=1)
    closed = post_event(client, partner, event_body(sent_line, "compounding"), legacy=True)
    assert closed.status_code == 401 and closed.json() == UNVERIFIED
    assert list(RefusedWebhookRequest.objects.order_by("id").values_list("failed_check", flat=True)) == [
        R.SIGNATURE, R.LEGACY_CLOSED]
    settings.WEBHOOK_LEGACY_SIGNATURES_UNTIL = None
    assert post_event(client, partner, event_body(sent_line, "compounding"), legacy=True).status_code == 401
    sent_line.refresh_from_db()
    assert sent_line.status == S.ACCEPTED


def test_refused_requests_are_purged_after_the_retention_days(settings):
    from django_q.models import Schedule

    from fulfillment.tasks import purge_refused_webhook_requests

    settings.WEBHOOK_REFUSED_RETENTION_DAYS = 14
    now = timezone.now()
    for days in (20, 15, 13, 0):
        RefusedWebhookRequest.objects.create(partner_slug=f"d{days}", size=1, failed_check=R.SIGNATURE,
                                             received_at=now - datetime.timedelta(days=days))
    assert purge_refused_webhook_requests() == 2
    assert sorted(RefusedWebhookRequest.objects.values_list("partner_slug", flat=True)) == ["d0", "d13"]
    schedule = Schedule.objects.get(func="fulfillment.tasks.purge_refused_webhook_requests")
    assert schedule.schedule_type == Schedule.DAILY and schedule.repeats == -1


def test_a_replay_is_acknowledged_and_applied_once(client, sent_line, partner):
    body = event_body(sent_line, "accepted", event_id="e-same")
    assert post_event(client, partner, body).status_code == 200
    again = post_event(client, partner, body)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert LineEvent.objects.filter(line=sent_line).count() == 1
    assert list(WebhookEvent.objects.order_by("id").values_list("outcome", flat=True)) == [W.APPLIED, W.DUPLICATE]


def test_out_of_order_events_never_move_a_line_back(client, sent_line, partner):
    for status in ["shipped", "accepted", "compounding", "delivered", "shipped"]:
        assert post_event(client, partner, event_body(sent_line, status, event_id=f"e-{status}-{time.time()}")).status_code == 200
    sent_line.refresh_from_db()
    assert sent_line.status == S.DELIVERED
    assert [(e.to_status, e.applied) for e in sent_line.events.all()] == [
        ("shipped", True), ("accepted", False), ("compounding", False), ("delivered", True), ("shipped", False),
    ]
    assert WebhookEvent.objects.filter(outcome=W.IGNORED).count() == 3


def test_an_event_for_a_line_not_sent_yet_asks_the_partner_to_retry(client, sent_line, partner):
    OrderLine.objects.filter(pk=sent_line.pk).update(status=S.PENDING)
    response = post_event(client, partner, event_body(sent_line, "accepted"))
    assert response.status_code == 409
    OrderLine.objects.filter(pk=sent_line.pk).update(status=S.SENT)
    assert post_event(client, partner, event_body(sent_line, "accepted")).json()["status"] == "applied"


def test_unknown_line_or_another_partners_line_is_404(client, sent_line, partner):
    other = PartnerFactory()
    assert post_event(client, partner, {**event_body(sent_line, "accepted"), "line_id": 10**9}).status_code == 404
    assert post_event(client, other, event_body(sent_line, "accepted")).status_code == 404
    assert set(WebhookEvent.objects.values_list("outcome", flat=True)) == {W.UNKNOWN_LINE}
    sent_line.refresh_from_db()
    assert sent_line.status == S.SENT


@pytest.mark.parametrize(("raw", "field"), [
    (b"not json", None),
    (b"[1, 2]", None),
    (b"{}", "event_id"),
    (json.dumps({"event_id": "x", "occurred_at": "2025-01-01T00:00:00Z", "line_id": 1, "status": "teleported"}).encode(), "status"),
    (json.dumps({"event_id": "x", "occurred_at": "2025-01-01T00:00:00Z", "line_id": "one", "status": "accepted"}).encode(), "line_id"),
    (json.dumps({"event_id": "x", "occurred_at": "yesterday", "line_id": 1, "status": "accepted"}).encode(), "occurred_at"),
    (json.dumps({"event_id": "x", "occurred_at": "2025-01-01T00:00:00Z", "line_id": 1, "status": "rejected"}).encode(), "reason"),
    (json.dumps({"event_id": "x", "occurred_at": "2025-01-01T00:00:00Z", "line_id": 1, "status": "shipped"}).encode(), "tracking_number"),
    (json.dumps({"event_id": "x\u0000", "occurred_at": "2025-01-01T00:00:00Z", "line_id": 1, "status": "accepted"}).encode(), "event_id"),
])
def test_malformed_bodies_get_400_with_a_clear_error(client, partner, raw, field):
    response = post_event(client, partner, None, raw=raw)
    assert response.status_code == 400
    data = response.json()
    assert data["error"]
    if field:
        assert field in data["fields"]
    assert WebhookEvent.objects.get().outcome == W.INVALID


def test_a_body_that_is_not_utf_8_is_400_under_the_old_scheme(client, partner, settings):
    settings.WEBHOOK_LEGACY_SIGNATURES_UNTIL = timezone.localdate()
    response = post_event(client, partner, None, raw=b"\xff\xfe", legacy=True)
    assert response.status_code == 400 and "JSON" in response.json()["error"]
    assert WebhookEvent.objects.get().outcome == W.INVALID


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


@st.composite
def event_like(draw, line_id):
    """Bodies shaped like an event, with each field valid, missing or junk."""
    valid = {
        "event_id": st.text(min_size=1, max_size=12),
        "occurred_at": st.sampled_from(["2025-01-01T00:00:00Z", "2025-06-01T12:00:00+02:00", "9999-12-31T23:59:59-23:59"]),
        "line_id": st.sampled_from([line_id, 0, -1, 2**63, 10**30]),
        "status": st.sampled_from([s for s in S.values] + ["", "ACCEPTED"]),
        "reason": st.text(max_size=5),
        "tracking_number": st.text(max_size=5),
        "carrier": st.text(max_size=5),
    }
    body = {}
    for key, strategy in valid.items():
        choice = draw(st.sampled_from(["valid", "valid", "missing", "junk"]))
        if choice == "valid":
            body[key] = draw(strategy)
        elif choice == "junk":
            body[key] = draw(json_values)
    return body


def _bodies(line_id):
    return st.one_of(
        st.binary(max_size=64),
        json_values.map(lambda v: json.dumps(v).encode()),
        event_like(line_id).map(lambda v: json.dumps(v).encode()),
        event_like(line_id).map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    )


@pytest.mark.django_db
def test_random_bodies_never_cause_a_500(client, sent_line, partner):
    seen = set()

    @settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(raw=_bodies(sent_line.pk))
    def throw(raw):
        response = post_event(client, partner, None, raw=raw)
        # 401: a body that is not UTF-8 cannot be verified (Standard Webhooks signs text).
        assert response.status_code in (200, 400, 401, 404, 409), response.content
        response.json()
        seen.add(response.status_code)

    throw()
    assert 400 in seen and WebhookEvent.objects.count() + RefusedWebhookRequest.objects.count() >= 1000
    assert not WebhookEvent.objects.filter(outcome=W.RECEIVED).exists()  # every request got an outcome


@pytest.mark.parametrize("lines", [2, 20])
def test_an_event_costs_a_fixed_number_of_queries_whatever_the_order_size(
    client, django_assert_max_num_queries, settle_calls, lines
):
    order = order_with_lines(lines_per_partner=lines)
    OrderLine.objects.filter(order=order).update(status=S.SENT)
    line = order.lines.select_related("partner_order__partner").order_by("pk").first()
    partner = line.partner_order.partner
    accepted = event_body(line, "accepted", event_id="q-accepted")
    # Partner, store the request; then in one transaction: lock the line, claim the event id,
    # LineEvent, line. A line's first final answer also locks the order and looks for open lines.
    with django_assert_max_num_queries(10):
        assert post_event(client, partner, accepted).json()["status"] == "applied"
    with django_assert_max_num_queries(8):
        assert post_event(client, partner, event_body(line, "compounding")).json()["status"] == "applied"
    # The claim fails and nothing is written to the line (7 in production: inside the test's own
    # transaction the rollback is ROLLBACK TO SAVEPOINT + RELEASE SAVEPOINT).
    with django_assert_max_num_queries(8):
        assert post_event(client, partner, accepted).json()["status"] == "duplicate"
    with django_assert_max_num_queries(8):  # refused: the claim is turned into "ignored"
        assert post_event(client, partner, event_body(line, "accepted", event_id="q-late")).json()["status"] == "ignored"
    assert settle_calls == []
    assert [(e.to_status, e.applied) for e in line.events.all()] == [("accepted", True), ("compounding", True), ("accepted", False)]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_last_two_lines_answered_at_once_request_settlement_once(settle_calls, monkeypatch):
    import threading

    from django.db import connection
    from django.test import Client

    from fulfillment import status
    from fizy.tests.concurrency import run_threads

    # Both requests answer their line, then wait for each other before the settlement check:
    # each transaction still sees the other's line as open unless the check is serialised.
    check = status.order_request_settlement_if_answered
    both_answered = threading.Barrier(2, timeout=20)

    def side_by_side(*, order_id):
        both_answered.wait()
        return check(order_id=order_id)

    monkeypatch.setattr(status, "order_request_settlement_if_answered", side_by_side)
    for _ in range(3):
        order = order_with_lines(lines_per_partner=2)
        OrderLine.objects.filter(order=order).update(status=S.SENT)
        lines = list(order.lines.select_related("partner_order__partner").order_by("pk"))

        def answer(line, status):
            def run():
                response = post_event(Client(), line.partner_order.partner, event_body(line, status))
                assert response.json()["status"] == "applied"
                connection.close()
            return run

        assert run_threads(answer(lines[0], "accepted"), answer(lines[1], "rejected")) == []
        order.refresh_from_db()
        assert order.settlement_requested_at is not None
    assert len(settle_calls) == 3 and len(set(settle_calls)) == 3
