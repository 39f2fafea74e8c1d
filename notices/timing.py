"""When a notice may go out: never inside the clinic's quiet hours (its own time zone)."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo


def quiet_hours_end(at: datetime.datetime, *, tz: str, start: datetime.time, end: datetime.time) -> datetime.datetime | None:
    """When the quiet hours that ``at`` falls in end (an aware datetime), or None when ``at`` is
    outside them. ``start`` after ``end`` (21:00–08:00) spans midnight; equal means none."""
    if start == end:
        return None
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    now = local.time()
    if start < end:
        inside, day = start <= now < end, local.date()
    else:
        inside = now >= start or now < end
        day = local.date() + datetime.timedelta(days=1) if now >= start else local.date()
    if not inside:
        return None
    return datetime.datetime.combine(day, end, tzinfo=zone)


def earliest_send(at: datetime.datetime, *, tz: str, start: datetime.time, end: datetime.time) -> datetime.datetime:
    """``at``, or the end of the quiet hours it falls in."""
    return quiet_hours_end(at, tz=tz, start=start, end=end) or at


def local_now(at: datetime.datetime, tz: str) -> datetime.datetime:
    return at.astimezone(ZoneInfo(tz))
