"""Fizy benchmarks on PostgreSQL (issue 7). Not a test: it prints timings and query counts.

    .venv/bin/python bench/run.py [--sizes 20,200,1000] [--repeat 15] [--skip-webhooks] [--skip-dispatch]

What it does, in order (see bench/README.md):
  1. drops and recreates its own database (``fizy_bench``), migrates it, runs ``seed_demo`` and adds
     generated Texas patients; every partner's order API points at a stub on 127.0.0.1;
  2. per cart size, in this process, DEBUG off: (a) GET /cart/ through Django's test Client as
     the coordinator, (b) cart_add_lines of one line, (c) cart_review (route + validate_cart),
     (g) the HTMX row actions (save a line, apply a fix, remove a line),
     (d) cart_checkout with the sandbox gateway (dispatch is queued, no worker runs: no network);
  3. (f) with ``manage.py qcluster`` (Q_WORKERS=2) running, time from checkout commit until every
     PartnerOrder is sent to the stub partner;
  4. (e) webhook ingestion against gunicorn (2 sync workers): signed events from client processes.
Everything it starts is stopped on exit, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import datetime
import io
import json
import os
import platform
import pstats
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/fizy_bench"
PYTHON = sys.executable


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="20,200,1000", help="cart sizes in lines (default 20,200,1000)")
    p.add_argument("--repeat", type=int, default=15, help="timed runs per measurement for (a)-(c) (default 15)")
    p.add_argument("--checkout-repeat", type=int, default=3, help="timed checkouts per size (default 3)")
    p.add_argument("--dispatch-repeat", type=int, default=3, help="timed dispatches per size (default 3)")
    p.add_argument("--max-seconds", type=float, default=60, help="time bound per measurement loop (default 60)")
    p.add_argument("--skip-webhooks", action="store_true", help="skip (e), the gunicorn webhook load")
    p.add_argument("--skip-dispatch", action="store_true", help="skip (f), the qcluster dispatch latency")
    p.add_argument("--webhook-events", type=int, default=4000, help="signed events to send (4 per line; default 4000)")
    p.add_argument("--webhook-clients", type=int, default=4, help="concurrent client processes (default 4)")
    p.add_argument("--webhook-seconds", type=float, default=60, help="time bound of the webhook load (default 60)")
    p.add_argument("--webhook-conn-max-age", default="0,60",
                   help="CONN_MAX_AGE values to run gunicorn with, one load each (default 0,60)")
    p.add_argument("--profile", action="store_true",
                   help="also cProfile the cart page, validation and webhook handling at 200 lines")
    p.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
                   help=f"the bench's own database, dropped and recreated (default {DEFAULT_DATABASE_URL})")
    p.add_argument("--json", default="", help="also write the results here as JSON")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.webhook_conn_max_age = [int(s) for s in args.webhook_conn_max_age.split(",") if s.strip()]
    for n in (args.repeat, args.checkout_repeat, args.dispatch_repeat, args.webhook_clients):
        if not 1 <= n <= 1000:
            p.error("repeat counts and clients must be between 1 and 1000")
    if not 1 <= args.webhook_events <= 100_000 or not 1 <= args.webhook_seconds <= 600:
        p.error("--webhook-events must be 1..100000 and --webhook-seconds 1..600")
    db = urlparse(args.database_url)
    if not db.path.lstrip("/").startswith("fizy_bench") or db.hostname not in ("127.0.0.1", "localhost"):
        p.error("the bench only uses its own local database whose name starts with fizy_bench")
    return args


def _fernet_key() -> str:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def bench_env(database_url: str, **extra) -> dict:
    """The environment of this process and of every server it starts: production-like settings."""
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "fizy.settings",
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": env.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SANDBOX_PARTNERS": "false",
        "PAYMENT_GATEWAY": "sandbox",
        "STRIPE_SECRET_KEY": "",
        # DEBUG off needs its own encryption key and an explicit allowance for the sandboxes.
        "FIELD_ENCRYPTION_KEYS": env.get("BENCH_FIELD_ENCRYPTION_KEYS") or _fernet_key(),
        "FIZY_ALLOW_SANDBOX": "true",
        "Q_WORKERS": "2",
        "Q_SYNC": "false",
        "REDIS_URL": "",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def recreate_database(database_url: str) -> None:
    db = urlparse(database_url)
    name = db.path.lstrip("/")
    conn = ["-h", db.hostname or "127.0.0.1", "-p", str(db.port or 5432), "-U", db.username or "postgres"]
    subprocess.run(["dropdb", *conn, "--if-exists", "--force", name], check=True)
    subprocess.run(["createdb", *conn, name], check=True)


def machine_info(database_url: str) -> dict:
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception as exc:  # informational only
            return f"? ({exc})"

    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("show server_version")
        pg = cur.fetchone()[0]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": sh("nproc"),
        "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "memory": sh("free -h | awk '/^Mem:/ {print $2\" total, \"$7\" available\"}'"),
        "python": platform.python_version(),
        "postgresql": pg,
        "django": __import__("django").get_version(),
        "gunicorn": sh(f"{Path(PYTHON).parent / 'gunicorn'} --version"),
        "load_before": sh("cat /proc/loadavg"),
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split(" ")[:3])


# --- (a)-(d): in-process measurements ------------------------------------------------------------


def measure_in_process(args, world, results: list) -> None:
    from django.test import Client

    from bench.measure import Timing, count_queries, timed_loop
    from bench.world import build_cart, line_input
    from carts.checkout import cart_checkout
    from carts.models import CartLine
    from carts.selectors import cart_review
    from carts.services import cart_add_lines, cart_get_active

    client = Client()
    client.force_login(world.user)

    for size in args.sizes:
        print(f"  cart of {size} lines: building…", flush=True)
        build_cart(world, size)

        # (a) the cart page
        def page():
            response = client.get("/cart/")
            assert response.status_code == 200, response.status_code
            return response

        html = page().content.decode()
        assert html.count('id="line-') >= size or size == 0, "the page does not show every line"
        t = Timing("(a) GET /cart/ (test Client)", size)
        t.queries = count_queries(page)
        results.append(timed_loop(t, page, repeat=args.repeat, max_seconds=args.max_seconds))

        # (c) whole-cart validation with routing, as the page does it
        def review():
            cart = cart_get_active(clinic=world.clinic)
            r = cart_review(cart=cart)
            assert len(r.lines) == size and r.can_checkout, (len(r.lines), r.problem_counts)
            return r

        review()
        t = Timing("(c) cart_review (route + validate_cart)", size)
        t.queries = count_queries(review)
        results.append(timed_loop(t, review, repeat=args.repeat, max_seconds=args.max_seconds))

        # (b) adding one line to a cart of this size (the line is removed again, untimed)
        added: list[int] = []

        def add_one():
            patient = world.take_patients(1)[0]
            res = cart_add_lines(clinic=world.clinic, items=[line_input(world, patient, world.products[0])],
                                 actor=world.user)
            added.append(res.created[0].pk)

        def undo():
            CartLine.objects.filter(pk__in=added).delete()
            added.clear()

        t = Timing("(b) cart_add_lines, one line", size)
        t.queries = count_queries(add_one)
        undo()
        results.append(timed_loop(t, add_one, repeat=args.repeat, max_seconds=args.max_seconds, after=undo))

        # (g) the cart's HTMX row actions, as the page posts them
        measure_row_actions(args, world, client, size, results)

        # (d) checkout: the first one counts queries, then each timed run checks out a fresh cart
        def checkout():
            order = cart_checkout(clinic=world.clinic, actor=world.user)
            assert order.lines.count() == size
            return order

        t = Timing("(d) cart_checkout (sandbox gateway)", size, note="dispatch queued, no worker running")
        t.queries = count_queries(checkout)
        results.append(timed_loop(t, checkout, repeat=args.checkout_repeat, max_seconds=args.max_seconds,
                                  before=lambda: build_cart(world, size)))
        print(f"  cart of {size} lines: done (load {loadavg()})", flush=True)


def measure_row_actions(args, world, client, size: int, results: list) -> None:
    """(g) The row actions of a cart of ``size`` lines, through the test Client with HTMX's header:
    save an edited line, apply a problem's fix, remove a line. Each answers with the patient's
    rows, the summary and the messages; the whole cart is reviewed for them."""
    from bench.measure import Timing, count_queries, timed_loop
    from bench.world import line_input
    from carts.forms import CartLineForm
    from carts.models import CartLine
    from carts.services import cart_add_lines, cart_get_active

    htmx = {"HX-Request": "true"}
    cart = cart_get_active(clinic=world.clinic)
    line = CartLine.objects.filter(cart=cart).select_related("patient", "product").order_by("pk").first()
    sigs = [line.sig, line.sig + " with food"]

    def post(url, data):
        response = client.post(url, data, headers=htmx)
        assert response.status_code == 200, (url, response.status_code)
        return response

    def save():  # Enter in an edited row: the line form, one field changed
        current = CartLine.objects.get(pk=line.pk)
        sig = sigs[1] if current.sig == sigs[0] else sigs[0]
        post(f"/cart/lines/{line.pk}/save", CartLineForm.data_of(current, sig=sig))

    t = Timing("(g) save a line (HTMX row)", size)
    t.queries = count_queries(save)
    results.append(timed_loop(t, save, repeat=args.repeat, max_seconds=args.max_seconds))

    limit = line.product.max_quantity_per_line

    def break_quantity():  # untimed: the line goes over the product's limit (quantity_over_max)
        CartLine.objects.filter(pk=line.pk).update(quantity=limit + 1)

    def fix():  # the problem's one-click fix: "Set quantity to <limit>"
        body = post(f"/cart/lines/{line.pk}/fix", {"field": "quantity", "value": str(limit)}).content.decode()
        assert "quantity_over_max" not in body

    break_quantity()
    t = Timing("(g) apply a fix (HTMX row)", size)
    t.queries = count_queries(fix)
    results.append(timed_loop(t, fix, repeat=args.repeat, max_seconds=args.max_seconds, before=break_quantity))
    CartLine.objects.filter(pk=line.pk).update(quantity=1)

    victim = {"line": CartLine.objects.filter(cart=cart).select_related("patient", "product").order_by("-pk").first()}

    def remove():
        post(f"/cart/lines/{victim['line'].pk}/remove", {})

    def put_back():  # untimed: the cart gets its line back, so every run removes from ``size`` lines
        gone = victim["line"]
        victim["line"] = cart_add_lines(clinic=world.clinic, actor=world.user,
                                        items=[line_input(world, gone.patient, gone.product)]).created[0]

    t = Timing("(g) remove a line (HTMX row)", size)
    t.queries = count_queries(remove)
    put_back()
    results.append(timed_loop(t, remove, repeat=args.repeat, max_seconds=args.max_seconds, after=put_back))


def discard_queued_tasks() -> int:
    from django_q.models import OrmQ

    return OrmQ.objects.all().delete()[0]


# --- (f): dispatch latency with qcluster ---------------------------------------------------------


def measure_dispatch(args, world, managed, env, stub, results: list) -> None:
    from django_q.tasks import async_task, result

    import fulfillment.dispatch as fulfillment_dispatch
    from bench.world import build_cart
    from carts.checkout import cart_checkout
    from fulfillment.models import OrderLine, PartnerOrder

    discard_queued_tasks()
    proc = managed.start("qcluster", [PYTHON, "manage.py", "qcluster"], env, ROOT)
    try:
        task_id = async_task("math.floor", 1.5)
        if result(task_id, wait=60_000) != 1:
            raise RuntimeError("qcluster did not run a warm-up task within 60 s; see its log")

        commit_times: list[float] = []
        original = fulfillment_dispatch._enqueue_dispatch

        def enqueue_and_note(pk):  # runs in the checkout's on_commit: right after COMMIT
            if not commit_times:
                commit_times.append(time.time())
            original(pk)

        fulfillment_dispatch._enqueue_dispatch = enqueue_and_note
        try:
            for size in args.sizes:
                row = {"name": "(f) commit → every PartnerOrder sent (2 qcluster workers)", "size": size,
                       "samples": [], "partner_orders": None, "stub_requests_before": stub.requests}
                deadline = time.monotonic() + max(args.max_seconds, 120)
                for _ in range(args.dispatch_repeat):
                    build_cart(world, size)
                    commit_times.clear()
                    order = cart_checkout(clinic=world.clinic, actor=world.user)
                    committed = commit_times[0]
                    wait_until = time.monotonic() + 120
                    while True:
                        rows = list(PartnerOrder.objects.filter(order=order).values_list("status", "sent_at"))
                        if all(s in (PartnerOrder.Status.SENT, PartnerOrder.Status.FAILED) for s, _ in rows):
                            break
                        if time.monotonic() > wait_until:
                            raise RuntimeError(f"partner orders of order {order.pk} not sent within 120 s: {rows}")
                        if proc.poll() is not None:
                            raise RuntimeError("qcluster exited; see its log")
                        time.sleep(0.01)
                    if any(s != PartnerOrder.Status.SENT for s, _ in rows):
                        raise RuntimeError(f"dispatch failed for order {order.pk}: {rows}")
                    assert not OrderLine.objects.filter(order=order).exclude(status=OrderLine.Status.SENT).exists()
                    row["samples"].append(max(sent_at.timestamp() for _, sent_at in rows) - committed)
                    row["first_sent"] = min(sent_at.timestamp() for _, sent_at in rows) - committed
                    row["partner_orders"] = len(rows)
                    if time.monotonic() > deadline:
                        break
                row["stub_requests"] = stub.requests - row.pop("stub_requests_before")
                results.append(row)
                print(f"  dispatch of {size} lines: {', '.join(f'{s:.2f}s' for s in row['samples'])}", flush=True)
        finally:
            fulfillment_dispatch._enqueue_dispatch = original
    finally:
        managed.stop(proc)


# --- (e): webhooks against gunicorn ---------------------------------------------------------------


def prepare_sent_lines(world, n_lines: int) -> list:
    """An order of ``n_lines`` lines, all recorded as sent to their partners (setup, not measured)."""
    from django.utils import timezone

    from bench.world import build_cart
    from carts.checkout import cart_checkout
    from fulfillment.models import OrderLine, PartnerOrder

    build_cart(world, n_lines)
    order = cart_checkout(clinic=world.clinic, actor=world.user)
    discard_queued_tasks()
    now = timezone.now()
    for po in PartnerOrder.objects.filter(order=order):
        PartnerOrder.objects.filter(pk=po.pk).update(status=PartnerOrder.Status.SENT, sent_at=now,
                                                     partner_reference=f"BENCH-{po.pk}")
    OrderLine.objects.filter(order=order).update(status=OrderLine.Status.SENT, status_changed_at=now)
    return list(OrderLine.objects.filter(order=order).select_related("partner_order__partner").order_by("pk"))


WEBHOOK_STEPS = ["accepted", "compounding", "shipped", "delivered"]
DUPLICATE_EVERY = 25  # every 25th event is sent twice (a partner's retry): answered "duplicate"


def signed_requests(lines, clients: int, tag: str) -> list[list[tuple[str, bytes, dict]]]:
    from fulfillment.webhooks import webhook_headers

    per_client: list[list] = [[] for _ in range(clients)]
    occurred = datetime.datetime.now(datetime.timezone.utc).isoformat()
    n = 0
    for i, line in enumerate(lines):
        partner = line.partner_order.partner
        path = f"/api/partners/{partner.slug}/events"
        for status in WEBHOOK_STEPS:
            event = {"event_id": f"evt-{tag}-{line.pk}-{status}", "occurred_at": occurred, "line_id": line.pk,
                     "status": status}
            if status == "shipped":
                event.update(tracking_number=f"1Z{line.pk:016d}", carrier="UPS")
            body = json.dumps(event).encode()
            req = (path, body, webhook_headers(secret=partner.webhook_secret, body=body))
            per_client[i % clients].append(req)
            n += 1
            if n % DUPLICATE_EVERY == 0:
                per_client[i % clients].append(req)
    return per_client


def http_get_times(port: int, path: str, cookie: str, repeat: int, max_seconds: float) -> list[float]:
    import http.client

    samples, started = [], time.monotonic()
    for i in range(repeat):
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", path, headers={"Cookie": cookie})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        assert resp.status == 200, resp.status
        samples.append(time.perf_counter() - t0)
        if i >= 2 and time.monotonic() - started > max_seconds:
            break
    return samples


def measure_webhooks(args, world, managed, results: list, http_pages: list) -> None:
    from django.conf import settings
    from django.test import Client

    from bench.measure import Timing
    from bench.servers import free_port, wait_http
    from bench.webhook_load import run_load
    from bench.world import build_cart, empty_cart
    from fulfillment.models import WebhookEvent

    n_lines = max(1, args.webhook_events // len(WEBHOOK_STEPS))
    for variant, conn_max_age in enumerate(args.webhook_conn_max_age):
        lines = prepare_sent_lines(world, n_lines)
        port = free_port()
        # The same keys as the process that seeded the database (its partners' credentials are
        # encrypted with them), only the connection lifetime differs.
        env = bench_env(args.database_url, CONN_MAX_AGE=conn_max_age, SECRET_KEY=os.environ["SECRET_KEY"],
                        FIELD_ENCRYPTION_KEYS=os.environ["FIELD_ENCRYPTION_KEYS"])
        argv = [str(Path(PYTHON).parent / "gunicorn"), "fizy.wsgi:application", "--workers", "2",
                "--worker-class", "sync", "--bind", f"127.0.0.1:{port}", "--backlog", "2048",
                "--log-level", "warning", "--timeout", "60"]
        proc = managed.start(f"gunicorn-cma{conn_max_age}", argv, env, ROOT)
        try:
            wait_http(port, "/login/", timeout=60, proc=proc)
            # Warm both workers: a few requests each way (an unknown partner is stored and answered 404).
            import http.client

            for _ in range(20):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("POST", "/api/partners/warmup/events", body=b"{}", headers={"Content-Type": "application/json"})
                c.getresponse().read()
                c.close()

            if variant == 0:
                # The cart page over real HTTP, for comparison with the in-process figures.
                client = Client()
                client.force_login(world.user)
                cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
                for size in args.sizes:
                    build_cart(world, size)
                    http_get_times(port, "/cart/", cookie, 2, args.max_seconds)  # warm-up
                    t = Timing(f"(a') GET /cart/ over HTTP (gunicorn, CONN_MAX_AGE={conn_max_age})", size)
                    t.samples = http_get_times(port, "/cart/", cookie, args.repeat, args.max_seconds)
                    http_pages.append(t)
                empty_cart(world)

            per_client = signed_requests(lines, args.webhook_clients, tag=f"cma{conn_max_age}")
            before = WebhookEvent.objects.count()
            load = run_load(port=port, per_client=per_client, deadline_s=args.webhook_seconds)
            stored = WebhookEvent.objects.count() - before
        finally:
            managed.stop(proc)
        from bench.measure import percentile

        row = {
            "name": "(e) webhook ingestion (gunicorn, 2 sync workers)", "conn_max_age": conn_max_age,
            "clients": args.webhook_clients, "events": load.sent, "stored": stored,
            "wall_s": round(load.wall_seconds, 2), "events_per_s": round(load.sent / load.wall_seconds, 1),
            "p50_ms": round(percentile(load.latencies, 50) * 1000, 1),
            "p95_ms": round(percentile(load.latencies, 95) * 1000, 1),
            "p99_ms": round(percentile(load.latencies, 99) * 1000, 1),
            "max_ms": round(max(load.latencies) * 1000, 1),
            "outcomes": dict(sorted(load.statuses.items())), "stopped_by_deadline": load.stopped_by_deadline,
            "load": loadavg(),
        }
        results.append(row)
        print(f"  webhooks CONN_MAX_AGE={conn_max_age}: {row['events_per_s']} events/s, p99 {row['p99_ms']} ms, "
              f"{row['outcomes']}", flush=True)


# --- profiles --------------------------------------------------------------------------------------


def profile(world) -> str:
    from django.test import Client

    from bench.world import build_cart, empty_cart
    from carts.selectors import cart_review
    from carts.services import cart_get_active

    out = io.StringIO()

    def report(title, prof):
        out.write(f"\n### {title}\n\n```\n")
        stats = pstats.Stats(prof, stream=out).strip_dirs().sort_stats("cumulative")
        stats.print_stats(30)
        stats.sort_stats("tottime").print_stats(15)
        out.write("```\n")

    client = Client()
    client.force_login(world.user)
    build_cart(world, 200)
    client.get("/cart/")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(10):
        client.get("/cart/")
    prof.disable()
    report("GET /cart/ with 200 lines, 10 runs (test Client)", prof)

    cart = cart_get_active(clinic=world.clinic)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(10):
        cart_review(cart=cart)
    prof.disable()
    report("cart_review with 200 lines, 10 runs", prof)
    empty_cart(world)

    lines = prepare_sent_lines(world, 50)
    reqs = [r for per in signed_requests(lines, 1, tag="profile") for r in per]
    prof = cProfile.Profile()
    prof.enable()
    for path, body, headers in reqs:
        client.generic("POST", path, data=body, content_type="application/json",
                       headers={k: v for k, v in headers.items() if k != "Content-Type"})
    prof.disable()
    report(f"{len(reqs)} webhook events through the DRF view (test Client, in process)", prof)
    return out.getvalue()


# --- output ---------------------------------------------------------------------------------------


def table(info, timings, dispatch_rows, webhook_rows, http_pages) -> str:
    lines = ["## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "## (a)-(d), (g): in process (PostgreSQL, DEBUG off)", "",
              "| measure | lines | queries | runs | p50 ms | p95 ms | max ms | note |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    order = {"(a)": 0, "(b)": 1, "(c)": 2, "(g)": 3, "(d)": 4}
    for t in sorted(timings, key=lambda t: (order.get(t.name[:3], 9), t.size)):
        lines.append(f"| {t.name} | {t.size} | {t.queries} | {len(t.samples)} | {t.p50_ms:.1f} | {t.p95_ms:.1f} "
                     f"| {t.max_ms:.1f} | {t.note} |")
    for t in http_pages:
        lines.append(f"| {t.name} | {t.size} | – | {len(t.samples)} | {t.p50_ms:.1f} | {t.p95_ms:.1f} "
                     f"| {t.max_ms:.1f} | |")
    by_name: dict[str, dict] = {}
    for t in timings:
        by_name.setdefault(t.name, {})[t.size] = t.queries
    lines += ["", "Query counts by size: " + "; ".join(
        f"{name.split(' (', 1)[0] if name.startswith('(g)') else name.split(' ', 1)[0]} "
        f"{'/'.join(str(q) for _, q in sorted(sizes.items()))}"
        + (" (constant)" if len(set(sizes.values())) == 1 else " (GROWS)")
        for name, sizes in by_name.items())]
    if dispatch_rows:
        from bench.measure import percentile

        lines += ["", "## (f): checkout commit → every PartnerOrder sent (2 qcluster workers, stub partner)", "",
                  "| lines | partner orders | runs | p50 s | max s | first PO sent s (last run) | stub requests |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in dispatch_rows:
            lines.append(f"| {r['size']} | {r['partner_orders']} | {len(r['samples'])} | "
                         f"{percentile(r['samples'], 50):.2f} | {max(r['samples']):.2f} | {r['first_sent']:.2f} | "
                         f"{r['stub_requests']} |")
    if webhook_rows:
        lines += ["", "## (e): webhook ingestion (gunicorn, 2 sync workers, signed events)", "",
                  "| CONN_MAX_AGE | clients | events | wall s | events/s | p50 ms | p95 ms | p99 ms | max ms | answers | load |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
        for r in webhook_rows:
            answers = ", ".join(f"{k}: {v}" for k, v in r["outcomes"].items())
            lines.append(f"| {r['conn_max_age']} | {r['clients']} | {r['events']} | {r['wall_s']} | "
                         f"{r['events_per_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} | "
                         f"{answers} | {r['load']} |")
    return "\n".join(lines) + "\n"


# --- main -----------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.update(bench_env(args.database_url))
    log_dir = Path(tempfile.mkdtemp(prefix="fizy-bench-"))

    from bench.servers import Managed, StubPartnerServer

    managed = Managed(log_dir)
    stub = None

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    atexit.register(managed.stop_all)
    try:
        print(f"fizy bench: database {args.database_url}, logs in {log_dir}", flush=True)
        recreate_database(args.database_url)

        import django

        django.setup()
        from django.core.management import call_command

        from bench import world as bench_world

        call_command("migrate", verbosity=0, interactive=False)
        stub = StubPartnerServer().start()
        biggest = max(args.sizes)
        per_size = sum((args.checkout_repeat + 2) * s + args.repeat + 2 for s in args.sizes)
        dispatch = 0 if args.skip_dispatch else args.dispatch_repeat * sum(args.sizes)
        hooks = 0 if args.skip_webhooks else (args.webhook_events + sum(args.sizes)) * len(args.webhook_conn_max_age)
        n_patients = (per_size + dispatch + hooks + 400 + biggest) // 2 + 100
        world = bench_world.seed(patients=n_patients, partner_base_url=stub.base_url)
        info = machine_info(args.database_url)
        print(f"  seeded {len(world.patients)} patients; load {info['load_before']}", flush=True)

        timings: list = []
        measure_in_process(args, world, timings)
        dispatch_rows: list = []
        if not args.skip_dispatch:
            measure_dispatch(args, world, managed, os.environ.copy(), stub, dispatch_rows)
        discard_queued_tasks()
        webhook_rows: list = []
        http_pages: list = []
        if not args.skip_webhooks:
            measure_webhooks(args, world, managed, webhook_rows, http_pages)
        info["load_after"] = Path("/proc/loadavg").read_text().strip()
        text = table(info, timings, dispatch_rows, webhook_rows, http_pages)
        if args.profile:
            text += "\n## Profiles (cProfile)\n" + profile(world)
        print()
        print(text)
        if args.json:
            Path(args.json).write_text(json.dumps({
                "machine": info, "in_process": [t.as_dict() for t in timings],
                "http_cart_page": [t.as_dict() for t in http_pages], "dispatch": dispatch_rows,
                "webhooks": webhook_rows}, indent=2, default=str))
        return 0
    finally:
        managed.stop_all()
        if stub is not None:
            stub.stop()


if __name__ == "__main__":
    sys.exit(main())
