"""Every page carries a Content-Security-Policy and a Permissions-Policy; /health/ tells the load
balancer whether this server can take requests: database, cache and a queue that moves."""

import datetime
import os

import pytest
from django.utils import timezone
from django_q.models import OrmQ


def test_pages_carry_a_content_security_policy_without_inline_script(client_alice):
    response = client_alice.get("/cart/")
    assert response.status_code == 200
    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    assert "'unsafe-inline'" not in policy["style-src"]
    assert policy["frame-ancestors"] == "'none'"
    page = response.content.decode()
    assert "<script>" not in page and " onclick=" not in page and " onchange=" not in page


def test_the_login_page_carries_both_policies(client, db):
    response = client.get("/login/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "camera=()" in response["Permissions-Policy"] and "geolocation=()" in response["Permissions-Policy"]


def test_only_the_api_docs_page_allows_inline_styles(client, db):
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    style = next(part for part in docs["Content-Security-Policy"].split(";") if part.strip().startswith("style-src"))
    assert "'unsafe-inline'" in style
    script = next(part for part in docs["Content-Security-Policy"].split(";") if part.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script and "<script>" not in docs.content.decode()


def test_health_answers_200_when_database_cache_and_queue_are_fine(client, db):
    OrmQ.objects.create(key="fizy", payload="x", lock=timezone.now() - datetime.timedelta(seconds=10))
    response = client.get("/health/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert set(response.json().values()) == {"OK"}
    assert len(response.json()) == 3
    assert client.get("/health/").status_code == 200  # the load balancer's plain request (HTML)


@pytest.mark.parametrize("age_seconds, status", [(299, 200), (301, 500)])
def test_health_fails_when_the_oldest_queued_task_waits_too_long(client, db, settings, age_seconds, status):
    settings.HEALTH_QUEUE_MAX_AGE_SECONDS = 300
    now = timezone.now()
    OrmQ.objects.create(key="fizy", payload="x", lock=now - datetime.timedelta(seconds=age_seconds))
    OrmQ.objects.create(key="fizy", payload="y", lock=now - datetime.timedelta(seconds=5))
    # A task a worker holds (its lock lies ahead) is not waiting, however old.
    OrmQ.objects.create(key="fizy", payload="z", lock=now + datetime.timedelta(seconds=60))
    response = client.get("/health/?format=json")
    assert response.status_code == status
    queue = next(value for key, value in response.json().items() if key.startswith("QueueAge"))
    assert (queue == "OK") == (status == 200)
    if status == 500:
        assert "the oldest queued task has waited 30" in queue and "limit 300 s" in queue


def test_the_oldest_task_on_the_redis_broker_is_dated_too(db):
    """With REDIS_URL the queue is a Redis list: its head is the oldest task, dated by the time
    django-q2 queued it (Redis on 127.0.0.1:6379, as `make test` starts it)."""
    from django_q.brokers.redis_broker import Redis
    from django_q.signing import SignedPackage

    from fizy.lib.health import oldest_queued_task_age

    broker = Redis(list_key=f"fizy-health-test-{os.getpid()}")
    broker.delete_queue()
    try:
        assert oldest_queued_task_age(broker) is None  # nothing waits
        now = timezone.now()
        for waited in (400, 5):
            broker.enqueue(SignedPackage.dumps({"id": f"t{waited}", "func": "math.floor", "args": (1,),
                                                "kwargs": {}, "started": now - datetime.timedelta(seconds=waited)}))
        broker.enqueue(b"not a signed task")
        assert 400 <= oldest_queued_task_age(broker).total_seconds() < 460
        broker.dequeue()
        broker.dequeue()  # only the foreign payload is left: it cannot be dated
        assert oldest_queued_task_age(broker) is None
    finally:
        broker.delete_queue()
