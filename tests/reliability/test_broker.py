"""With ``FIZY_TEST_BROKER=orm|redis`` (``make test`` runs the dispatch, settlement and reliability
tests both ways) every task the tests queue travels through that real broker: this checks that it
does, so a run that silently fell back to inline tasks is noticed."""

import pytest
from django_q.brokers import get_broker
from django_q.models import Task
from django_q.tasks import async_task

from fizy.tests.queue import LIST_KEY, BrokerStats, broker_under_test, configured_broker_name

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(not broker_under_test(), reason="tasks run inline; FIZY_TEST_BROKER=orm|redis sends them through a broker")
def test_a_queued_task_travels_through_the_configured_broker():
    assert configured_broker_name() == broker_under_test()
    before = BrokerStats.enqueued
    task_id = async_task("fulfillment.tasks.purge_refused_webhook_requests")
    assert BrokerStats.enqueued == before + 1
    assert Task.objects.get(id=task_id).success  # run by django-q2's worker, saved by its monitor
    assert get_broker(list_key=LIST_KEY).queue_size() == 0  # taken off the queue (and acknowledged)
