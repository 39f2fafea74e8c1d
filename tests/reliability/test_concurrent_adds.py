"""Scenario 1: several coordinators of one clinic work on the shared cart at the same moment,
through the cart pages: some add lines (many of them merging into lines a colleague just
added), one edits other lines, one removes others. Nothing is lost, every merge is exact, the
clinic still has one open cart, and the audit trail has one row per write."""

import random
from collections import Counter

import pytest
from django.test import Client
from django.urls import reverse

from carts.models import Cart, CartLine
from carts.services import LineInput, cart_add_lines
from catalog.tests.factories import ProductFactory
from clinics.models import AuditEntry
from clinics.tests.factories import MembershipFactory, PatientFactory, PrescriberFactory

from fizy.tests.concurrency import run_threads

ADDERS, ADDS_EACH = 4, 6


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_coordinators_adding_editing_and_removing_at_once_lose_nothing(clinic_a):
    org = clinic_a.organization
    users = [MembershipFactory(clinic=clinic_a).user for _ in range(ADDERS + 2)]
    prescriber = PrescriberFactory(organization=org)
    products = ProductFactory.create_batch(3, max_quantity_per_line=500)
    patients = PatientFactory.create_batch(6, organization=org)
    # Lines already in the cart that one colleague edits and another removes meanwhile.
    to_edit = PatientFactory.create_batch(4, organization=org)
    to_remove = PatientFactory.create_batch(4, organization=org)
    seeded = cart_add_lines(clinic=clinic_a, actor=users[0], items=[
        LineInput(patient=p, product=products[0], prescriber=prescriber, quantity=1, sig="Seeded SIG")
        for p in to_edit + to_remove]).created
    edit_lines = [l for l in seeded if l.patient in to_edit]
    remove_lines = [l for l in seeded if l.patient in to_remove]
    cart = Cart.objects.get(clinic=clinic_a)
    version_before = cart.version
    audit_before = AuditEntry.objects.filter(action__startswith="cart.").count()

    rng = random.Random(7)
    plan = {t: [(rng.choice(patients), rng.choice(products), rng.randint(1, 3)) for _ in range(ADDS_EACH)]
            for t in range(ADDERS)}
    expected = Counter()
    for adds in plan.values():
        for patient, product, qty in adds:
            expected[(patient.pk, product.pk)] += qty
    outcomes = []  # list.append is atomic across threads

    def client_for(user):
        client = Client()
        client.force_login(user)
        return client

    def adder(t):
        def run():
            client = client_for(users[t])
            for patient, product, qty in plan[t]:
                response = client.post(reverse("carts:line-add"), {
                    "patient": patient.pk, "product": product.pk, "prescriber": prescriber.pk, "quantity": qty,
                    "sig": f"Take {qty} as directed", "days_supply": 30, "refills": 0})
                body = response.content.decode()
                outcomes.append(("add", response.status_code, "Added 1 line" in body or "Check that the SIG" in body))
        return run

    def editor():
        client = client_for(users[ADDERS])
        for round_ in range(3):
            for i, line in enumerate(edit_lines):
                response = client.post(reverse("carts:line-save", kwargs={"pk": line.pk}), {
                    "prescriber": prescriber.pk, "quantity": 10 * (round_ + 1) + i, "sig": f"Edited round {round_}",
                    "days_supply": 28, "refills": 1})
                outcomes.append(("edit", response.status_code))

    def remover():
        client = client_for(users[ADDERS + 1])
        for line in remove_lines:
            response = client.post(reverse("carts:line-remove", kwargs={"pk": line.pk}))
            outcomes.append(("remove", response.status_code))

    errors = run_threads(*[adder(t) for t in range(ADDERS)], editor, remover)

    assert errors == []
    assert Counter(outcomes) == {("add", 200, True): ADDERS * ADDS_EACH, ("edit", 200): 3 * len(edit_lines),
                        ("remove", 200): len(remove_lines)}
    assert Cart.objects.filter(clinic=clinic_a).count() == 1
    cart.refresh_from_db()
    assert cart.status == Cart.Status.OPEN
    lines = {(l.patient_id, l.product_id): l for l in CartLine.objects.filter(cart=cart)}
    added = {key: line.quantity for key, line in lines.items() if key[0] in {p.pk for p in patients}}
    assert added == dict(expected)  # no lost line, every merge exact
    for i, line in enumerate(edit_lines):  # the colleague's last edit stands
        got = lines[(line.patient_id, line.product_id)]
        assert (got.quantity, got.sig, got.refills) == (30 + i, "Edited round 2", 1)
    assert not any(p.pk == key[0] for p in to_remove for key in lines)
    assert len(lines) == len(expected) + len(edit_lines)
    writes = ADDERS * ADDS_EACH + 3 * len(edit_lines) + len(remove_lines)
    assert cart.version == version_before + writes
    audit = Counter(AuditEntry.objects.filter(action__startswith="cart.").values_list("action", flat=True))
    assert sum(audit.values()) - audit_before == writes
    assert audit["cart.add"] - len(seeded) + audit["cart.add.merge"] == ADDERS * ADDS_EACH
    assert audit["cart.add"] - len(seeded) == len(expected)  # one creation per (patient, product), the rest merges
    assert (audit["cart.change"], audit["cart.remove"]) == (3 * len(edit_lines), len(remove_lines))
