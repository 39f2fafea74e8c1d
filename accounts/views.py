"""The second factor's pages: enrol an authenticator app (with recovery codes), verify a code
after the password, and the page shown when too many wrong passwords locked a login."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice

from .forms import CodeForm
from .second_factor import (
    has_second_factor,
    qr_code_data_uri,
    recovery_codes_renew,
    second_factor_required,
    totp_enrolment_confirm,
    totp_enrolment_start,
    totp_secret,
    verification_device,
)


def _next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and "\x00" not in target and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return "/"


@never_cache
@login_required
def enrol(request):
    """Set up an authenticator app: scan the QR code (or type the secret), enter the code it
    shows; then the ten recovery codes are shown, this once. A user who already has a factor
    must verify it in this session before replacing it."""
    if has_second_factor(request.user) and not request.user.is_verified():
        return redirect("accounts:verify")
    device = totp_enrolment_start(user=request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        codes = totp_enrolment_confirm(device=device, token=form.cleaned_data["code"])
        if codes is not None:
            device.refresh_from_db()
            otp_login(request, device)
            return render(request, "accounts/recovery_codes.html", {"codes": codes, "next": _next(request)})
        form.add_error("code", "That code did not match. Check the time on your phone and enter the newest code.")
    return render(request, "accounts/enrol.html", {
        "form": form, "secret": totp_secret(device), "uri": device.config_url,
        "qr": qr_code_data_uri(device.config_url), "required": second_factor_required(request.user),
        "replacing": has_second_factor(request.user), "next": _next(request),
    })


@never_cache
@login_required
def verify(request):
    """After the password: a code from the authenticator app, or one recovery code (used up)."""
    if not has_second_factor(request.user):
        return redirect("accounts:enrol")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = verification_device(user=request.user, token=form.cleaned_data["code"])
        if device is not None:
            otp_login(request, device)
            request.session.cycle_key()
            if isinstance(device, StaticDevice):
                messages.warning(request, "You used a recovery code; it no longer works. "
                                          "New codes: Two-factor settings.")
            return redirect(_next(request))
        form.add_error("code", "That code did not work. Enter the newest code from your app, or a recovery code.")
    return render(request, "accounts/verify.html", {"form": form, "next": _next(request)})


@never_cache
@login_required
def new_recovery_codes(request):
    """A fresh set of ten recovery codes (the old ones stop working); only in a verified session."""
    if request.method != "POST" or not request.user.is_verified():
        return redirect("accounts:enrol")
    codes = recovery_codes_renew(user=request.user)
    return render(request, "accounts/recovery_codes.html", {"codes": codes, "next": "/"})


def locked_out(request, original_response=None, credentials=None):
    """django-axes' answer once a login or an address has too many failures: the login page,
    saying so (HTTP 429)."""
    from django.conf import settings

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60) if settings.AXES_COOLOFF_TIME else None
    return render(request, "registration/login.html", {
        "form": AuthenticationForm(request), "locked_out": True, "cooloff_minutes": minutes,
        "next": _next(request)}, status=429)
