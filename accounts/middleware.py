"""The front door's middleware: a second factor before anything else, and sessions that end after
a while without activity."""

import time
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import redirect, resolve_url
from django.urls import reverse
from django.utils.http import urlencode

from .second_factor import has_second_factor, second_factor_required

# Reachable before the second factor: the enrolment and verification pages, logging out, and
# what those pages load; and the machine APIs under /api/ (the clinic API, partners' and Stripe's
# webhooks), which never use the session: an API key or a signature authenticates them, so a
# browser's half-logged-in session cookie must not turn an API call into a redirect. Anything
# else redirects to them.
OPEN_BEFORE_SECOND_FACTOR = ("/account/two-factor/", "/logout/", "/admin/logout/", "/static/", "/favicon.ico",
                             "/health/", "/api/")
SESSION_SEEN_KEY = "seen_at"
SESSION_REQUIRED_KEY = "second_factor_required"
RECHECK_SECONDS = 300
# The session's expiry moves at most this often (each move is a database write).
REFRESH_EVERY_SECONDS = 60


def _second_factor_required(request) -> bool:
    """second_factor_required() for the session's user, asked again every RECHECK_SECONDS (a
    coordinator's pages cost no query for it; a promotion to clinic admin counts within minutes)."""
    now = int(time.time())
    cached = request.session.get(SESSION_REQUIRED_KEY)
    if isinstance(cached, list) and len(cached) == 2 and now - cached[1] < RECHECK_SECONDS:
        return bool(cached[0])
    required = second_factor_required(request.user)
    request.session[SESSION_REQUIRED_KEY] = [required, now]
    return required


def _go(request, url):
    if request.headers.get("HX-Request") == "true":
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


class SecondFactorRequired:
    """After the password, a user who must use a second factor (staff, clinic admins, anyone who
    enrolled one) reaches only the enrolment or verification page and logout until they verify
    a code in this session. Put after django-otp's OTPMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if (user.is_authenticated and not request.path.startswith(OPEN_BEFORE_SECOND_FACTOR)
                and _second_factor_required(request) and not user.is_verified()):
            page = "accounts:verify" if has_second_factor(user) else "accounts:enrol"
            url = reverse(page)
            if request.method == "GET" and not request.headers.get("HX-Request"):
                url += "?" + urlencode({"next": request.get_full_path()})
            return _go(request, url)
        return self.get_response(request)


class IdleSessionTimeout:
    """A logged-in session lasts SESSION_IDLE_TIMEOUT seconds after the user's last action (the
    session's expiry, SESSION_COOKIE_AGE, is the same length). A request the page makes by itself
    (an HTMX poll, marked with the ``X-Fizy-Poll`` header) is not an action: a page left open
    does not keep its session alive. Put after AuthenticationMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated and not request.headers.get("X-Fizy-Poll"):
            now = int(time.time())
            if now - request.session.get(SESSION_SEEN_KEY, 0) >= REFRESH_EVERY_SECONDS:
                request.session[SESSION_SEEN_KEY] = now  # modified: saved with a new expiry
            return self.get_response(request)
        response = self.get_response(request)
        if response.status_code == 302 and urlsplit(response["Location"]).path == resolve_url(settings.LOGIN_URL):
            # Sent to log in. With a session cookie but no session, the session ended: the login
            # page says why. An HTMX request loads the login page whole, not into a table row.
            url = response["Location"]
            if settings.SESSION_COOKIE_NAME in request.COOKIES:
                url += ("&" if "?" in url else "?") + "ended=idle"
            return _go(request, url)
        return response
