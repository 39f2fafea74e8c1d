"""Bad input gets a clear answer, never a 500 (issue 14, item 7).

Every URL pattern the resolver knows (so a page added tomorrow is covered without editing this
file) is requested with junk: path parameters filled with huge, negative and unicode numbers,
NUL bytes, long strings and real ids; query strings and form bodies with the same junk under the
field names the views read; GET and POST (and a few other methods) — as a coordinator, as pharmacy
staff and anonymously. Fixed seed, bounded: the same requests on every run. Not one answer may be
a 5xx (an exception in a view counts as a 500)."""

import random
import re
import time
from collections import Counter

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern

from conftest import verified_login
from tests.reliability.test_tenancy_sweep import all_patterns, world  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

SEED = 14
REQUESTS = 5200

JUNK_NUMBERS = ["0", "1", "-1", "2147483648", "9223372036854775808", "9" * 40, "²", "١٢", "٣", "1.5", "1e9",
                "NaN", "", " ", "0x10", "+7", "1_000"]
JUNK_TEXT = ["\x00", "a\x00b", "%00", "x" * 3000, "é²", "../../etc/passwd", "TX", "//evil.example/",
             "https://evil.example/", "javascript:alert(1)", "<script>alert(1)</script>", "' OR 1=1 --", "None",
             "null", "[]", "{}", "%C0%AF", "🙂" * 50, "=HYPERLINK(\"http://x\")", "\r\n", "admin:index"]
# The names the views read from a query string or a form (and a few they do not). Not "post": the
# admin's delete confirmations would delete the personas themselves.
FIELDS = ["patient", "choose_patient", "product", "choose_product", "clear", "prescriber", "clinic", "line", "pk",
          "order", "quantity", "sig", "refills", "days_supply", "days", "code", "item", "q", "next", "version",
          "quote", "field", "value", "fields", "edit", "cancel", "status", "page", "format", "reason",
          "setup_intent_id", "chart_id", "first_name", "last_name", "date_of_birth", "phone", "email",
          "address_line1", "city", "state", "zip_code", "channel", "milestone", "action", "_selected_action",
          "select_across", "index", "o", "p", "all", "e", "_save", "body", "subject", "opted_out",
          "sms", "email_enabled", "quiet_start", "quiet_end", "name", "sku", "o", "_changelist_filters"]
CSV_BODIES = ["chart_id,product,quantity,sig,prescriber_npi,days_supply\nA\x00,FZ,1,x,1,30\n",
              "chart_id,product,quantity,sig,prescriber_npi,days_supply\n=cmd,FZ,²,x,1,٣\n",
              "\x00\x00\x00", "no,header\n1,2\n", "chart_id,product,quantity,sig,prescriber_npi,days_supply\n"]
METHODS = ["get"] * 5 + ["post"] * 4 + ["put", "delete", "head"]


def _junk(rng: random.Random, ids: list) -> str:
    pool = rng.random()
    if pool < 0.45:
        return rng.choice(JUNK_NUMBERS)
    if pool < 0.8:
        return rng.choice(JUNK_TEXT)
    return str(rng.choice(ids))


def _fill(rng: random.Random, route: str, ids: list) -> str:
    """A route with every ``<converter:name>`` (or regex group) replaced: half the time by a
    value the converter accepts (a real id, a junk number), otherwise by anything."""

    def converter(match):
        conv = match.group("conv") or "str"
        if conv == "int":
            return rng.choice([str(rng.choice(ids)), "0", "2147483648", "9223372036854775808", "9" * 40, "7"])
        return _junk(rng, ids) if rng.random() < 0.7 else str(rng.choice(ids))

    return re.sub(r"<(?:(?P<conv>[^>:]+):)?(?P<name>[^>]+)>", converter, route)


def _fill_regex(rng: random.Random, regex: str, ids: list) -> str:
    """A regex route, roughly: named groups of alternatives pick one, others get junk."""

    def group(match):
        body = match.group("body")
        if re.fullmatch(r"[\w|]+", body):
            return rng.choice(body.split("|"))
        return _junk(rng, ids) if rng.random() < 0.5 else str(rng.choice(ids))

    text = re.sub(r"\(\?P<\w+>(?P<body>[^()]*(?:\([^()]*\))?[^()]*)\)", group, regex)
    return text.lstrip("^").rstrip("$").replace("\\Z", "").replace("\\", "")


def _routes():
    routes = []
    for key, prefix, pattern in all_patterns():
        assert isinstance(pattern, URLPattern)
        if hasattr(pattern.pattern, "_route"):
            routes.append((key, prefix, str(pattern.pattern), False))
        else:
            routes.append((key, prefix, pattern.pattern.regex.pattern, True))
    return routes


def _payload(rng: random.Random, ids: list) -> dict:
    data = {}
    for name in rng.sample(FIELDS, rng.randint(0, 6)):
        data[name] = [_junk(rng, ids) for _ in range(rng.randint(1, 2))] if rng.random() < 0.2 else _junk(rng, ids)
    return data


@pytest.fixture
def personas(alice, charlie, clinic_a):
    """A coordinator (alice, a clinic admin of clinic A), pharmacy staff (charlie, a superuser too,
    so every admin page really runs) and an anonymous visitor."""
    from clinics.models import Membership

    Membership.objects.filter(user=alice).update(role=Membership.Role.CLINIC_ADMIN)
    charlie.is_superuser = True
    charlie.save()
    return {"coordinator": alice, "staff": charlie, "anonymous": None}


def test_five_thousand_malformed_requests_get_no_5xx(world, personas):  # noqa: F811
    rng = random.Random(SEED)
    routes = _routes()
    ids = [v for v in world["ids"].values() if isinstance(v, int)] + list(world["a_objects"].values())
    clients = {}
    for name, user in personas.items():
        clients[name] = Client(raise_request_exception=False)
        if user is not None:
            verified_login(clients[name], user)  # with the second factor staff and clinic admins need

    admin = [r for r in routes if r[0].startswith("admin:")]
    site = [r for r in routes if not r[0].startswith("admin:")]
    # First every pattern once per persona; then mostly where each persona has a page to reach:
    # the coordinator on the clinic's pages, staff in the admin (the rest answer "log in" quickly).
    plan = [(route, persona) for persona in personas for route in routes]
    while len(plan) < REQUESTS:
        persona = rng.choice(list(personas))
        own, other = {"coordinator": (site, admin), "staff": (admin, site), "anonymous": (site, admin)}[persona]
        plan.append((rng.choice(own if rng.random() < 0.85 else other), persona))

    statuses, failures, per_route, slow = Counter(), {}, Counter(), Counter()
    for (key, prefix, route, is_regex), persona in plan:
        client = clients[persona]
        path = "/" + prefix + (_fill_regex(rng, route, ids) if is_regex else _fill(rng, route, ids))
        method = rng.choice(METHODS)
        data = _payload(rng, ids)
        if method == "post" and key == "carts:import" and rng.random() < 0.6:
            from django.core.files.uploadedfile import SimpleUploadedFile

            data["file"] = SimpleUploadedFile("list.csv", rng.choice(CSV_BODIES).encode())
        if key.startswith("admin:") and key.endswith("_delete"):
            data = {}  # any field POSTed to an admin delete page confirms it: the personas and their clinic stay
        json_body = method == "post" and rng.random() < 0.15
        if json_body:
            data = rng.choice(['{"a": "\\u0000"}', "{", '{"event_id": 9}', "\x00", '{"type": "x", "data": []}'])
        started = time.monotonic()
        response = _request(client, method, path, data, json_body=json_body)
        statuses[response.status_code // 100 * 100] += 1
        per_route[prefix + route] += 1
        slow[f"{persona} {key}"] += time.monotonic() - started
        if response.status_code >= 500:
            exc = getattr(response, "exc_info", None)
            reason = f"{exc[0].__name__}: {str(exc[1])[:160]}" if exc else response.content[:160]
            failures.setdefault(f"{key} {method.upper()}", f"{persona} {path[:120]!r} {data!r:.200} -> "
                                                          f"{response.status_code} {reason}")
        if user_logged_out(key, personas[persona]):
            verified_login(client, personas[persona])

    print(slow.most_common(15))
    print(f"\nfuzz: {len(plan)} requests over {len(per_route)} URL patterns; answers by class: "
          + ", ".join(f"{k // 100}xx={v}" for k, v in sorted(statuses.items())))
    for where, what in failures.items():
        print(f"  5xx {where}: {what}")
    assert len(per_route) == len({prefix + route for _, prefix, route, _ in routes})  # every pattern requested
    assert len(plan) >= 5000 and statuses[500] == 0, f"{statuses[500]} answers ≥ 500 on {len(failures)} routes"


def _request(client, method, path, data, *, json_body=False):
    """One request in a savepoint: a request that broke the database transaction (a 500 that the
    test reports) must not break the requests after it."""
    savepoint = transaction.savepoint()
    if json_body:
        response = client.post(path, data=data, content_type="application/json")
    elif method in ("get", "post"):
        response = getattr(client, method)(path, data)
    else:
        response = getattr(client, method)(path)
    if response.status_code >= 500:
        transaction.savepoint_rollback(savepoint)
        transaction.set_rollback(False)
    else:
        transaction.savepoint_commit(savepoint)
    return response


def user_logged_out(key: str, user) -> bool:
    return user is not None and key in {"logout", "admin:logout", "switch-clinic"}
