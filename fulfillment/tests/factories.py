"""Orders as checkout leaves them: one PartnerOrder per partner (queued), lines pending, snapshots taken."""

from decimal import Decimal

import factory
from django.utils import timezone

from catalog.tests.factories import PartnerFactory, ProductFactory
from clinics.tests.factories import ClinicFactory, PatientFactory, PrescriberFactory, PrescriberLicenseFactory
from fulfillment.models import Order, OrderLine, PartnerOrder


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    clinic = factory.SubFactory(ClinicFactory)
    placed_at = factory.LazyFunction(timezone.now)
    ship_to = factory.LazyAttribute(lambda o: o.clinic.ship_to_snapshot())
    total = Decimal("0.00")
    payment_gateway = "sandbox"
    payment_reference = factory.Sequence(lambda n: f"pi_sandbox_{n}")
    payment_status = Order.PaymentStatus.AUTHORIZED


class PartnerOrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PartnerOrder

    order = factory.SubFactory(OrderFactory)
    partner = factory.SubFactory(PartnerFactory)


class OrderLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderLine

    partner_order = factory.SubFactory(PartnerOrderFactory)
    order = factory.LazyAttribute(lambda o: o.partner_order.order)
    patient = factory.LazyAttribute(lambda o: PatientFactory(organization=o.order.clinic.organization))
    product = factory.SubFactory(ProductFactory)
    prescriber = factory.LazyAttribute(
        lambda o: PrescriberLicenseFactory(prescriber=PrescriberFactory(organization=o.order.clinic.organization)).prescriber
    )
    patient_snapshot = factory.LazyAttribute(lambda o: o.patient.snapshot())
    prescriber_snapshot = factory.LazyAttribute(lambda o: o.prescriber.snapshot(state=o.patient.state) if o.prescriber else {})
    product_name = factory.LazyAttribute(lambda o: str(o.product))
    partner_sku = factory.Sequence(lambda n: f"PSKU-L{n:05d}")
    quantity = 2
    sig = "Inject 0.25 mg subcutaneously once weekly."
    days_supply = 28
    refills = 0
    unit_price = Decimal("100.00")
    shipping_share = Decimal("5.00")
    landed_cost = factory.LazyAttribute(lambda o: o.unit_price * o.quantity + o.shipping_share)


def order_with_lines(*, clinic=None, partners=None, lines_per_partner=2, placed_by=None) -> Order:
    """An order as checkout leaves it: one queued PartnerOrder per partner, pending lines, total set."""
    order = OrderFactory(**({"clinic": clinic} if clinic else {}), placed_by=placed_by)
    partners = partners if partners is not None else [PartnerFactory()]
    patients = [PatientFactory(organization=order.clinic.organization) for _ in range(lines_per_partner)]
    prescriber = PrescriberLicenseFactory(prescriber=PrescriberFactory(organization=order.clinic.organization)).prescriber
    for partner in partners:
        partner_order = PartnerOrderFactory(order=order, partner=partner)
        for patient in patients:
            OrderLineFactory(partner_order=partner_order, patient=patient, prescriber=prescriber)
    order.total = sum(line.landed_cost for line in order.lines.all())
    order.amount_authorized = order.total
    order.save(update_fields=["total", "amount_authorized"])
    return order
