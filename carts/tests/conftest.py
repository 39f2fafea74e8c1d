import datetime
import re
from decimal import Decimal

import pytest
import responses as responses_lib

from carts.services import LineInput, cart_add_lines
from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory
from clinics.tests.factories import PatientFactory, PrescriberFactory, PrescriberLicenseFactory
from prescriptions.tests.factories import prescriptions_on_file


@pytest.fixture
def partner_api():
    """Partner order APIs, faked with ``responses``: every order POST is accepted with a reference."""
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses_lib.POST, re.compile(r"http://partner\.test/.*"), json={"reference": "PX-1"}, status=201)
        yield mock


@pytest.fixture
def ready_cart(clinic_a, alice, partner_api):
    """Clinic A's cart with three valid lines for two patients, routed to two partners; the clinic
    has a saved sandbox card."""
    clinic_a.stripe_customer_id = "cus_sandbox_test"
    clinic_a.payment_method_id = "pm_sandbox_visa"
    clinic_a.card_brand, clinic_a.card_last4, clinic_a.card_exp = "visa", "4242", "12/2034"
    clinic_a.save()
    org = clinic_a.organization
    cedar = PartnerFactory(name="Cedar", states=["TX"])
    harbor = PartnerFactory(name="Harbor", states=["TX"])
    sema = ProductFactory(name="Semaglutide", max_quantity_per_line=4)
    ldn = ProductFactory(name="Naltrexone", max_quantity_per_line=90, dosage_form="capsule")
    OfferingFactory(partner=cedar, product=sema, unit_price=Decimal("150.00"), shipping_fee=Decimal("20.00"))
    OfferingFactory(partner=harbor, product=ldn, unit_price=Decimal("0.50"), shipping_fee=Decimal("10.00"))
    prescriber = PrescriberFactory(organization=org)
    PrescriberLicenseFactory(prescriber=prescriber, state="TX",
                             expires_on=datetime.date.today() + datetime.timedelta(days=400))
    ann = PatientFactory(organization=org, first_name="Ann", last_name="Lee", state="TX")
    bo = PatientFactory(organization=org, first_name="Bo", last_name="Ray", state="TX")
    sema.requires_clinical_difference = False
    items = [
        LineInput(patient=ann, product=sema, prescriber=prescriber, quantity=2, days_supply=28,
                  sig="Inject 0.25 mg subcutaneously once weekly"),
        LineInput(patient=ann, product=ldn, prescriber=prescriber, quantity=30, days_supply=30,
                  sig="Take 1 capsule by mouth nightly"),
        LineInput(patient=bo, product=sema, prescriber=prescriber, quantity=1, days_supply=28,
                  sig="Inject 0.25 mg subcutaneously once weekly"),
    ]
    prescriptions_on_file(clinic_a, items)
    cart = cart_add_lines(clinic=clinic_a, actor=alice, items=items).created[0].cart
    cart.refresh_from_db()
    return {"cart": cart, "cedar": cedar, "harbor": harbor, "ann": ann, "bo": bo, "sema": sema, "ldn": ldn,
            "prescriber": prescriber}
