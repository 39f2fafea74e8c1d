from decimal import Decimal

import pytest

from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory


@pytest.fixture
def glp1():
    return ProductFactory(name="Semaglutide", strength="2.5 mg/mL")


@pytest.fixture
def harbor(glp1):
    """Licensed in CA and TX; $150 + $14 shipping."""
    partner = PartnerFactory(name="Harbor", states=["CA", "TX"])
    OfferingFactory(partner=partner, product=glp1, unit_price=Decimal("150.00"), shipping_fee=Decimal("14.00"))
    return partner


@pytest.fixture
def cedar(glp1):
    """Licensed in TX only; $155 + $12 shipping."""
    partner = PartnerFactory(name="Cedar", states=["TX"])
    OfferingFactory(partner=partner, product=glp1, unit_price=Decimal("155.00"), shipping_fee=Decimal("12.00"))
    return partner
