"""The active clinic of a coordinator: kept in the session, re-checked against Membership on
every request. Every coordinator view goes through :func:`clinic_required`."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect

from .models import Clinic, Membership

SESSION_KEY = "active_clinic_id"


def user_clinics(user):
    return Clinic.objects.filter(memberships__user=user).select_related("organization").order_by("name")


def active_membership(request) -> Membership | None:
    """The user's membership in the session's clinic, or their first one; None when they have none."""
    memberships = Membership.objects.filter(user=request.user).select_related("clinic__organization")
    wanted = request.session.get(SESSION_KEY)
    membership = None
    if wanted is not None:
        membership = memberships.filter(clinic_id=wanted).first()
    if membership is None:
        membership = memberships.order_by("clinic__name").first()
        if membership is not None:
            request.session[SESSION_KEY] = membership.clinic_id
        else:
            request.session.pop(SESSION_KEY, None)
    return membership


def set_active_clinic(request, clinic_id) -> bool:
    """Switch the session to another clinic; False when the user is not a member of it."""
    if not Membership.objects.filter(user=request.user, clinic_id=clinic_id).exists():
        return False
    request.session[SESSION_KEY] = int(clinic_id)
    return True


def clinic_required(view):
    """Log-in required, and a clinic membership: sets ``request.clinic`` and ``request.membership``.
    A user with no membership is sent to the home page, which says so."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        membership = active_membership(request)
        if membership is None:
            return redirect("home")
        request.membership = membership
        request.clinic = membership.clinic
        return view(request, *args, **kwargs)

    return wrapper
