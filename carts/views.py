"""Coordinator cart pages. Thin: parse, call a service or selector, render a page or partial."""

from functools import wraps

from django.contrib import messages
from django.core import signing
from django.template.defaultfilters import pluralize
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from catalog.models import Product
from clinics.audit import Action
from clinics.models import Patient
from django_htmx.http import reswap, retarget

from clinics.patients import PATIENT_FIX_FIELDS, PatientError, patient_create, patient_search, patient_update
from clinics.access import record_patient_access
from clinics.tenancy import clinic_required
from fizy.lib.http import parse_id, parse_int

from fulfillment.selectors import order_line_for_clinic

from . import selectors
from .forms import CartLineForm, CsvUploadForm, PatientFixForm, PatientQuickForm
from .imports import (
    ImportFileError,
    check_refill_rows,
    import_add_rows,
    pending_import_discard,
    pending_import_for,
    pending_import_save,
    read_refill_csv,
    sample_csv,
)
from .models import ACTIVE_CART_STATUSES, CartLine
from .checkout import CheckoutError, Quote, TotalChanged, cart_checkout
from .reorder import cart_reorder_line
from .services import (
    EDITABLE_FIELDS,
    CartError,
    LineInput,
    cart_acknowledge_warning,
    cart_acknowledge_warnings,
    cart_add_lines,
    cart_get_active,
    cart_line_set_prescription,
    cart_remove_line,
    cart_update_line,
)
from .validation import blocks_adding, problems_by_field, validate_drafts
from fizy.lib.spreadsheet import csv_download
from prescriptions.forms import PrescriptionForm
from prescriptions.selectors import prescription_get
from prescriptions.services import PrescriptionError, prescription_record

TEMPLATE = "carts/cart.html"


def _cart_context(request, **extra) -> dict:
    cart = cart_get_active(clinic=request.clinic)
    review = selectors.cart_review(cart=cart)
    record_patient_access(request, (line.patient_id for line in review.lines))
    return {"nav": "cart", "review": review, **extra}


def _owned_patient(request, patient_id) -> Patient | None:
    if not patient_id:
        return None
    return get_object_or_404(Patient, pk=_id_or_404(patient_id, "patient"), organization_id=request.clinic.organization_id)


def _active_product(product_id) -> Product | None:
    if not product_id:
        return None
    return get_object_or_404(Product, pk=_id_or_404(product_id, "product"), active=True)


def _id_or_404(value, what: str) -> int:
    """An id from the query or the form; one that cannot be an id is a 404 like an unknown one."""
    pk = parse_id(value)
    if pk is None:
        raise Http404(f"No such {what}.")
    return pk


def _add_panel_context(request, *, patient=None, product=None, form=None, data=None, focus="") -> dict:
    """The add-line panel. ``focus``: after a pick, the next field to type in (the panel is
    swapped in with that field focused)."""
    initial = {}
    if patient is not None:
        record_patient_access(request, [patient])
        prescriber = selectors.last_prescriber_for(patient=patient)
        initial["prescriber"] = prescriber.pk if prescriber else None
    if form is None:
        form = CartLineForm(data=data, clinic=request.clinic, state=patient.state if patient else "",
                            initial={"quantity": 1, "refills": 0, **initial})
    if focus and patient and product:
        focus = "quantity" if form["prescriber"].value() else "prescriber"
    elif focus:
        focus = "product" if patient else "patient"
    if focus in form.fields:
        form.fields[focus].widget.attrs["autofocus"] = True
    return {"chosen_patient": patient, "chosen_product": product, "add_form": form, "focus": focus}


@clinic_required
@require_GET
def cart(request):
    return render(request, TEMPLATE, {**_cart_context(request), **_add_panel_context(request),
                                      "patient_form": PatientQuickForm(clinic=request.clinic)})


@clinic_required
@require_GET
def picker_results(request, kind: str):
    """Search-as-you-type results of the add-line panel's patient or product picker."""
    query = request.GET.get("q", "")
    if kind == "patient":
        results = list(patient_search(clinic=request.clinic, query=query))
        record_patient_access(request, results)
    else:
        results = selectors.product_search(query=query)
    return render(request, "carts/_picker.html#results", {"kind": kind, "results": results, "q": query})


@clinic_required
@require_GET
def add_panel(request):
    """Re-render the add-line panel after a patient or product was chosen."""
    clear = request.GET.getlist("clear")
    patient_id = request.GET.get("choose_patient") or request.GET.get("patient")
    product_id = request.GET.get("choose_product") or request.GET.get("product")
    patient = None if "patient" in clear else _owned_patient(request, patient_id)
    product = None if "product" in clear else _active_product(product_id)
    return render(request, f"{TEMPLATE}#add-line",
                  _add_panel_context(request, patient=patient, product=product, focus="next"))


@clinic_required
@require_POST
def patient_new(request):
    form = PatientQuickForm(request.POST, clinic=request.clinic)
    error = None
    if form.is_valid():
        try:
            patient = patient_create(clinic=request.clinic, actor=request.user, **form.cleaned_data)
        except PatientError as exc:
            error = str(exc)
    if error or not form.is_valid():
        response = render(request, f"{TEMPLATE}#new-patient",
                          {"patient_form": form, "show_patient_form": True, "patient_error": error})
        return reswap(retarget(response, "#new-patient"), "outerHTML")
    return render(request, f"{TEMPLATE}#after-new-patient", {
        **_add_panel_context(request, patient=patient, focus="next"),
        "patient_form": PatientQuickForm(clinic=request.clinic),
        "flash": [f"Patient {patient.full_name} ({patient.chart_id}) created. Now choose a product."],
    })


@clinic_required
@require_POST
def line_add(request):
    """Add a line from the panel. The line is checked by the cart's own validation first: what
    it cannot be added without (``BLOCKS_ADDING``, the same rule as the CSV import) is shown on
    the form; anything else is added and shown, with its fixes, on the cart."""
    patient = _owned_patient(request, request.POST.get("patient"))
    product = _active_product(request.POST.get("product"))
    form = CartLineForm(request.POST, clinic=request.clinic, state=patient.state if patient else "")
    problems = []
    if patient is None:
        problems.append("Choose a patient first: search by name, chart ID or date of birth.")
    if product is None:
        problems.append("Choose a product: search by name or SKU.")

    def again(**extra):
        context = _add_panel_context(request, patient=patient, product=product, form=form)
        return render(request, f"{TEMPLATE}#add-line", {**context, "add_problems": problems, **extra})

    if problems or not form.is_valid():
        return again()
    item = LineInput(patient=patient, product=product, **form.changes())
    blocking = blocks_adding(validate_drafts([item], clinic=request.clinic)[0])
    if blocking:
        return again(draft_problems=problems_by_field(blocking))
    try:
        result = cart_add_lines(clinic=request.clinic, actor=request.user, items=[item])
    except CartError as exc:
        problems.append(str(exc))
        return again()
    # Keep the patient chosen: the next line is often another product for the same patient.
    return render(request, f"{TEMPLATE}#after-add", {
        **_cart_context(request), **_add_panel_context(request, patient=patient, focus="next"),
        "flash": result.messages(),
    })


LINE_GONE = "That line is no longer in the open cart: it was removed, or the cart was ordered (see Orders)."


def cart_line_view(view):
    """A view acting on one line of the clinic's cart (``pk``): another clinic's line is a 404;
    a line of this clinic that is no longer in its active cart (a submitted cart's) gets the
    cart's lines back with a message saying so, and the action is not taken."""

    @wraps(view)
    def wrapper(request, pk):
        line = get_object_or_404(
            CartLine.objects.select_related("cart__clinic", "patient", "product", "prescriber"),
            pk=pk, cart__clinic=request.clinic,
        )
        if line.cart.status not in ACTIVE_CART_STATUSES:
            response = render(request, f"{TEMPLATE}#lines-refresh", _cart_context(request, flash_error=[LINE_GONE]))
            return reswap(retarget(response, "#cart-lines"), "outerHTML")
        return view(request, line)

    return wrapper


def _patient_changed(request, patient_id: int, *, flash=(), flash_error=()):
    """After a change to one patient's lines or details: their rows and header (a ``<tbody>``),
    the summary and the messages. The whole cart is reviewed (shipping shares, totals and the
    list of flagged lines depend on it); only that patient's part of the table is sent."""
    context = _cart_context(request, flash=list(flash), flash_error=list(flash_error))
    if not context["review"].lines:
        return reswap(retarget(render(request, f"{TEMPLATE}#lines-refresh", context), "#cart-lines"), "outerHTML")
    group = next(((p, lines) for p, lines in context["review"].groups if p.pk == patient_id), None)
    return render(request, f"{TEMPLATE}#patient-changed", {**context, "group": group, "group_patient_id": patient_id})


def _line_form(request, line, data=None) -> CartLineForm:
    return CartLineForm(data, instance=line, clinic=request.clinic, state=line.patient.state,
                        auto_id=f"line-{line.pk}-%s")  # ids unique per edited row; names as the service's fields


@clinic_required
@require_GET
@cart_line_view
def line_row(request, line):
    review = selectors.cart_review(cart=line.cart)
    reviewed = next(l for l in review.lines if l.pk == line.pk)
    record_patient_access(request, [line.patient_id])
    if request.GET.get("edit"):
        # The line's problems stay beside their fields while it is edited.
        return render(request, f"{TEMPLATE}#line-edit", {"line": reviewed, "form": _line_form(request, line)})
    return render(request, f"{TEMPLATE}#line-row", {"line": reviewed})


def _save_line(request, line, data):
    """Validate ``data`` with the line's form and save it; the patient's rows come back, or the
    edit row with what to correct."""
    form = _line_form(request, CartLine.objects.get(pk=line.pk), data)  # validation mutates the instance
    if form.is_valid():
        try:
            cart_update_line(line=line, actor=request.user, **form.changes())
        except CartError as exc:
            return _patient_changed(request, line.patient_id, flash_error=[str(exc)])
        return _patient_changed(request, line.patient_id)
    review = selectors.cart_review(cart=line.cart)
    reviewed = next(l for l in review.lines if l.pk == line.pk)
    response = render(request, f"{TEMPLATE}#line-edit", {"line": reviewed, "form": form})
    return reswap(retarget(response, f"#line-{line.pk}"), "outerHTML")


@clinic_required
@require_POST
@cart_line_view
def line_save(request, line):
    return _save_line(request, line, request.POST)


@clinic_required
@require_POST
@cart_line_view
def line_fix(request, line):
    """Apply one of a problem's fixes that sets a line field (``field``, ``value``), through the
    same form and service as an edit."""
    field, value = request.POST.get("field", ""), request.POST.get("value", "")
    if field not in EDITABLE_FIELDS:
        return _patient_changed(request, line.patient_id, flash_error=["That fix cannot be applied to a line."])
    return _save_line(request, line, CartLineForm.data_of(line, **{field: value}))


@clinic_required
@cart_line_view
def line_prescription(request, line):
    """The line's prescription, in its row: GET shows the form to record one (e-prescription
    reference, signed document, or written by the prescriber with an attestation); POST ``use``
    points the line to one on file; POST the form records it and points the line to it."""
    record_patient_access(request, [line.patient_id])
    if request.method == "POST" and request.POST.get("use"):
        prescription = prescription_get(clinic=request.clinic, pk=_id_or_404(request.POST["use"], "prescription"))
        if prescription is None:
            raise Http404
        try:
            cart_line_set_prescription(line=line, prescription=prescription, actor=request.user)
        except CartError as exc:
            return _patient_changed(request, line.patient_id, flash_error=[str(exc)])
        return _patient_changed(request, line.patient_id, flash=[f"{line.patient.full_name}'s {line.product.name} "
                                                                 f"now uses Rx {prescription.reference}."])
    if request.method == "POST":
        form = PrescriptionForm(request.POST, request.FILES, organization_id=request.clinic.organization_id)
        if form.is_valid():
            data = form.cleaned_data
            try:
                prescription = prescription_record(
                    clinic=request.clinic, patient=line.patient, product=line.product, actor=request.user,
                    prescriber=data["prescriber"], sig=data["sig"], quantity=data["quantity"],
                    days_supply=data["days_supply"], refills_authorized=data["refills_authorized"],
                    written_on=data["written_on"], source=data["source"], erx_message_id=data["erx_message_id"],
                    rx_number=data["rx_number"], document=data["document"], attested_name=data["attested_name"],
                )
                cart_line_set_prescription(line=line, prescription=prescription, actor=request.user)
            except (PrescriptionError, CartError) as exc:
                form.add_error(None, str(exc))
            else:
                return _patient_changed(request, line.patient_id, flash=[
                    f"Recorded Rx {prescription.reference} for {line.patient.full_name}'s {line.product.name}."])
    elif request.GET.get("cancel"):
        return _patient_changed(request, line.patient_id)
    else:
        form = PrescriptionForm(initial=PrescriptionForm.initial_for(line), organization_id=request.clinic.organization_id)
    return render(request, f"{TEMPLATE}#line-prescription", {"line": line, "rx_form": form})


@clinic_required
@require_POST
@cart_line_view
def line_remove(request, line):
    try:
        cart_remove_line(line=line, actor=request.user)
    except CartError as exc:
        return _patient_changed(request, line.patient_id, flash_error=[str(exc)])
    return _patient_changed(request, line.patient_id,
                            flash=[f"Removed {line.product.name} for {line.patient.full_name}."])


@clinic_required
@require_POST
@cart_line_view
def line_acknowledge(request, line):
    """The coordinator has seen a warning (e.g. duplicate therapy) and orders anyway."""
    try:
        cart_acknowledge_warning(line=line, code=request.POST.get("code", ""), actor=request.user)
    except CartError as exc:
        return _patient_changed(request, line.patient_id, flash_error=[str(exc)])
    return _patient_changed(request, line.patient_id)


@clinic_required
@require_POST
def acknowledge_all(request):
    """Every open warning of the cart acknowledged at once."""
    try:
        count = cart_acknowledge_warnings(clinic=request.clinic, actor=request.user)
    except CartError as exc:
        return render(request, f"{TEMPLATE}#lines-refresh", _cart_context(request, flash_error=[str(exc)]))
    flash = [f"Acknowledged {count} warning{pluralize(count)}: those lines will be ordered."] if count else []
    return render(request, f"{TEMPLATE}#lines-refresh", _cart_context(request, flash=flash))


@clinic_required
@require_GET
def validate(request):
    """Re-route and re-validate the whole cart: the lines, their problems and the summary."""
    context = _cart_context(request)
    counts = context["review"].problem_counts
    flash = (["The cart validates clean: it is ready to order."] if context["review"].can_checkout else
             [f"{counts.errors} problem{'s' if counts.errors != 1 else ''} to fix before ordering."]
             if counts.errors else [])
    return render(request, f"{TEMPLATE}#lines-refresh", {**context, "flash": flash})


def _cart_patient(request, pk) -> Patient:
    """A patient who has a line in this clinic's cart (the cart only edits its own patients)."""
    cart = cart_get_active(clinic=request.clinic)
    return get_object_or_404(Patient.objects.distinct(), pk=pk, organization_id=request.clinic.organization_id,
                             cart_lines__cart=cart)


@clinic_required
def patient_fix(request, pk):
    """Fix a patient's date of birth and shipping address in place, from their group in the cart:
    the whole set (Edit patient), or the one field a problem asks for (``fields``)."""
    patient = _cart_patient(request, pk)
    record_patient_access(request, [patient])
    if request.method == "GET":
        if request.GET.get("cancel"):
            return _patient_changed(request, patient.pk)
        return render(request, f"{TEMPLATE}#patient-fix", {"patient": patient, "form": PatientFixForm(instance=patient)})
    only = [name for name in request.POST.getlist("fields") if name in PATIENT_FIX_FIELDS] or None
    form = PatientFixForm(request.POST, instance=Patient.objects.get(pk=patient.pk), fields=only)  # validation mutates it
    if not form.is_valid():
        if only:  # a one-field fix typed in a problem: say what is wrong there
            errors = [f"{patient.full_name}: {error}" for errors in form.errors.values() for error in errors]
            return _patient_changed(request, patient.pk, flash_error=errors)
        response = render(request, f"{TEMPLATE}#patient-fix", {"patient": patient, "form": PatientFixForm(
            request.POST, instance=Patient.objects.get(pk=patient.pk))})
        return reswap(retarget(response, f"#patient-head-{patient.pk}"), "outerHTML")
    patient_update(patient=patient, clinic=request.clinic, actor=request.user, **form.cleaned_data)
    return _patient_changed(request, patient.pk, flash=[f"Saved {patient.full_name}'s details."])


# --- Checkout ------------------------------------------------------------------------------

QUOTE_SALT = "fizy.carts.checkout.quote"


def _read_quote(value: str) -> Quote | None:
    """The prices the review page showed, signed so they cannot be edited in the browser."""
    try:
        return Quote.from_dict(signing.loads(value or "", salt=QUOTE_SALT))
    except (signing.BadSignature, KeyError, TypeError, ValueError, ArithmeticError):
        return None


@clinic_required
def checkout(request):
    cart = cart_get_active(clinic=request.clinic)
    error, changes = None, None
    if request.method == "POST":
        version = request.POST.get("version", "")
        quote = _read_quote(request.POST.get("quote", ""))
        try:
            if quote is None:
                raise CheckoutError("Check the total on this page, then place the order.")
            order = cart_checkout(clinic=request.clinic, actor=request.user, quote=quote,
                                  expected_version=parse_int(version, minimum=0))
        except TotalChanged as exc:
            error, changes = str(exc), exc.changes
        except CheckoutError as exc:
            error = str(exc)
        else:
            lines, pharmacies = order.lines.count(), order.partner_orders.count()
            messages.success(request, f"Order {order.number} placed: {lines} line{pluralize(lines)} going to "
                                      f"{pharmacies} pharmac{pluralize(pharmacies, 'y,ies')}. Follow each line here.")
            return redirect("fulfillment:order", pk=order.pk)
        cart = cart_get_active(clinic=request.clinic)
    review = selectors.cart_review(cart=cart)
    record_patient_access(request, (line.patient_id for line in review.lines))
    return render(request, "carts/checkout.html", {
        "nav": "cart", "review": review, "by_partner": selectors.lines_by_partner(review.lines),
        "by_patient": selectors.lines_by_patient(review),
        "clinic": request.clinic, "error": error, "changes": changes,
        "quote": signing.dumps(Quote.of(review.price).as_dict(), salt=QUOTE_SALT),
    })


# --- Refills due -------------------------------------------------------------------------

REFILL_WINDOWS = [3, 7, 14, 30]


@clinic_required
def refills(request):
    cart = cart_get_active(clinic=request.clinic)
    if request.method == "POST":
        return _refills_add(request, cart)
    days = _refill_window(request.GET.get("days"))
    due = selectors.refills_due(clinic=request.clinic, within_days=days, cart=cart)
    record_patient_access(request, (d.patient for d in due))
    return render(request, "carts/refills.html", {"nav": "refills", "due": due, "days": days,
                                                 "windows": REFILL_WINDOWS,
                                                 "needed": selectors.prescriptions_needed(clinic=request.clinic)})


@clinic_required
@require_GET
def prescriptions_needed_csv(request):
    """"Needs a new prescription" as a CSV for the prescribers (formula-safe cells)."""
    rows = [
        [str(prescriber or ""), getattr(prescriber, "npi", ""), n.patient.chart_id, n.patient.full_name,
         n.patient.date_of_birth.isoformat() if n.patient.date_of_birth else "", str(n.product),
         n.prescription.reference if n.prescription else "", n.reason,
         n.runs_out_on.isoformat() if n.runs_out_on else ""]
        for prescriber, items in selectors.prescriptions_needed(clinic=request.clinic) for n in items
    ]
    return csv_download(filename="needs-a-new-prescription.csv", rows=rows, header=[
        "prescriber", "prescriber_npi", "chart_id", "patient", "date_of_birth", "product", "last_rx", "why",
        "runs_out_on"])


def _refill_window(value, default: int = 7) -> int:
    """The "running out within N days" choice, from the query or the form: 0–90 days."""
    return min(parse_int(value, default=default, minimum=0), 90)


def _refills_add(request, cart):
    """Add the selected refills; say which selected ones were not added, and why."""
    days = _refill_window(request.POST.get("days"))  # the window the coordinator was looking at
    chosen, skipped = selectors.refills_chosen(clinic=request.clinic, keys=request.POST.getlist("item"),
                                               within_days=days, cart=cart)
    for item in skipped:
        messages.warning(request, f"Skipped {item}")
    if not chosen:
        if not skipped:
            messages.warning(request, "Select at least one patient to add to the cart.")
        return redirect(f"{request.path}?days={days}")
    items = [
        LineInput(patient=d.patient, product=d.product, prescriber=d.last_line.prescriber,
                  quantity=d.last_line.quantity, sig=d.last_line.sig, days_supply=d.last_line.days_supply,
                  clinical_difference=d.last_line.clinical_difference)
        for d in sorted(chosen, key=lambda d: d.key)
    ]
    try:
        result = cart_add_lines(clinic=request.clinic, items=items, actor=request.user, action=Action.CART_REFILL)
    except CartError as exc:
        messages.error(request, str(exc))
        return redirect(f"{request.path}?days={days}")
    for text in result.messages():
        messages.success(request, text)
    return redirect("carts:cart")


# --- CSV import ----------------------------------------------------------------------------

@clinic_required
def import_csv(request):
    context = {"nav": "import", "form": CsvUploadForm()}
    if request.method == "POST":
        form = CsvUploadForm(request.POST, request.FILES)
        context["form"] = form
        if form.is_valid():
            try:
                records = read_refill_csv(form.cleaned_data["file"])
            except ImportFileError as exc:
                form.add_error("file", str(exc))
            else:
                rows = check_refill_rows(clinic=request.clinic, records=records)
                pending_import_save(clinic=request.clinic, owner=request.user, records=records)
                context["rows"] = rows
                record_patient_access(request, (r.patient for r in rows))
                context["good"] = sum(1 for r in rows if r.ok)
                context["flagged"] = sum(1 for r in rows if r.flagged)
    return render(request, "carts/import.html", context)


@clinic_required
@require_POST
def import_confirm(request):
    pending = pending_import_for(clinic=request.clinic, owner=request.user)
    if pending is None:
        messages.error(request, "There is no uploaded file to add (an upload waits an hour at most); "
                                "upload the CSV again.")
        return redirect("carts:import")
    rows = check_refill_rows(clinic=request.clinic, records=pending.rows)  # re-checked: the data may have changed
    good = [r for r in rows if r.ok]
    bad = [r for r in rows if not r.ok]
    if good:
        try:
            result = import_add_rows(clinic=request.clinic, rows=good, actor=request.user)
        except (CartError, PrescriptionError) as exc:
            messages.error(request, str(exc))
            return redirect("carts:import")
        for text_ in result.messages():
            messages.success(request, text_)
    pending_import_discard(clinic=request.clinic, owner=request.user)
    if bad:
        record_patient_access(request, (r.patient for r in bad))
        return render(request, "carts/import.html", {
            "nav": "import", "form": CsvUploadForm(), "rows": bad, "after_confirm": True, "added": len(good),
        })
    return redirect("carts:cart")


@clinic_required
@require_POST
def import_cancel(request):
    """The coordinator does not add the uploaded file: it is forgotten."""
    if pending_import_discard(clinic=request.clinic, owner=request.user):
        messages.success(request, "The uploaded file was discarded; nothing was added to the cart.")
    return redirect("carts:import")


@clinic_required
@require_GET
def import_sample(request):
    response = HttpResponse(sample_csv(clinic=request.clinic), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="fizy-refill-list-sample.csv"'
    return response


# --- Re-order from Needs attention ----------------------------------------------------------


@clinic_required
@require_POST
def reorder(request, line_pk: int):
    """One click: a rejected (or unsent) order line back in the cart, the pharmacy's problem flagged."""
    if order_line_for_clinic(clinic=request.clinic, line_pk=line_pk) is None:
        raise Http404("No such order line in this clinic.")
    try:
        line, _ = cart_reorder_line(clinic=request.clinic, order_line_id=line_pk, actor=request.user)
    except CartError as exc:
        messages.error(request, str(exc))
        return redirect("fulfillment:attention")
    flagged = line.pharmacy_flag.get("field", "").replace("_", " ")
    messages.success(request, f"{line.product.name} for {line.patient.full_name} is back in the cart"
                              + (f", with the {flagged} flagged: fix it before checkout." if flagged else "."))
    return redirect("carts:cart")
