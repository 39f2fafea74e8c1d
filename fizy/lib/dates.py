import datetime

_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m-%d-%Y", "%m/%d/%y")


def parse_us_or_iso_date(text: str) -> datetime.date | None:
    """A date typed by a US user (MM/DD/YYYY) or in ISO form; None when the text is not a date."""
    text = (text or "").strip()
    for fmt in _FORMATS:
        try:
            return datetime.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def add_business_days(moment: datetime.datetime, days: int) -> datetime.datetime:
    """``moment`` plus ``days`` working days (Monday to Friday; no holidays), at the same time of
    day. A moment in a weekend counts from the Monday after it, at midnight."""
    if moment.weekday() >= 5:
        moment = (moment + datetime.timedelta(days=7 - moment.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    while days > 0:
        moment += datetime.timedelta(days=1)
        if moment.weekday() < 5:
            days -= 1
    return moment


def business_days_before(moment: datetime.datetime, days: int) -> datetime.datetime:
    """The cutoff for "more than ``days`` working days before ``moment``": anything that happened
    before it has ``add_business_days(t, days)`` earlier than ``moment``."""
    if moment.weekday() >= 5:  # a weekend counts as the end of the Friday before it
        moment = (moment - datetime.timedelta(days=moment.weekday() - 5)).replace(hour=0, minute=0, second=0, microsecond=0)
    while days > 0:
        moment -= datetime.timedelta(days=1)
        if moment.weekday() < 5:
            days -= 1
    return moment
