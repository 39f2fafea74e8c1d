"""Scenario 4: partner webhooks replayed, reordered, re-sent with the same id and a different
body, and signed at the edges of the rules (Standard Webhooks, and the older X-Fizy-* scheme
during its transition window). Never a 500; every verified request is stored as a WebhookEvent,
every refused one as metadata (RefusedWebhookRequest); an event id is applied at most once; and
the line ends at the furthest status of the happy path it was told about, whatever the delivery
order.

(The 1,000 random bodies of fulfillment/tests/test_webhooks.py cover malformed input; this file
is about well-formed events delivered the way real networks deliver them.)"""

import datetime
import itertools
import json
import time

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from fizy.tests.concurrency import run_threads
from fulfillment import webhooks
from fizy.lib import webhook_signing
from fulfillment.models import LineEvent, OrderLine, RefusedWebhookRequest, WebhookEvent
from fulfillment.tests.factories import order_with_lines
from fulfillment.webhooks import webhook_headers, webhook_signature

S = OrderLine.Status
W = WebhookEvent.Outcome
HAPPY = ["accepted", "compounding", "shipped", "delivered"]
RANK = {"sent": 0, **{status: i + 1 for i, status in enumerate(HAPPY)}}
_unique = itertools.count()
FUZZ = settings_(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def fresh_sent_line():
    order = order_with_lines(lines_per_partner=1)
    OrderLine.objects.filter(order=order).update(status=S.SENT)
    return order.lines.select_related("partner_order__partner").get()


def body_for(line, status, event_id):
    body = {"event_id": event_id, "occurred_at": timezone.now().isoformat(), "line_id": line.pk, "status": status}
    if status == "rejected":
        body.update(reason="Prescriber license could not be verified", reason_code="license_unverified")
    if status == "shipped":
        body.update(tracking_number=f"1Z{event_id[-6:]}", carrier="UPS")
    return json.dumps(body).encode()


def deliver(client, partner, raw, *, headers=None):
    """POST ``raw`` signed the Standard Webhooks way with the partner's secret (or with ``headers``)."""
    if headers is None:
        headers = {k: v for k, v in webhook_headers(secret=partner.webhook_secret, body=raw).items() if k != "Content-Type"}
    response = client.post(f"/api/partners/{partner.slug}/events", data=raw, content_type="application/json",
                           headers=headers)
    assert response.status_code != 500
    return response


def legacy_deliver(client, partner, raw, *, timestamp, signature):
    return deliver(client, partner, raw, headers={"X-Fizy-Timestamp": timestamp, "X-Fizy-Signature": signature})


def received():
    return WebhookEvent.objects.count() + RefusedWebhookRequest.objects.count()


def stored_for(line):
    return WebhookEvent.objects.filter(body__contains=f'"line_id": {line.pk},')


@pytest.mark.django_db
def test_any_delivery_order_with_replays_ends_at_the_furthest_status(client):
    @FUZZ
    @given(data=st.data())
    def check(data):
        line = fresh_sent_line()
        partner = line.partner_order.partner
        told = data.draw(st.lists(st.sampled_from(HAPPY), min_size=1, max_size=4, unique=True), label="statuses")
        copies = [data.draw(st.integers(1, 2), label=f"copies of {s}") for s in told]
        deliveries = data.draw(st.permutations([s for s, n in zip(told, copies) for _ in range(n)]), label="order")
        prefix = f"evt-{next(_unique)}"
        for status in deliveries:
            response = deliver(client, partner, body_for(line, status, f"{prefix}-{status}"))
            assert response.status_code == 200 and response.json()["status"] in ("applied", "duplicate", "ignored")

        line.refresh_from_db()
        assert line.status == max(told, key=RANK.get)
        stored = stored_for(line)
        assert stored.count() == len(deliveries)
        applied = list(stored.filter(outcome=W.APPLIED).values_list("event_id", flat=True))
        assert len(applied) == len(set(applied))  # each event id applied at most once
        moves = [e.to_status for e in line.events.filter(applied=True).order_by("pk")]
        assert len(moves) == len(applied)
        assert [RANK[m] for m in moves] == sorted({RANK[m] for m in moves})  # never a step backwards
        # A replay of an applied event is "duplicate"; a late, older event is "ignored".
        assert stored.filter(outcome=W.DUPLICATE).count() == sum(
            deliveries.count(s) - 1 for s in set(deliveries) if f"{prefix}-{s}" in applied)

    check()


def model(deliveries):
    """What the protocol promises for a sequence of (event id, status): the outcome of each
    delivery and the line's final status. Happy-path steps may skip forward; "rejected" only
    from "sent"; nothing moves back; an id already applied is a duplicate whatever its body, and
    so is a new id reporting the status the line already has (applied once)."""
    status, applied_ids, outcomes = "sent", set(), []
    for event_id, to in deliveries:
        if event_id in applied_ids or to == status:
            outcomes.append("duplicate")
            continue
        legal = (to == "rejected" and status == "sent") or (
            to in HAPPY and status in RANK and RANK[to] > RANK[status])
        if legal:
            status = to
            applied_ids.add(event_id)
            outcomes.append("applied")
        else:
            outcomes.append("ignored")
    return outcomes, status


@pytest.mark.django_db
def test_reused_event_ids_with_different_bodies_are_applied_once(client):
    @FUZZ
    @given(deliveries=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(HAPPY + ["rejected"])),
                               min_size=2, max_size=7))
    def check(deliveries):
        line = fresh_sent_line()
        partner = line.partner_order.partner
        prefix = f"dup-{next(_unique)}"
        got = [deliver(client, partner, body_for(line, to, f"{prefix}-{eid}")).json()["status"]
               for eid, to in deliveries]
        expected, final = model(deliveries)
        assert got == expected
        line.refresh_from_db()
        assert line.status == final
        assert stored_for(line).count() == len(deliveries)
        assert line.events.filter(applied=True).count() == expected.count("applied")

    check()


NOW = 1_750_000_000


class FrozenClock:
    @staticmethod
    def time():
        return float(NOW)


TIMESTAMP_FORMS = {
    # name: (how the header is written from the Unix seconds, whether the protocol accepts it)
    "plain": (lambda ts: str(ts), True),
    "padded with spaces": (lambda ts: f"  {ts} ", True),
    "milliseconds": (lambda ts: str(ts * 1000), False),
    "decimal": (lambda ts: f"{ts}.0", False),
    "signed": (lambda ts: f"+{ts}", False),
    "arabic-indic digits": (lambda ts: str(ts).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")), False),
    "empty": (lambda ts: "", False),
    "iso date": (lambda ts: "2025-06-15T12:00:00Z", False),
}


def signature_forms(secret, other_secret, ts, raw):
    good = webhook_signature(secret=secret, timestamp=ts.strip(), body=raw)
    hexdigest = good.removeprefix("sha256=")
    return {
        "good": (good, True),
        "bare hex": (hexdigest, True),  # the prefix is optional on our side
        "padded": (f"  {good}  ", True),
        "upper-case hex": ("sha256=" + hexdigest.upper(), False),
        "truncated": (good[:-2], False),
        "other partner's secret": (webhook_signature(secret=other_secret, timestamp=ts.strip(), body=raw), False),
        "over another timestamp": (webhook_signature(secret=secret, timestamp=str(NOW - 1), body=raw), False),
        "over the body plus a newline": (webhook_signature(secret=secret, timestamp=ts.strip(), body=raw + b"\n"), False),
        "two signatures": (f"{good},sha256={'0' * 64}", False),
        "non-ascii": ("sha256=" + "é" * 64, False),
        "empty": ("", False),
    }


@pytest.mark.django_db
def test_legacy_signature_and_timestamp_edges_are_judged_by_the_protocol(client, monkeypatch, settings):
    settings.WEBHOOK_LEGACY_SIGNATURES_UNTIL = datetime.date(2100, 1, 1)  # the transition window is open
    monkeypatch.setattr(webhooks, "time", FrozenClock)
    line = fresh_sent_line()
    partner = line.partner_order.partner
    seen = set()

    @settings_(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(offset=st.one_of(st.integers(-400, 400), st.sampled_from([-301, -300, 300, 301, 0])),
           ts_form=st.sampled_from(sorted(TIMESTAMP_FORMS)),
           sig_form=st.sampled_from(sorted(signature_forms("s", "o", "1", b"").keys())))
    def check(offset, ts_form, sig_form):
        write_ts, ts_ok = TIMESTAMP_FORMS[ts_form]
        ts = write_ts(NOW + offset)
        raw = body_for(line, "accepted", f"sig-{next(_unique)}")
        signature, sig_ok = signature_forms(partner.webhook_secret, "whsec-someone-else", ts, raw)[sig_form]
        if ts_form == "plain" and sig_form == "over another timestamp" and offset == -1:
            sig_ok = True  # it is this very timestamp
        events_before = LineEvent.objects.count()
        received_before = received()

        response = legacy_deliver(client, partner, raw, timestamp=ts, signature=signature)

        should_pass = ts_ok and sig_ok and abs(offset) <= 300
        assert response.status_code == (200 if should_pass else 401), (ts, signature, response.content)
        assert received() == received_before + 1
        if not should_pass:
            refused = RefusedWebhookRequest.objects.order_by("-id").first()
            assert refused.failed_check == RefusedWebhookRequest.Check.SIGNATURE and response.json()["error"]
            assert LineEvent.objects.count() == events_before
        else:
            assert WebhookEvent.objects.order_by("-id").first().outcome in (W.APPLIED, W.IGNORED, W.DUPLICATE)
        seen.add(response.status_code)

    check()
    assert seen == {200, 401}
    line.refresh_from_db()
    assert line.status == S.ACCEPTED
    assert not WebhookEvent.objects.filter(outcome=W.RECEIVED).exists()


def standard_forms(secret, other, raw, ts):
    """Ways a Standard Webhooks request can be signed: (headers, whether the protocol accepts them)."""
    good = webhook_signing.sign_headers(secrets_=[secret], body=raw, msg_id="msg_1", timestamp=ts)
    sig = good["webhook-signature"]
    other_sig = webhook_signing.sign_headers(secrets_=[other], body=raw, msg_id="msg_1", timestamp=ts)["webhook-signature"]
    return {
        "good": (good, True),
        "good after another partner's": ({**good, "webhook-signature": f"{other_sig} {sig}"}, True),
        "good before a v2": ({**good, "webhook-signature": f"{sig} v2,abcd"}, True),
        "other partner's secret": ({**good, "webhook-signature": other_sig}, False),
        "another message id": ({**good, "webhook-id": "msg_2"}, False),
        "another timestamp": ({**good, "webhook-timestamp": str(ts + 1)}, False),
        "over the body plus a newline": (webhook_signing.sign_headers(secrets_=[secret], body=raw + b"\n", msg_id="msg_1", timestamp=ts), False),
        "truncated": ({**good, "webhook-signature": sig[:-4]}, False),
        "without v1,": ({**good, "webhook-signature": sig.removeprefix("v1,")}, False),
        "no id": ({k: v for k, v in good.items() if k != "webhook-id"}, False),
        "no timestamp": ({k: v for k, v in good.items() if k != "webhook-timestamp"}, False),
        "empty signature": ({**good, "webhook-signature": ""}, False),
        "non-ascii": ({**good, "webhook-signature": "v1," + "é" * 44}, False),
    }


@pytest.mark.django_db
def test_standard_webhooks_edges_are_judged_by_the_protocol(client):
    line = fresh_sent_line()
    partner = line.partner_order.partner
    other = webhook_signing.generate_secret()
    seen = set()

    @settings_(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(offset=st.sampled_from([-3600, -400, -200, 0, 200, 400, 3600]),
           form=st.sampled_from(sorted(standard_forms("whsec_" + "A" * 32, other, b"", 0))))
    def check(offset, form):
        raw = body_for(line, "accepted", f"std-{next(_unique)}")
        headers, ok = standard_forms(partner.webhook_secret, other, raw, int(time.time()) + offset)[form]
        received_before = received()
        response = deliver(client, partner, raw, headers=headers)
        should_pass = ok and abs(offset) <= 200  # the library's tolerance is 5 minutes either way
        assert response.status_code == (200 if should_pass else 401), (form, offset, response.content)
        assert received() == received_before + 1
        seen.add(response.status_code)

    check()
    assert seen == {200, 401}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_event_id_sent_at_once_with_different_bodies_is_applied_once():
    line = fresh_sent_line()
    partner = line.partner_order.partner
    answers = []
    bodies = [body_for(line, status, "evt-race") for status in HAPPY + HAPPY]

    def send(raw):
        def run():
            answers.append(deliver(Client(), partner, raw).json()["status"])
        return run

    assert run_threads(*[send(raw) for raw in bodies]) == []
    assert sorted(answers).count("applied") == 1 and len(answers) == len(bodies)
    assert set(answers) <= {"applied", "duplicate", "ignored"}
    assert WebhookEvent.objects.filter(event_id="evt-race").count() == len(bodies)
    applied = WebhookEvent.objects.get(event_id="evt-race", outcome=W.APPLIED)
    line.refresh_from_db()
    assert line.status == json.loads(applied.body)["status"]
    assert line.events.filter(applied=True).count() == 1
