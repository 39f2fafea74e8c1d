from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .tenancy import active_membership, set_active_clinic, user_clinics


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
    clinic_id = request.POST.get("clinic", "")
    if not clinic_id.isdigit() or not set_active_clinic(request, clinic_id):
        raise Http404("You are not a member of that clinic.")
    clinic = user_clinics(request.user).get(pk=clinic_id)
    messages.success(request, f"You are now working in {clinic.name}.")
    target = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/"
    return redirect(target)
