"""Project-wide request checks that belong in one place rather than in every form."""

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseBadRequest
from django.utils.html import escape

from fizy.lib.http import NUL_MESSAGE, has_nul

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _params_hold_nul(params) -> bool:
    return any(has_nul(key) or any(has_nul(v) for v in values) for key, values in params.lists())


def _refuse():
    page = (f"<!doctype html><meta charset='utf-8'><title>Bad request · Fizy</title>"
            f"<h1>This request cannot be accepted</h1><p>{escape(NUL_MESSAGE)}</p><p><a href='/'>Back to Fizy</a></p>")
    return HttpResponseBadRequest(page)


class RefuseNulMiddleware:
    """No NUL character reaches a view: one in the path, a query parameter or a form field
    (every text field, every search) gets a 400 that says what was wrong. PostgreSQL refuses
    NUL in text, so without this a NUL typed or pasted anywhere became a 500.

    Forms are checked before the view runs; endpoints that are exempt from CSRF (webhooks and
    other machine endpoints authenticated by a signature) read and bound their own bodies, so
    their bodies are not parsed here."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if has_nul(request.path) or _params_hold_nul(request.GET):
            return _refuse()
        return self.get_response(request)

    def process_view(self, request, view, args, kwargs):
        if getattr(view, "csrf_exempt", False) or request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        if request.content_type in FORM_TYPES and _params_hold_nul(request.POST):
            return _refuse()
        return None


class AdminObjectIdMiddleware:
    """An admin page for one object (change, delete, history, a past version...) whose id
    cannot be a key of its model (``/admin/catalog/partner/1.5/history/``) is a 404 before the
    view runs. Django's own change page says "does not exist", but other views (the history
    pages of django-simple-history, our own) would hand the text to the database: a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view, args, kwargs):
        object_id = kwargs.get("object_id")
        user = getattr(request, "user", None)
        if object_id is None or user is None or not user.is_staff:
            return None  # others are sent to the admin's login page as before
        model_admin = getattr(view, "model_admin", None) or getattr(getattr(view, "__wrapped__", None), "__self__", None)
        if not isinstance(model_admin, admin.ModelAdmin):
            return None
        pk = model_admin.model._meta.pk
        try:
            pk.get_prep_value(pk.to_python(unquote(object_id)))
        except (ValidationError, TypeError, ValueError, OverflowError):
            raise Http404(f"No {model_admin.model._meta.verbose_name} with that id.") from None
        return None
