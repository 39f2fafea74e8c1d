"""Coordinator pages: orders, one order's lines (polled by HTMX), a line's history, needs attention.

Every view goes through ``clinic_required`` and looks ids up inside ``request.clinic``: another
clinic's order or line is a 404.
"""

from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render

from clinics.tenancy import clinic_required

from . import selectors
from .models import OrderLine

POLL_SECONDS = 5


@clinic_required
def orders(request):
    page = Paginator(selectors.orders_for_clinic(clinic=request.clinic), 25).get_page(request.GET.get("page"))
    context = {"nav": "orders", "page": page, "orders": selectors.orders_with_summary(page.object_list)}
    return render(request, "fulfillment/orders.html", context)


@clinic_required
def order(request, pk: int):
    found = selectors.order_for_clinic(clinic=request.clinic, pk=pk)
    if found is None:
        raise Http404("No such order in this clinic.")
    status = request.GET.get("status", "")
    if status not in OrderLine.Status.values:
        status = ""
    search = request.GET.get("q", "").strip()[:100]
    counts = selectors.order_status_counts(order=found)
    context = {
        "nav": "orders",
        "order": found,
        "lines": selectors.order_lines(order=found, status=status, search=search),
        "status": status,
        "q": search,
        "statuses": OrderLine.Status.choices,
        "summary": selectors.status_summary(counts),
        "n_lines": sum(counts.values()),
        "poll_seconds": 0 if selectors.order_is_settled_for_status(counts) else POLL_SECONDS,
    }
    template = "fulfillment/order.html#order-lines" if request.htmx else "fulfillment/order.html"
    return render(request, template, context)


@clinic_required
def line(request, pk: int, line_pk: int):
    found = selectors.line_for_clinic(clinic=request.clinic, order_pk=pk, line_pk=line_pk)
    if found is None:
        raise Http404("No such line in this clinic.")
    context = {"nav": "orders", "line": found, "order": found.order, "events": selectors.line_events(line=found)}
    template = "fulfillment/line.html#line-history" if request.htmx else "fulfillment/line.html"
    return render(request, template, context)


@clinic_required
def attention(request):
    context = {
        "nav": "attention",
        "lines": selectors.attention_lines(clinic=request.clinic),
        "days": selectors.ATTENTION_DAYS,
    }
    return render(request, "fulfillment/attention.html", context)
