"""Pages of the notices: the patient's tracking page (no login), and for the clinic the Notices
page, each order's patient updates, patients' consent, and the settings and templates.

Every id in a URL is looked up inside the user's clinic (another clinic's is a 404)."""

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from clinics.access import record_patient_access
from clinics.models import Clinic, Patient
from clinics.patients import patient_search
from clinics.tenancy import active_membership, clinic_required
from fizy.lib.http import parse_id
from fulfillment.models import Order

from . import selectors
from .consent import ConsentError, patient_set_notice_preferences, patient_set_opted_out
from .forms import NoticeSettingsForm, PatientNoticesForm, TemplateForm
from .models import Channel, Message, Milestone, NoticeTemplate, TrackingAccess, TrackingLink
from .services import NoticeSettingsError, can_manage, notice_settings_update, notice_template_reset, notice_template_save
from .tracking import (
    WINDOW_SECONDS,
    address_hash,
    link_url,
    notice_settings_for,
    over_rate_limit,
    tracking_access_record,
    tracking_link_for,
    tracking_link_revoke,
    tracking_page_for_token,
)
from .wording import (
    DEFAULTS,
    PLACEHOLDERS,
    SAMPLE_PRODUCTS,
    SAMPLE_VALUES,
    compose,
    items_phrase,
    sms_segments,
    template_problems,
)

MESSAGES_PER_PAGE = 50
LIST_POLL_SECONDS = 5
PUBLIC_HEADERS = {
    "Referrer-Policy": "no-referrer",  # the link is the key: never pass it on to a carrier's site
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}


# --- the patient's tracking page -----------------------------------------------------------------


def _public(response):
    for name, value in PUBLIC_HEADERS.items():
        response[name] = value
    return response


@require_GET
def track(request, token: str):
    ip_hash = address_hash(request.META.get("REMOTE_ADDR", ""))
    refresh = bool(request.htmx)
    if over_rate_limit(ip_hash=ip_hash, token=token[:200]):
        # Recorded once per address and window: a flood must not become a flood of rows.
        if cache.add(f"notices:track:limited:{ip_hash}", 1, WINDOW_SECONDS):
            TrackingAccess.objects.create(outcome=TrackingAccess.Outcome.RATE_LIMITED, ip_hash=ip_hash, refresh=refresh)
        response = render(request, "notices/track_unavailable.html", {"too_many": True}, status=429)
        response["Retry-After"] = "60"
        return _public(response)
    page = tracking_page_for_token(token[:200])
    tracking_access_record(page=page, ip_hash=ip_hash, refresh=refresh)
    if page.outcome != TrackingAccess.Outcome.SHOWN:
        return _public(render(request, "notices/track_unavailable.html", {}, status=404))
    context = {"page": page, "poll_seconds": 0 if page.final else settings.TRACKING_POLL_SECONDS}
    template = "notices/track.html#track-body" if request.htmx else "notices/track.html"
    return _public(render(request, template, context))


# --- who may see what ----------------------------------------------------------------------------


def notices_viewer(view):
    """Clinic admins (their clinic's messages) and pharmacy staff allowed to view messages (every
    clinic's). Sets ``request.notices_clinic`` (None: all clinics)."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        membership = active_membership(request)
        staff = request.user.is_staff and request.user.has_perm("notices.view_message")
        if membership is not None:
            request.membership, request.clinic = membership, membership.clinic
            if not (can_manage(membership) or staff):
                return render(request, "notices/not_allowed.html", status=403)
            request.notices_clinic = membership.clinic
        elif staff:
            request.membership, request.clinic = None, None
            wanted = parse_id(request.GET.get("clinic"))
            request.notices_clinic = Clinic.objects.filter(pk=wanted).first() if wanted else None
        else:
            return render(request, "notices/not_allowed.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


def clinic_admin_required(view):
    @clinic_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not can_manage(request.membership):
            return render(request, "notices/not_allowed.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


# --- the Notices page ----------------------------------------------------------------------------


@notices_viewer
@require_GET
def index(request):
    channel = request.GET.get("channel", "")
    channel = channel if channel in Channel.values else ""
    status = request.GET.get("status", "")
    status = status if status in Message.Status.values else ""
    search = request.GET.get("q", "").strip()[:100]
    clinic = request.notices_clinic
    page = Paginator(selectors.messages_page(clinic=clinic, channel=channel, status=status, search=search),
                     MESSAGES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "nav": "notices", "page": page, "channel": channel, "status": status, "q": search,
        "channels": Channel.choices, "statuses": Message.Status.choices, "scope_clinic": clinic,
        "all_clinics": Clinic.objects.order_by("name") if request.clinic is None else None,
        "not_sent": selectors.notices_not_sent(clinic=clinic, limit=20),
        "counts": selectors.notice_counts(clinic=clinic),
        "poll_seconds": LIST_POLL_SECONDS if page.number == 1 else 0,
        "can_manage": can_manage(request.membership),
    }
    record_patient_access(request, [*(m.notice.patient_id for m in page.object_list),
                                    *(n.patient_id for n in context["not_sent"])])
    template = "notices/index.html#message-list" if request.htmx else "notices/index.html"
    return render(request, template, context)


# --- an order's patient updates ------------------------------------------------------------------


def _order(request, pk: int) -> Order:
    order = Order.objects.filter(clinic=request.clinic, pk=pk).first()
    if order is None:
        raise Http404("No such order in this clinic.")
    return order


@clinic_required
@require_GET
def order(request, pk: int):
    found = _order(request, pk)
    patients = selectors.order_patients_overview(order=found)
    record_patient_access(request, (entry["patient"] for entry in patients))
    for entry in patients:
        entry["url"] = link_url(entry["link"]) if entry["link"] else ""
    context = {"nav": "orders", "order": found, "patients": patients, "milestones": Milestone.choices}
    return render(request, "notices/order.html", context)


@clinic_required
@require_POST
def link_revoke(request, pk: int, patient_pk: int):
    found = _order(request, pk)
    link = TrackingLink.objects.filter(order=found, patient_id=patient_pk, revoked_at__isnull=True).first()
    if link is None:
        raise Http404("This patient has no live tracking link for this order.")
    tracking_link_revoke(link=link, clinic=request.clinic, actor=request.user)
    messages.success(request, "The link was revoked: it shows nothing any more. The patient's next update carries a new one.")
    return redirect("notices:order", pk=found.pk)


@clinic_required
@require_POST
def link_new(request, pk: int, patient_pk: int):
    found = _order(request, pk)
    if not found.lines.filter(patient_id=patient_pk).exists():
        raise Http404("That patient has no line in this order.")
    tracking_link_for(order_id=found.pk, patient_id=patient_pk)
    messages.success(request, "A new tracking link is ready; copy it below, or it goes with the patient's next update.")
    return redirect("notices:order", pk=found.pk)


# --- patients' consent ---------------------------------------------------------------------------


@clinic_required
@require_GET
def patients(request):
    query = request.GET.get("q", "").strip()[:100]
    found = list(patient_search(clinic=request.clinic, query=query)) if query else []
    record_patient_access(request, found)
    return render(request, "notices/patients.html", {"nav": "notices", "q": query, "patients": found})


@clinic_required
def patient(request, pk: int):
    record = get_object_or_404(Patient, pk=pk, organization_id=request.clinic.organization_id)
    record_patient_access(request, [record])
    form = PatientNoticesForm(initial={"contact_preference": record.contact_preference,
                                       "consent": record.notices_consent_at is not None})
    if request.method == "POST":
        action = request.POST.get("action", "save")
        try:
            if action in ("opt_out", "opt_in"):
                patient_set_opted_out(patient=record, clinic=request.clinic, actor=request.user,
                                      opted_out=action == "opt_out")
                messages.success(request, f"{record.first_name} will {'get no' if action == 'opt_out' else 'get'} order updates.")
                return redirect("notices:patient", pk=record.pk)
            form = PatientNoticesForm(request.POST)
            if form.is_valid():
                patient_set_notice_preferences(patient=record, clinic=request.clinic, actor=request.user,
                                               contact_preference=form.cleaned_data["contact_preference"],
                                               consent=form.cleaned_data["consent"])
                messages.success(request, f"Saved how {record.first_name} gets order updates.")
                return redirect("notices:patient", pk=record.pk)
        except ConsentError as exc:
            form.add_error(None, str(exc))
    recent = selectors.messages_page(clinic=request.clinic).filter(notice__patient=record)[:10]
    return render(request, "notices/patient.html", {"nav": "notices", "patient": record, "form": form,
                                                    "recent": recent}, status=400 if form.errors else 200)


# --- settings and templates (clinic admins) -------------------------------------------------------


@clinic_admin_required
def settings_page(request):
    current = notice_settings_for(request.clinic)
    form = NoticeSettingsForm(instance=current)
    if request.method == "POST":
        form = NoticeSettingsForm(request.POST, instance=notice_settings_for(request.clinic))
        if form.is_valid():
            try:
                notice_settings_update(clinic=request.clinic, actor=request.user, **form.changes())
            except NoticeSettingsError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, "Notice settings saved.")
                return redirect("notices:settings")
    own = {(t.milestone, t.channel) for t in NoticeTemplate.objects.filter(clinic=request.clinic)}
    templates = [{"milestone": m, "milestone_label": label, "channel": c, "channel_label": c_label,
                  "own": (m, c) in own} for m, label in Milestone.choices for c, c_label in Channel.choices]
    return render(request, "notices/settings.html", {"nav": "notices", "form": form, "templates": templates},
                  status=400 if form.errors else 200)


def _template_args(milestone: str, channel: str) -> None:
    if milestone not in Milestone.values or channel not in Channel.values:
        raise Http404("No such message template.")


def _preview(request, milestone: str, channel: str, subject: str, body: str) -> dict:
    notice_settings = notice_settings_for(request.clinic)
    values = {**SAMPLE_VALUES, "clinic": request.clinic.name,
              "clinic_phone": notice_settings.phone_for_patients() or "your clinic",
              "items": items_phrase(product_names=SAMPLE_PRODUCTS, allowed=notice_settings.products_in_messages)}
    template = NoticeTemplate(subject=subject, body=body)
    rendered = compose(milestone=milestone, channel=channel, values=values, template=template)
    return {"rendered": rendered, "segments": sms_segments(rendered.body) if channel == Channel.SMS else 0}


@clinic_admin_required
def template_edit(request, milestone: str, channel: str):
    _template_args(milestone, channel)
    own = NoticeTemplate.objects.filter(clinic=request.clinic, milestone=milestone, channel=channel).first()
    subject, body = (own.subject, own.body) if own else DEFAULTS[(milestone, channel)]
    form = TemplateForm(initial={"subject": subject, "body": body})
    if request.method == "POST":
        if request.POST.get("action") == "reset":
            notice_template_reset(clinic=request.clinic, actor=request.user, milestone=milestone, channel=channel)
            messages.success(request, "Back to the default wording.")
            return redirect("notices:template", milestone=milestone, channel=channel)
        form = TemplateForm(request.POST)
        if form.is_valid():
            subject, body = form.cleaned_data["subject"], form.cleaned_data["body"]
            try:
                notice_template_save(clinic=request.clinic, actor=request.user, milestone=milestone, channel=channel,
                                     subject=subject, body=body)
            except NoticeSettingsError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, "Template saved; the next messages use it.")
                return redirect("notices:template", milestone=milestone, channel=channel)
    context = {"nav": "notices", "form": form, "milestone": milestone, "milestone_label": Milestone(milestone).label,
               "channel": channel, "channel_label": Channel(channel).label, "own": own is not None,
               "placeholders": list(PLACEHOLDERS.items()), **_preview(request, milestone, channel, subject, body)}
    return render(request, "notices/template.html", context, status=400 if form.errors else 200)


@clinic_admin_required
@require_POST
def template_preview(request, milestone: str, channel: str):
    _template_args(milestone, channel)
    form = TemplateForm(request.POST)
    subject = request.POST.get("subject", "")[:200]
    body = request.POST.get("body", "")[:2000]
    context = {"channel": channel, "problems": template_problems(channel=channel, subject=subject, body=body)
               if form.is_valid() else ["The message cannot be empty."],
               **_preview(request, milestone, channel, subject, body)}
    return render(request, "notices/template.html#preview", context)
