"""The Needs attention badge in the navigation, on every page a clinic member sees."""

from .selectors import attention_open_count


def attention_badge(request):
    """``attention_open``: the clinic's open items, counted (one query) only when a template asks."""
    clinic = getattr(request, "clinic", None)
    if clinic is None:
        return {}
    counted: list[int] = []

    def count() -> int:
        if not counted:
            counted.append(attention_open_count(clinic=clinic))
        return counted[0]

    return {"attention_open": count}
