from .tenancy import user_clinics


def clinic_switcher(request):
    """The clinics the user can switch between (only when there is more than one)."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    clinic = getattr(request, "clinic", None)
    if clinic is None:
        return {}
    return {"switchable_clinics": lambda: list(user_clinics(request.user))}
