"""Running the test suite's tasks through a real django-q2 broker.

By default the tests run tasks inline (``Q_SYNC``): django-q2 hands the task straight to its
worker code and never touches a broker. With ``FIZY_TEST_BROKER=orm`` or ``FIZY_TEST_BROKER=redis``
(and ``REDIS_URL``; ``fizy/settings_test.py`` defaults it to 127.0.0.1:6379) every task still
runs at the moment it is queued, but travels as a production task does: signed and pushed to the
broker, pulled from it, run by django-q2's worker, its result saved and the message acknowledged
by django-q2's monitor. A task that the broker loses, mangles or cannot carry fails the test.

Each test process uses its own queue name, so parallel test runs on one Redis never take each
other's tasks. ``make test`` runs the dispatch, settlement and reliability tests this way with
both brokers.
"""

from __future__ import annotations

import os
import time
from multiprocessing import Queue, Value

from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.signing import SignedPackage

BROKERS = ("orm", "redis")
LIST_KEY = f"fizy-test-{os.getpid()}"


def broker_under_test() -> str:
    """The broker the tests' tasks go through: "" (inline), "orm" or "redis"."""
    name = os.environ.get("FIZY_TEST_BROKER", "").strip().lower()
    if name and name not in BROKERS:
        raise RuntimeError(f"FIZY_TEST_BROKER must be one of {', '.join(BROKERS)} (or unset), not {name!r}")
    return name


def configured_broker_name() -> str:
    """The broker django-q2 is configured with (read from its settings: no connection made)."""
    if Conf.BROKER_CLASS or Conf.IRON_MQ or Conf.SQS or Conf.MONGO:
        return "other"
    return "orm" if Conf.ORM else "redis"


class BrokerStats:
    enqueued = 0
    acknowledged = 0


def run_through_broker(pack: str) -> str:
    """Replaces django-q2's inline run (``django_q.tasks._sync``): push the signed task to the
    broker, pull it back, run it in django-q2's worker, save and acknowledge it in its monitor."""
    from django_q.monitor import monitor
    from django_q.worker import worker

    broker = get_broker(list_key=LIST_KEY)
    broker.enqueue(pack)
    BrokerStats.enqueued += 1
    task_set = None
    for _ in range(50):  # the ORM broker dates a message "now" and takes those strictly older
        task_set = broker.dequeue()
        if task_set:
            break
        time.sleep(0.01)
    if not task_set or len(task_set) != 1:
        raise AssertionError(f"the {configured_broker_name()} broker did not give back the task it was given")
    ack_id, package = task_set[0]
    task = SignedPackage.loads(package)
    task["cluster"] = Conf.CLUSTER_NAME
    task["ack_id"] = ack_id
    task_queue, result_queue = Queue(), Queue()
    task_queue.put(task)
    task_queue.put("STOP")
    worker(task_queue, result_queue, Value("f", -1))
    result_queue.put("STOP")

    class CountingBroker:
        def __getattr__(self, name):
            return getattr(broker, name)

        def acknowledge(self, task_id):
            BrokerStats.acknowledged += 1
            return broker.acknowledge(task_id)

    monitor(result_queue, CountingBroker())
    for queue in (task_queue, result_queue):
        queue.close()
        queue.join_thread()
    return task["id"]
