from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from fizy.lib.http import local_redirect_target, parse_id
from fizy.lib.payments import PaymentError

from .models import Membership
from .payment_messages import payment_error_message
from .services import BillingError, NotClinicAdmin, clinic_set_payment_method, clinic_start_card_setup
from .tenancy import active_membership, clinic_required, set_active_clinic, user_clinics


@login_required
def home(request):
    membership = active_membership(request)
    if membership is None:
        if request.user.is_staff:
            return redirect("admin:index")
        return render(request, "clinics/no_clinic.html", status=403)
    return redirect("carts:cart")


@login_required
@require_POST
def switch_clinic(request):
    clinic_id = parse_id(request.POST.get("clinic"))
    if clinic_id is None or not set_active_clinic(request, clinic_id):
        raise Http404("You are not a member of that clinic.")
    clinic = user_clinics(request.user).get(pk=clinic_id)
    messages.success(request, f"You are now working in {clinic.name}.")
    # A path on this site only: never another host, and never a word (``next=TX``) that
    # ``redirect()`` would try as a URL name.
    return HttpResponseRedirect(local_redirect_target(request, request.POST.get("next")))


# --- billing: the clinic's saved card ------------------------------------------------------------


def _billing_page(request, *, setup=None, error="", status=200):
    context = {
        "nav": "billing",
        "clinic": request.clinic,
        "can_manage": request.membership.role == Membership.Role.CLINIC_ADMIN,
        "stripe_mode": settings.PAYMENT_GATEWAY == "stripe" and bool(settings.STRIPE_PUBLISHABLE_KEY),
        "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        "setup": setup,
        "error": error,
    }
    template = "clinics/billing.html#card-setup" if request.htmx and setup is not None else "clinics/billing.html"
    return render(request, template, context, status=status)


@clinic_required
@require_GET
def billing(request):
    return _billing_page(request)


@clinic_required
@require_POST
def billing_setup(request):
    """Start a card setup (a SetupIntent); the page then shows the card form or the test cards."""
    try:
        setup = clinic_start_card_setup(clinic=request.clinic, actor=request.user)
    except NotClinicAdmin as exc:
        return _billing_page(request, error=str(exc), status=403)
    except PaymentError as exc:
        return _billing_page(request, error=payment_error_message(exc))
    return _billing_page(request, setup=setup)


@clinic_required
@require_POST
def billing_card(request):
    """Record the card a finished card setup saved."""
    setup_intent_id = request.POST.get("setup_intent_id", "").strip()
    if not setup_intent_id:
        return _billing_page(request, error="The card form was not finished. Start the card setup again.", status=400)
    try:
        clinic = clinic_set_payment_method(clinic=request.clinic, setup_intent_id=setup_intent_id, actor=request.user)
    except NotClinicAdmin as exc:
        return _billing_page(request, error=str(exc), status=403)
    except BillingError as exc:
        return _billing_page(request, error=str(exc), status=400)
    except PaymentError as exc:
        return _billing_page(request, error=payment_error_message(exc), status=400)
    messages.success(
        request,
        f"Card saved: {clinic.card_brand.title()} ending {clinic.card_last4}. Orders from this clinic are paid with it.",
    )
    return redirect("billing")
