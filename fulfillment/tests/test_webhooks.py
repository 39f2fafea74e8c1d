import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.tests.factories import PartnerFactory
from fulfillment.models import LineEvent, OrderLine, WebhookEvent
from fulfillment.tests.conftest import event_body, post_event
from fulfillment.tests.factories import order_with_lines

pytestmark = pytest.mark.django_db
S = OrderLine.Status
W = WebhookEvent.Outcome


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
    assert stored.headers["x-fizy-signature"].startswith("sha256=") and json.loads(stored.body)["line_id"] == sent_line.pk


def test_shipped_records_tracking(client, sent_line, partner):
    post_event(client, partner, event_body(sent_line, "shipped", tracking_number="9400111", carrier="USPS"))
    sent_line.refresh_from_db()
    assert (sent_line.status, sent_line.tracking_number, sent_line.carrier) == (S.SHIPPED, "9400111", "USPS")


@pytest.mark.parametrize("how", ["bad signature", "other secret", "no signature", "stale", "future", "no timestamp"])
def test_bad_signature_or_timestamp_is_refused_and_stored(client, sent_line, partner, how):
    body = event_body(sent_line, "accepted")
    kwargs = {
        "bad signature": {"signature": "sha256=" + "0" * 64},
        "other secret": {"secret": "not-the-secret"},
        "no signature": {"signature": ""},
        "stale": {"timestamp": int(time.time()) - 301},
        "future": {"timestamp": int(time.time()) + 301},
        "no timestamp": {"timestamp": "x"},
    }[how]
    response = post_event(client, partner, body, **kwargs)
    assert response.status_code == 401 and response.json()["error"]
    sent_line.refresh_from_db()
    assert sent_line.status == S.SENT and not LineEvent.objects.exists()
    stored = WebhookEvent.objects.get()
    assert stored.outcome == W.UNAUTHORIZED and stored.error and json.loads(stored.body) == body


def test_a_signature_over_another_body_is_refused(client, sent_line, partner):
    signed = json.dumps(event_body(sent_line, "accepted")).encode()
    from fulfillment.webhooks import webhook_headers

    headers = webhook_headers(secret=partner.webhook_secret, body=signed)
    tampered = json.dumps(event_body(sent_line, "rejected")).encode()
    response = client.post(f"/api/partners/{partner.slug}/events", data=tampered, content_type="application/json",
                           headers={k: v for k, v in headers.items() if k != "Content-Type"})
    assert response.status_code == 401


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


def test_unknown_partner_is_404_and_stored(client):
    response = client.post("/api/partners/nobody/events", data=b"{}", content_type="application/json")
    assert response.status_code == 404
    assert WebhookEvent.objects.get().partner_slug == "nobody"


@pytest.mark.parametrize(("raw", "field"), [
    (b"not json", None),
    (b"\xff\xfe", None),
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
        assert response.status_code in (200, 400, 404, 409), response.content
        response.json()
        seen.add(response.status_code)

    throw()
    assert 400 in seen and WebhookEvent.objects.count() >= 1000
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
