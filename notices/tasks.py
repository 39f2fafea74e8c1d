"""django-q2 tasks of the notices. Each is safe to run twice and on several workers at once."""

import logging

from django.utils import timezone

log = logging.getLogger(__name__)


def run_notices() -> dict:
    """Every minute: read new line events into notices and alerts, send what is due, retry and
    reclaim, and the coordinators' digests. One step failing does not stop the others (the first
    failure is raised at the end, so the task is recorded as failed)."""
    from .coordinators import alerts_send_due, digests_send_due
    from .delivery import messages_retry_due, notices_send_due, reclaim_interrupted
    from .scan import notices_scan

    now = timezone.now()
    steps = {
        "scanned": lambda: notices_scan(now=now).events,
        "reclaimed": lambda: reclaim_interrupted(now=now),
        "notices_sent": lambda: notices_send_due(now=now),
        "messages_retried": lambda: messages_retry_due(now=now),
        "alerts_sent": lambda: alerts_send_due(now=now),
        "digests_sent": lambda: digests_send_due(now=now),
    }
    done, failure = {}, None
    for name, step in steps.items():
        try:
            done[name] = step()
        except Exception as exc:  # noqa: BLE001 — logged (no patient data), the rest still runs
            log.exception("notices: step %s failed", name)
            failure = failure or exc
    if failure is not None:
        raise failure
    return done


def fall_back_to_email(message_id: int):
    """A text could not be delivered: email the patient instead, where they have an email."""
    from .delivery import message_fall_back_to_email
    from .models import Message

    message = Message.objects.filter(pk=message_id).first()
    if message is None:
        return None
    email = message_fall_back_to_email(message=message)
    return email.pk if email else None
