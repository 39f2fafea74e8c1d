"""The watchdog: nobody has to notice a line that stopped moving.

While a line is sent, accepted, compounding or shipped, the partner owes us its next event within
an expected time (``ExpectedTime`` rows that staff edit in the admin, per partner or for every
partner; ``settings.LINE_EXPECTED_TIMES`` otherwise: sent → accepted within 1 business day,
accepted → shipped within 5 days, shipped → delivered within 7 days). A line past it is
**overdue**: listed on the clinic's Needs attention page and behind the admin's "overdue" filter,
and polled where its partner offers a status call (``fulfillment.polling``).

:func:`overdue_filter` is the one definition of "overdue": a ``Q`` over the line's status, its
partner and ``status_changed_at`` (the time of its last applied event), built from the expected
times read in one query, so that any list of lines is filtered in the database, not line by line.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from fizy.lib.dates import add_business_days, business_days_before

from .models import ExpectedTime, OrderLine

S = OrderLine.Status
WATCHED = frozenset(ExpectedTime.WATCHED)
NEXT_EVENT = {S.SENT: "accepted", S.ACCEPTED: "shipped", S.COMPOUNDING: "shipped", S.SHIPPED: "delivered"}


@dataclass(frozen=True)
class Expectation:
    days: int
    business_days: bool = False

    def cutoff(self, now: datetime.datetime) -> datetime.datetime:
        """A line whose last event is older than this is late at ``now``."""
        if self.business_days:
            return business_days_before(timezone.localtime(now), self.days)
        return now - datetime.timedelta(days=self.days)

    def due(self, since: datetime.datetime) -> datetime.datetime:
        if self.business_days:
            return add_business_days(timezone.localtime(since), self.days)
        return since + datetime.timedelta(days=self.days)

    def describe(self) -> str:
        unit = "business day" if self.business_days else "day"
        return f"{self.days} {unit}{'' if self.days == 1 else 's'}"


@dataclass
class ExpectedTimes:
    """The expected time of each watched status: the default, and each partner's own."""

    default: dict[str, Expectation] = field(default_factory=dict)
    per_partner: dict[tuple[int, str], Expectation] = field(default_factory=dict)

    def for_line(self, *, partner_id: int, status: str) -> Expectation | None:
        return self.per_partner.get((partner_id, status)) or self.default.get(status)


def expected_times() -> ExpectedTimes:
    """The settings' defaults, overridden by the staff's ``ExpectedTime`` rows. One query."""
    times = ExpectedTimes(
        default={status: Expectation(int(days), bool(business))
                 for status, (days, business) in settings.LINE_EXPECTED_TIMES.items() if status in WATCHED},
    )
    for row in ExpectedTime.objects.all():
        expectation = Expectation(row.days, row.business_days)
        if row.partner_id is None:
            times.default[row.status] = expectation
        else:
            times.per_partner[(row.partner_id, row.status)] = expectation
    return times


def overdue_filter(*, now: datetime.datetime | None = None, times: ExpectedTimes | None = None) -> Q:
    """A ``Q`` on OrderLine: the line waits for its partner's next event longer than expected."""
    now = now or timezone.now()
    times = times if times is not None else expected_times()
    overdue = Q(pk__in=[])
    for status, expectation in times.default.items():
        own = [partner_id for partner_id, st in times.per_partner if st == status]
        late = Q(status=status, status_changed_at__lt=expectation.cutoff(now))
        overdue |= (late & ~Q(partner_order__partner_id__in=own)) if own else late
    for (partner_id, status), expectation in times.per_partner.items():
        overdue |= Q(status=status, partner_order__partner_id=partner_id, status_changed_at__lt=expectation.cutoff(now))
    return overdue


def overdue_lines(*, clinic=None, lines: QuerySet | None = None, now: datetime.datetime | None = None) -> list[OrderLine]:
    """The overdue lines (of ``clinic``, or among ``lines``), longest waiting first, each with
    ``expected`` (the Expectation), ``due_at`` and ``waiting_for`` (the event it waits for).
    Two queries whatever the number of lines."""
    now = now or timezone.now()
    times = expected_times()
    lines = lines if lines is not None else OrderLine.objects.all()
    if clinic is not None:
        lines = lines.filter(order__clinic=clinic)
    found = list(
        lines.filter(overdue_filter(now=now, times=times))
        .select_related("order", "patient", "partner_order__partner")
        .order_by("status_changed_at", "id")
    )
    for line in found:
        line.expected = times.for_line(partner_id=line.partner_order.partner_id, status=line.status)
        line.due_at = line.expected.due(line.status_changed_at)
        line.waiting_for = NEXT_EVENT.get(line.status, "")
    return found
