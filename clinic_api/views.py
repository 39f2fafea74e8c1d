"""The clinic admins' API page (Settings → API): keys and webhooks. Thin: a form, a service, a partial."""

from functools import wraps

from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from clinics.tenancy import clinic_required

from .forms import ApiKeyForm, SubscriptionForm
from .keys import ApiKeyError, api_key_create, api_key_revoke, clinic_api_keys, is_clinic_admin
from .models import ApiKey, WebhookDelivery, WebhookSubscription
from .webhooks import WebhookError, clinic_deliveries, subscription_create, subscription_remove, webhook_resend

TEMPLATE = "clinic_api/settings.html"


def clinic_admin_required(view):
    @clinic_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_clinic_admin(clinic=request.clinic, user=request.user):
            return render(request, "clinic_api/not_allowed.html", {"nav": "api"}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


def _keys_context(request, **extra) -> dict:
    return {"keys": clinic_api_keys(clinic=request.clinic), "key_form": ApiKeyForm(), **extra}


def _keys(request, status=200, **extra):
    template = f"{TEMPLATE}#api-keys" if request.htmx else TEMPLATE
    context = {**_page_context(request), **_webhooks_context(request), **_keys_context(request, **extra)}
    return render(request, template, context, status=status)


def _page_context(request) -> dict:
    return {"nav": "api", "clinic": request.clinic}


def _webhooks_context(request, **extra) -> dict:
    return {"subscriptions": WebhookSubscription.objects.filter(clinic=request.clinic, active=True),
            "deliveries": clinic_deliveries(clinic=request.clinic), "webhook_form": SubscriptionForm(), **extra}


def _webhooks(request, status=200, **extra):
    template = f"{TEMPLATE}#webhooks" if request.htmx else TEMPLATE
    context = {**_page_context(request), **_keys_context(request), **_webhooks_context(request, **extra)}
    return render(request, template, context, status=status)


@clinic_admin_required
@require_GET
def settings_page(request):
    return render(request, TEMPLATE, {**_page_context(request), **_keys_context(request), **_webhooks_context(request)})


@clinic_admin_required
@require_POST
def key_create(request):
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _keys(request, status=400, key_form=form)
    try:
        new = api_key_create(clinic=request.clinic, actor=request.user, **form.cleaned_data)
    except ApiKeyError as exc:
        form.add_error(None, str(exc))
        return _keys(request, status=400, key_form=form)
    return _keys(request, new_key=new)


@clinic_admin_required
@require_POST
def key_revoke(request, pk: int):
    key = get_object_or_404(ApiKey, pk=pk, clinic=request.clinic)
    api_key_revoke(key=key, actor=request.user)
    return _keys(request, flash=f"Key '{key.name}' revoked: requests with it are refused from now on.")


@clinic_admin_required
@require_POST
def webhook_create(request):
    form = SubscriptionForm(request.POST)
    if not form.is_valid():
        return _webhooks(request, status=400, webhook_form=form)
    try:
        subscription = subscription_create(clinic=request.clinic, actor=request.user, **form.cleaned_data)
    except WebhookError as exc:
        form.add_error("url", str(exc))
        return _webhooks(request, status=400, webhook_form=form)
    return _webhooks(request, new_subscription=subscription)


@clinic_admin_required
@require_POST
def webhook_remove(request, pk: int):
    subscription = get_object_or_404(WebhookSubscription, pk=pk, clinic=request.clinic, active=True)
    subscription_remove(subscription=subscription, actor=request.user)
    return _webhooks(request, webhook_flash=f"{subscription.url} removed: it gets no more events.")


@clinic_admin_required
@require_POST
def delivery_resend(request, pk: int):
    delivery = get_object_or_404(WebhookDelivery, pk=pk, clinic=request.clinic)
    webhook_resend(delivery=delivery, actor=request.user)
    return _webhooks(request, webhook_flash=f"{delivery.event_type} ({delivery.message_id}) sent again.")
