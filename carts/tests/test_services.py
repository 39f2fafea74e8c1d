import pytest

from carts.models import Cart, CartLine
from carts.services import CartError, CartLocked, LineInput, cart_add_lines, cart_get_active, cart_remove_line, cart_update_line
from catalog.tests.factories import ProductFactory
from clinics.models import AuditEntry
from clinics.tests.factories import ClinicFactory, PatientFactory, PrescriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(clinic_a, alice):
    org = clinic_a.organization
    return {
        "clinic": clinic_a, "actor": alice,
        "jane": PatientFactory(organization=org, first_name="Jane", last_name="Doe"),
        "john": PatientFactory(organization=org, first_name="John", last_name="Roe"),
        "sema": ProductFactory(name="Semaglutide"), "ldn": ProductFactory(name="Naltrexone"),
        "dr": PrescriberFactory(organization=org),
    }


def add(world, patient, product, quantity=1, **kw):
    item = LineInput(patient=world[patient], product=world[product], prescriber=world["dr"], quantity=quantity,
                     sig=kw.pop("sig", "Inject 0.25 mg weekly"), days_supply=28, **kw)
    return cart_add_lines(clinic=world["clinic"], items=[item], actor=world["actor"])


def test_same_patient_and_product_merges_quantity_and_says_so(world):
    add(world, "jane", "sema", 1)
    result = add(world, "jane", "sema", 2)
    lines = CartLine.objects.all()
    assert [(l.patient.first_name, l.product.name, l.quantity) for l in lines] == [("Jane", "Semaglutide", 3)]
    assert result.messages() == [
        "Jane Doe already had Semaglutide in the cart: quantity is now 3 (was 1). Check that the SIG still fits."
    ]


def test_one_product_for_two_patients_is_two_rows(world):
    add(world, "jane", "sema")
    add(world, "john", "sema")
    assert CartLine.objects.count() == 2


def test_one_patient_with_two_products_is_two_rows(world):
    add(world, "jane", "sema")
    add(world, "jane", "ldn")
    assert sorted(CartLine.objects.values_list("product__name", flat=True)) == ["Naltrexone", "Semaglutide"]


def test_same_pair_twice_in_one_batch_becomes_one_line(world):
    items = [LineInput(patient=world["jane"], product=world["sema"], prescriber=world["dr"], quantity=q, sig="x")
             for q in (1, 2)]
    cart_add_lines(clinic=world["clinic"], items=items, actor=world["actor"])
    assert list(CartLine.objects.values_list("quantity", flat=True)) == [3]


def test_every_coordinator_of_the_clinic_shares_one_cart(world, clinic_a):
    from clinics.tests.factories import MembershipFactory

    colleague = MembershipFactory(clinic=clinic_a).user
    add(world, "jane", "sema")
    cart_add_lines(clinic=clinic_a, actor=colleague,
                   items=[LineInput(patient=world["john"], product=world["sema"], prescriber=None, quantity=1)])
    cart = Cart.objects.get(clinic=clinic_a)
    assert cart.lines.count() == 2
    assert {l.added_by for l in cart.lines.all()} == {world["actor"], colleague}


def test_adds_record_who_and_bump_the_version(world):
    cart = cart_get_active(clinic=world["clinic"])
    before = cart.version
    add(world, "jane", "sema")
    add(world, "jane", "sema")
    line = CartLine.objects.get()
    cart.refresh_from_db()
    assert cart.version == before + 2
    assert line.added_by == world["actor"] and line.updated_by == world["actor"]


def test_every_cart_write_is_audited_without_prescription_text(world):
    add(world, "jane", "sema", sig="Inject SECRET-SIG weekly")
    add(world, "jane", "sema")
    line = CartLine.objects.get()
    cart_update_line(line=line, actor=world["actor"], sig="Inject 0.5 mg weekly", quantity=4)
    cart_remove_line(line=line, actor=world["actor"])
    entries = list(AuditEntry.objects.order_by("id"))
    assert [e.action for e in entries] == ["cart.add", "cart.add.merge", "cart.change", "cart.remove"]
    assert all(e.actor == world["actor"] and e.clinic == world["clinic"] and e.patient == world["jane"] for e in entries)
    assert sorted(entries[2].detail["fields"]) == ["quantity", "sig"]
    assert "SECRET" not in str([e.detail for e in entries]) and "0.5 mg" not in str([e.detail for e in entries])


def test_update_without_changes_writes_nothing(world):
    add(world, "jane", "sema", 2)
    line = CartLine.objects.get()
    cart_update_line(line=line, actor=world["actor"], quantity=2)
    assert AuditEntry.objects.filter(action="cart.change").count() == 0


def test_another_organizations_patient_is_refused(world):
    stranger = PatientFactory()
    with pytest.raises(CartError, match="not one of this clinic's patients"):
        cart_add_lines(clinic=world["clinic"], actor=world["actor"],
                       items=[LineInput(patient=stranger, product=world["sema"], prescriber=None, quantity=1)])
    assert not CartLine.objects.exists()


def test_a_cart_being_checked_out_refuses_edits_with_a_clear_message(world):
    add(world, "jane", "sema")
    Cart.objects.update(status=Cart.Status.CHECKING_OUT)
    with pytest.raises(CartLocked, match="being checked out"):
        add(world, "john", "sema")
    with pytest.raises(CartLocked):
        cart_update_line(line=CartLine.objects.get(), actor=world["actor"], quantity=5)
    assert CartLine.objects.get().quantity == 1


def test_zero_quantity_is_refused(world):
    with pytest.raises(CartError, match="at least 1"):
        add(world, "jane", "sema", 0)


def test_a_submitted_cart_is_replaced_by_a_fresh_open_one(world):
    add(world, "jane", "sema")
    Cart.objects.update(status=Cart.Status.SUBMITTED)
    fresh = cart_get_active(clinic=world["clinic"])
    assert fresh.status == Cart.Status.OPEN and fresh.lines.count() == 0


def test_a_second_active_cart_is_refused_by_the_database(world):
    from django.db import IntegrityError, transaction

    cart_get_active(clinic=world["clinic"])
    with pytest.raises(IntegrityError), transaction.atomic():
        Cart.objects.create(clinic=world["clinic"])
    Cart.objects.create(clinic=ClinicFactory())  # another clinic may have its own
