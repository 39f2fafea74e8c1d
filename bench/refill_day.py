"""Refill day under load (issue 12, item 8). Not a test: it prints a table.

    .venv/bin/python bench/refill_day.py                 # 50 clinics × 40 lines (the full run)
    .venv/bin/python bench/refill_day.py --clinics 3     # a quick check on a busy machine

N clinics (default 50) each place one 40-line order at the same time, over HTTP, as a
coordinator does it: log in, open the cart, add 40 lines one by one (20 patients × 2 products),
open the review page, place the order, open the order page. Against gunicorn (2 sync workers)
with 2 ``qcluster`` workers (ORM broker, or Redis with ``--redis``) and PostgreSQL, on this
machine; the partners are the built-in sandbox pharmacies served by the same gunicorn, which take
the orders and send their signed status webhooks back to it while the load runs.

It prints: orders per minute, p50/p95 of each page, the time from each order's commit until
every one of its partner orders is sent, errors (HTTP answers other than the expected, partner
orders failed, webhooks not applied), and at the end — once the sandbox has played every step,
or ``--settle-seconds`` have passed — ``check_money`` and the lost lines (cart lines that did not
become order lines, order lines never sent). The load average is printed beside the table.

It drops and recreates its own database (``fizy_bench_refill``), never another one. Everything it
starts is stopped on exit, Ctrl-C or error; logs are in the ``/tmp/fizy-bench-*`` directory printed
at the start.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import html
import http.client
import io
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import PYTHON, bench_env, loadavg, machine_info, recreate_database  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/fizy_bench_refill"
PASSWORD = "bench-refill-pw-1"
PATIENTS_PER_CLINIC = 20
PRODUCTS_PER_PATIENT = 2
STEP_DELAYS = "15,45,90,150"  # the sandbox's own default: seconds after an order until each step
PAGES = ["login", "cart", "add line", "review", "place order", "order page"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clinics", type=int, default=50, help="clinics ordering at once (default 50)")
    p.add_argument("--lines", type=int, default=40, help="lines per order (default 40; 2 per patient)")
    p.add_argument("--redis", action="store_true", help="django-q2's Redis broker (REDIS_URL, default 127.0.0.1:6379)")
    p.add_argument("--settle-seconds", type=float, default=420,
                   help="how long to wait after the load for every line's final answer (default 420)")
    p.add_argument("--step-delays", default=STEP_DELAYS,
                   help=f"the sandbox's seconds to each of its 4 steps (default {STEP_DELAYS})")
    p.add_argument("--database-url", default=os.environ.get("BENCH_REFILL_DATABASE_URL", DEFAULT_DATABASE_URL))
    args = p.parse_args(argv)
    if not 1 <= args.clinics <= 500 or not 2 <= args.lines <= 200 or args.lines % PRODUCTS_PER_PATIENT:
        p.error("--clinics must be 1..500 and --lines an even number 2..200")
    db = urlparse(args.database_url)
    if not db.path.lstrip("/").startswith("fizy_bench") or db.hostname not in ("127.0.0.1", "localhost"):
        p.error("the bench only uses its own local database whose name starts with fizy_bench")
    return args


# --- the world ---------------------------------------------------------------------------------


def seed_clinics(n_clinics: int, patients_per_clinic: int) -> list[dict]:
    """``seed_demo``, then N clinics of the demo organization (copies of its Austin clinic, each
    with its coordinator and saved card) and their Texas patients. Returns what each client needs."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import transaction
    from django.db.models import F, Value
    from django.db.models.functions import Greatest

    from bench.world import CLINIC_NAME, PRESCRIBER_LAST_NAME, PRODUCT_SIGS
    from catalog.models import Offering, Partner, Product
    from clinics.models import Clinic, Membership, Patient, Prescriber
    from fizy import demo_data
    from prescriptions.models import Prescription
    from prescriptions.services import prescription_record

    call_command("seed_demo", stdout=io.StringIO())
    austin = Clinic.objects.get(name=CLINIC_NAME)
    org = austin.organization
    prescriber = Prescriber.objects.get(organization=org, last_name=PRESCRIBER_LAST_NAME)
    products = [p for sku in PRODUCT_SIGS for p in Product.objects.filter(sku=sku)]
    for partner in Partner.objects.all():  # every partner reports by webhook; none is polled
        partner.status_api = False
        partner.save(update_fields=["status_api"])
    # The pharmacies stocked up for the day: whatever they carry, they have enough for every line
    # of the load (the demo's small stocks would turn the run into a test of stock-outs: an order
    # whose last units another clinic took first is refused before any charge, as it should be).
    Offering.objects.filter(product__in=products, stock_quantity__gt=0).update(
        stock_quantity=Greatest(F("stock_quantity"), Value(n_clinics * patients_per_clinic * PRODUCTS_PER_PATIENT)))
    streets = demo_data._ADDRESSES["TX"]
    written_on = datetime.date.today() - datetime.timedelta(days=7)
    User = get_user_model()
    clinics = []
    with transaction.atomic():
        for c in range(n_clinics):
            clinic = Clinic.objects.get(pk=austin.pk)
            clinic.pk = None
            clinic.name = f"Refill Day Clinic {c + 1:03d}"
            clinic.save()
            user = User.objects.create_user(username=f"refill{c + 1:03d}", password=PASSWORD,
                                            first_name="Coordinator", last_name=f"{c + 1:03d}")
            Membership.objects.create(user=user, clinic=clinic)
            patients = Patient.objects.bulk_create([
                Patient(
                    organization=org, chart_id=f"RD{c + 1:03d}-{i:03d}", first_name=demo_data._FIRST[i % len(demo_data._FIRST)],
                    last_name=f"{demo_data._LAST[(c * 7 + i) % len(demo_data._LAST)]}{c + 1:03d}{i:03d}",
                    date_of_birth=datetime.date(1950 + (c + i) % 50, 1 + i % 12, 1 + i % 28),
                    email=f"rd{c}-{i}@mail.example", address_line1=f"{100 + i} {streets[i % len(streets)][0].split(' ', 1)[1]}",
                    city=streets[i % len(streets)][1], state="TX", zip_code=streets[i % len(streets)][2],
                )
                for i in range(patients_per_clinic)
            ])
            lines = []
            for i, patient in enumerate(patients):
                for k in range(PRODUCTS_PER_PATIENT):
                    product = products[(i * PRODUCTS_PER_PATIENT + k + c) % len(products)]
                    # The prescription of record the line will use (an e-prescription on file).
                    prescription_record(
                        clinic=clinic, patient=patient, prescriber=prescriber, product=product,
                        sig=PRODUCT_SIGS[product.sku], quantity=1, days_supply=30, refills_authorized=1,
                        written_on=written_on, source=Prescription.Source.ERX, rx_number=f"RD-{patient.pk}-{product.pk}",
                        actor=None,
                    )
                    lines.append({
                        "patient": patient.pk, "product": product.pk, "prescriber": prescriber.pk, "quantity": 1,
                        "sig": PRODUCT_SIGS[product.sku], "days_supply": 30, "refills": 1,
                        "clinical_difference": ("Patient is allergic to an excipient of the commercial product."
                                                if product.requires_clinical_difference else ""),
                    })
            clinics.append({"clinic_id": clinic.pk, "username": user.username, "lines": lines})
    return clinics


# --- one coordinator over HTTP -------------------------------------------------------------------

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
CHECKOUT_ERROR = re.compile(r'id="checkout-error">(.*?)</li>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="(version|quote)" value="([^"]*)">')


class Browser:
    """Cookies, CSRF and timings of one coordinator's HTTP session (http.client, keep-alive off)."""

    def __init__(self, port: int, timings: dict, errors: list, lock: threading.Lock):
        self.port, self.timings, self.errors, self.lock = port, timings, errors, lock
        self.cookies: dict[str, str] = {}

    def request(self, page: str, method: str, path: str, *, form: dict | None = None, expect=(200,), headers=None,
                explain: re.Pattern | None = None):
        """One request; an answer other than ``expect`` is an error, quoting what the page said
        where ``explain`` finds it."""
        body = urlencode(form).encode() if form is not None else None
        sent = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
            sent["X-CSRFToken"] = self.cookies.get("csrftoken", "")
            sent["Referer"] = f"http://127.0.0.1:{self.port}{path}"
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            conn.close()
        except OSError as exc:
            with self.lock:
                self.errors.append(f"{page}: {exc.__class__.__name__}: {exc}")
            return None, ""
        elapsed = time.perf_counter() - started
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        with self.lock:
            self.timings[page].append(elapsed)
            if response.status not in expect:
                said = explain.search(text) if explain else None
                self.errors.append(f"{page}: HTTP {response.status} for {method} {path}"
                                   + (f" ({html.unescape(said.group(1)).strip()})" if said else ""))
        return response, text


def place_one_order(port: int, client: dict, timings: dict, errors: list, lock: threading.Lock, start: threading.Event) -> float | None:
    """Log in, fill the cart line by line, review, place the order, open it. Returns when the
    order was placed (time.time()), or None if it was not."""
    browser = Browser(port, timings, errors, lock)
    start.wait()
    _, page = browser.request("login", "GET", "/login/")
    token = CSRF_INPUT.search(page)
    response, _ = browser.request("login", "POST", "/login/", expect=(302,), form={
        "csrfmiddlewaretoken": token.group(1) if token else "", "username": client["username"], "password": PASSWORD})
    if response is None or response.status != 302:
        return None
    browser.request("cart", "GET", "/cart/")
    for line in client["lines"]:
        response, text = browser.request("add line", "POST", "/cart/lines", form=line, headers={"HX-Request": "true"})
        if response is not None and response.status == 200 and '<ul class="field-error" role="alert">' in text:
            with lock:
                errors.append("add line: refused")
    _, review = browser.request("review", "GET", "/cart/checkout")
    fields = {name: html.unescape(value) for name, value in HIDDEN.findall(review)}
    if set(fields) != {"version", "quote"}:
        with lock:
            errors.append("review: no place-order form (the cart has problems?)")
        return None
    response, _ = browser.request("place order", "POST", "/cart/checkout", expect=(302,), form=fields,
                                  explain=CHECKOUT_ERROR)
    if response is None or response.status != 302:
        return None
    placed = time.time()
    location = response.getheader("Location") or ""
    browser.request("order page", "GET", urlparse(location).path)
    return placed


# --- the run -------------------------------------------------------------------------------------


def wait_settled(*, order_ids, deadline: float, proc_checks) -> bool:
    """Until every line of the orders has its final answer (or is on hold), or the deadline."""
    from fulfillment.models import OrderLine

    waiting = {OrderLine.Status.PENDING, OrderLine.Status.SENT, OrderLine.Status.ACCEPTED,
               OrderLine.Status.COMPOUNDING, OrderLine.Status.SHIPPED}
    while time.monotonic() < deadline:
        if not OrderLine.objects.filter(order_id__in=order_ids, status__in=waiting).exists():
            return True
        proc_checks()
        time.sleep(2)
    return False


def report(args, info, *, wall, placed, timings, errors, dispatch, counts, money, lost, settled, loads) -> str:
    from bench.measure import percentile

    out = ["## Refill day: %d clinics × %d lines, over HTTP" % (args.clinics, args.lines), ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += ["", f"- load average (1, 5, 15 min) before / during / after: {loads['before']} / "
                f"{loads['during']} / {loads['after']}", ""]
    out += ["| measure | value |", "| --- | --- |",
            f"| orders placed | {placed} of {args.clinics} |",
            f"| wall time of the load | {wall:.1f} s |",
            f"| orders per minute | {placed / wall * 60:.1f} |" if wall else "| orders per minute | – |"]
    if dispatch:
        out.append(f"| commit → every partner order sent, p50 / p95 / max | {percentile(dispatch, 50):.2f} / "
                   f"{percentile(dispatch, 95):.2f} / {max(dispatch):.2f} s |")
    out += [f"| errors (HTTP) | {len(errors)} |",
            f"| partner orders failed / not sent | {counts['po_failed']} / {counts['po_unsent']} |",
            f"| webhooks stored / applied / duplicate / other | {counts['wh_total']} / {counts['wh_applied']} / "
            f"{counts['wh_duplicate']} / {counts['wh_other']} |",
            f"| lines at the end | {counts['line_statuses']} |",
            f"| every line answered (within {args.settle_seconds:.0f} s) | {'yes' if settled else 'NO'} |",
            f"| lost lines (cart lines not ordered + order lines never sent) | {lost} |",
            f"| check_money | {money} |", "",
            "| page | requests | p50 ms | p95 ms | max ms |", "| --- | ---: | ---: | ---: | ---: |"]
    for page in PAGES:
        samples = timings.get(page) or []
        if samples:
            out.append(f"| {page} | {len(samples)} | {percentile(samples, 50) * 1000:.0f} | "
                       f"{percentile(samples, 95) * 1000:.0f} | {max(samples) * 1000:.0f} |")
    if errors:
        out += ["", "Errors (each distinct one, with how many times):",
                *[f"- {n} × {e}" for e, n in Counter(errors).most_common(20)]]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    from bench.servers import Managed, free_port, wait_http

    port = free_port()
    extra = {
        "SANDBOX_PARTNERS": "true", "FIZY_ALLOW_SANDBOX": "true", "SANDBOX_WEBHOOK_BASE_URL": f"http://127.0.0.1:{port}",
        "SANDBOX_STEP_DELAYS": args.step_delays, "Q_WORKERS": "2",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0") if args.redis else "",
        "Q_CLUSTER_NAME": f"fizy-bench-refill-{os.getpid()}",
    }
    os.environ.update(bench_env(args.database_url, **extra))
    log_dir = Path(tempfile.mkdtemp(prefix="fizy-bench-"))
    managed = Managed(log_dir)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    atexit.register(managed.stop_all)
    try:
        print(f"refill day: {args.clinics} clinics × {args.lines} lines; database {args.database_url}; "
              f"logs in {log_dir}", flush=True)
        recreate_database(args.database_url)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        clients = seed_clinics(args.clinics, args.lines // PRODUCTS_PER_PATIENT)
        info = machine_info(args.database_url)
        info["broker"] = "Redis" if args.redis else "ORM (PostgreSQL)"
        loads = {"before": loadavg()}
        print(f"  seeded {len(clients)} clinics; load {loads['before']}", flush=True)

        env = os.environ.copy()
        gunicorn = managed.start("gunicorn", [str(Path(PYTHON).parent / "gunicorn"), "fizy.wsgi:application",
                                              "--workers", "2", "--worker-class", "sync", "--bind", f"127.0.0.1:{port}",
                                              "--backlog", "2048", "--log-level", "warning", "--timeout", "120"], env, ROOT)
        qcluster = managed.start("qcluster", [PYTHON, "manage.py", "qcluster"], env, ROOT)
        wait_http(port, "/login/", timeout=90, proc=gunicorn)

        def alive():
            for name, proc in (("gunicorn", gunicorn), ("qcluster", qcluster)):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}); see {log_dir}/{name}.log")

        timings: dict[str, list[float]] = defaultdict(list)
        errors: list[str] = []
        lock, start = threading.Lock(), threading.Event()
        print("  ordering…", flush=True)
        with ThreadPoolExecutor(max_workers=args.clinics) as pool:
            futures = [pool.submit(place_one_order, port, c, timings, errors, lock, start) for c in clients]
            t0 = time.time()
            start.set()
            placed_at = [f.result() for f in futures]
        wall = max((t for t in placed_at if t), default=t0) - t0
        loads["during"] = loadavg()
        placed = sum(1 for t in placed_at if t)
        print(f"  {placed} orders placed in {wall:.1f} s (load {loads['during']}); waiting for dispatch and the "
              f"sandbox's webhooks…", flush=True)

        from fulfillment.models import Order, OrderLine, PartnerOrder, WebhookEvent

        clinic_ids = [c["clinic_id"] for c in clients]
        order_ids = list(Order.objects.filter(clinic_id__in=clinic_ids).values_list("pk", flat=True))
        send_deadline = time.monotonic() + 300
        while PartnerOrder.objects.filter(order_id__in=order_ids, status__in=["queued", "sending"]).exists():
            if time.monotonic() > send_deadline:
                break
            alive()
            time.sleep(0.5)
        dispatch = []
        for order in Order.objects.filter(pk__in=order_ids).prefetch_related("partner_orders"):
            sent = [po.sent_at for po in order.partner_orders.all()]
            if sent and all(sent):
                dispatch.append((max(sent) - order.placed_at).total_seconds())
        settled = wait_settled(order_ids=order_ids, deadline=time.monotonic() + args.settle_seconds, proc_checks=alive)
        time.sleep(5)  # the last answers' settlement tasks
        loads["after"] = loadavg()

        ordered = OrderLine.objects.filter(order_id__in=order_ids)
        never_sent = ordered.filter(status__in=[OrderLine.Status.PENDING, OrderLine.Status.FAILED]).count()
        lost = (placed * args.lines - ordered.count()) + never_sent
        webhooks = Counter(WebhookEvent.objects.values_list("outcome", flat=True))
        counts = {
            "po_failed": PartnerOrder.objects.filter(order_id__in=order_ids, status="failed").count(),
            "po_unsent": PartnerOrder.objects.filter(order_id__in=order_ids).exclude(status="sent").count(),
            "wh_total": sum(webhooks.values()), "wh_applied": webhooks.get("applied", 0),
            "wh_duplicate": webhooks.get("duplicate", 0),
            "wh_other": sum(n for k, n in webhooks.items() if k not in ("applied", "duplicate")),
            "line_statuses": ", ".join(f"{s} {n}" for s, n in sorted(Counter(ordered.values_list("status", flat=True)).items())),
        }
        output = io.StringIO()
        try:
            call_command("check_money", stdout=output)
            money = output.getvalue().strip().splitlines()[-1]
        except Exception as exc:  # CommandError: violations were printed above it
            money = f"FAILED: {exc} " + " | ".join(output.getvalue().strip().splitlines()[:5])
        text = report(args, info, wall=wall, placed=placed, timings=timings, errors=errors, dispatch=dispatch,
                      counts=counts, money=money, lost=lost, settled=settled, loads=loads)
        print()
        print(text)
        return 0 if not errors and not lost and placed == args.clinics else 1
    finally:
        managed.stop_all()


if __name__ == "__main__":
    sys.exit(main())
