"""Health checks of our own for django-health-check (``/health/``, for the load balancer)."""

import dataclasses
import datetime

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable


def oldest_queued_task_age() -> datetime.timedelta | None:
    """How long the oldest task waiting in django-q2's ORM queue has been waiting (None: nothing
    waits, or the queue is not the ORM broker). A waiting task's ``lock`` is the time it was put
    on the queue, or the time a worker's claim on it ran out."""
    from django_q.conf import Conf
    from django_q.models import OrmQ

    if not Conf.ORM:
        return None
    now = timezone.now()
    oldest = (OrmQ.objects.using(Conf.ORM).filter(lock__lte=now).order_by("lock")
              .values_list("lock", flat=True).first())
    return None if oldest is None else now - oldest


@dataclasses.dataclass
class QueueAge(HealthCheck):
    """Fails when the oldest queued django-q2 task has waited longer than
    ``HEALTH_QUEUE_MAX_AGE_SECONDS``: no worker is taking tasks, or they cannot keep up."""

    async def run(self):
        from django_q.brokers import get_broker
        from django_q.conf import Conf

        if not Conf.ORM:  # Redis keeps no enqueue time we can read: check it answers.
            try:
                await sync_to_async(get_broker().ping)()
            except Exception as error:
                raise ServiceUnavailable("the task queue's Redis does not answer") from error
            return
        # Thread-sensitive: the query runs on the request's own database connection.
        age = await sync_to_async(oldest_queued_task_age)()
        limit = settings.HEALTH_QUEUE_MAX_AGE_SECONDS
        if age is not None and age.total_seconds() > limit:
            raise ServiceUnavailable(f"the oldest queued task has waited {int(age.total_seconds())} s (limit {limit} s)")
