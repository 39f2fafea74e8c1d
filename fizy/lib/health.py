"""Health checks of our own for django-health-check (``/health/``, for the load balancer)."""

import dataclasses
import datetime

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable


def oldest_queued_task_age(broker=None) -> datetime.timedelta | None:
    """How long the oldest task waiting in django-q2's queue has been waiting (None: nothing
    waits, or a broker we cannot date). ORM broker: a waiting task's ``lock`` is the time it was
    put on the queue, or the time a worker's claim on it ran out. Redis broker: the list's head
    is the oldest task, and its signed package says when it was queued (``started``)."""
    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM
    from django_q.brokers.redis_broker import Redis
    from django_q.conf import Conf
    from django_q.models import OrmQ
    from django_q.signing import BadSignature, SignedPackage

    broker = broker or get_broker()
    now = timezone.now()
    if isinstance(broker, ORM):
        oldest = (OrmQ.objects.using(Conf.ORM).filter(lock__lte=now).order_by("lock")
                  .values_list("lock", flat=True).first())
    elif isinstance(broker, Redis):
        head = broker.connection.lindex(broker.list_key, 0)
        try:
            oldest = SignedPackage.loads(head).get("started") if head is not None else None
        except (BadSignature, AttributeError, TypeError, ValueError):
            oldest = None  # not a task of ours: it cannot be dated
    else:
        oldest = None
    return None if oldest is None else now - oldest


@dataclasses.dataclass
class QueueAge(HealthCheck):
    """Fails when the oldest queued django-q2 task has waited longer than
    ``HEALTH_QUEUE_MAX_AGE_SECONDS``: no worker is taking tasks, or they cannot keep up."""

    async def run(self):
        # Thread-sensitive: the broker and the query use the request's own database connection.
        await sync_to_async(self._check)()

    def _check(self):
        from django_q.brokers import get_broker
        from django_q.conf import Conf

        broker = get_broker()
        if not Conf.ORM:
            try:
                broker.ping()
            except Exception as error:
                raise ServiceUnavailable("the task queue's Redis does not answer") from error
        age = oldest_queued_task_age(broker)
        limit = settings.HEALTH_QUEUE_MAX_AGE_SECONDS
        if age is not None and age.total_seconds() > limit:
            raise ServiceUnavailable(f"the oldest queued task has waited {int(age.total_seconds())} s (limit {limit} s)")
