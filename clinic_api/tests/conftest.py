import datetime
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory
from clinic_api.keys import api_key_create
from clinic_api.models import Scope
from clinics.tests.factories import PatientFactory, PrescriberFactory, PrescriberLicenseFactory
from prescriptions.tests.factories import PrescriptionFactory

ALL_SCOPES = list(Scope.values)


def api_client(token: str | None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def key_a(clinic_admin_a, clinic_a):
    """Clinic A's key with every scope: (key, token)."""
    new = api_key_create(clinic=clinic_a, name="EHR sync", scopes=ALL_SCOPES, actor=clinic_admin_a)
    return new.key, new.token


@pytest.fixture
def api(key_a):
    return api_client(key_a[1])


@pytest.fixture
def catalog_world(clinic_a):
    """A partner shipping to TX, a product it stocks, a prescriber of clinic A licensed in TX."""
    cedar = PartnerFactory(name="Cedar", states=["TX"])
    sema = ProductFactory(name="Semaglutide", sku="SEMA-5", max_quantity_per_line=4, requires_clinical_difference=False)
    OfferingFactory(partner=cedar, product=sema, unit_price=Decimal("150.00"), shipping_fee=Decimal("20.00"),
                    stock_quantity=1000)
    prescriber = PrescriberFactory(organization=clinic_a.organization)
    PrescriberLicenseFactory(prescriber=prescriber, state="TX",
                             expires_on=datetime.date.today() + datetime.timedelta(days=400))
    patient = PatientFactory(organization=clinic_a.organization, state="TX", chart_id="A-100")
    # Their prescription on file: up to 10 vials a fill, the directions the lines use.
    PrescriptionFactory(clinic=clinic_a, patient=patient, product=sema, prescriber=prescriber, quantity=10,
                        days_supply=28, sig="Inject 0.25 mg subcutaneously once weekly")
    return {"partner": cedar, "product": sema, "prescriber": prescriber, "patient": patient}


def line_body(world, **override) -> dict:
    body = {"patient": world["patient"].pk, "product": world["product"].pk, "prescriber": world["prescriber"].pk,
            "quantity": 1, "sig": "Inject 0.25 mg subcutaneously once weekly", "days_supply": 28}
    body.update(override)
    return {name: value for name, value in body.items() if value is not DROP}


DROP = object()  # line_body(world, patient=DROP): the field is not sent
