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
