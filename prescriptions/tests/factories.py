import datetime

import factory
from django.utils import timezone

from catalog.tests.factories import ProductFactory
from clinics.tests.factories import ClinicFactory, PatientFactory, PrescriberFactory
from prescriptions.models import Prescription


class PrescriptionFactory(factory.django.DjangoModelFactory):
    """An active e-prescription with refills left, written a month ago."""

    class Meta:
        model = Prescription

    clinic = factory.SubFactory(ClinicFactory)
    patient = factory.SubFactory(PatientFactory, organization=factory.SelfAttribute("..clinic.organization"))
    prescriber = factory.SubFactory(PrescriberFactory, organization=factory.SelfAttribute("..clinic.organization"))
    product = factory.SubFactory(ProductFactory)
    sig = "Inject 0.25 mg subcutaneously once weekly for 4 weeks."
    quantity = 1
    days_supply = 28
    refills_authorized = 5
    fills_remaining = factory.LazyAttribute(lambda o: o.refills_authorized + 1)
    written_on = factory.LazyFunction(lambda: timezone.localdate() - datetime.timedelta(days=30))
    expires_on = factory.LazyAttribute(lambda o: o.written_on + datetime.timedelta(days=150))
    source = Prescription.Source.ERX
    erx_message_id = factory.Sequence(lambda n: f"SS-MSG-{n:06d}")
    rx_number = factory.Sequence(lambda n: f"RX{n:07d}")


def prescription_for_line(line, **overrides) -> Prescription:
    """A prescription on file matching a cart line (or a LineInput) of ``clinic``'s cart."""
    clinic = overrides.pop("clinic", None) or line.cart.clinic
    prescriber = line.prescriber or PrescriberFactory(organization=clinic.organization)
    values = dict(clinic=clinic, patient=line.patient, product=line.product, prescriber=prescriber,
                  quantity=line.quantity or 1, sig=line.sig or "Take as prescribed by mouth daily",
                  days_supply=line.days_supply or 28)
    if line.product.dea_schedule:
        values["refills_authorized"] = 0 if line.product.dea_schedule == "II" else 5
    return PrescriptionFactory(**{**values, **overrides})


def prescriptions_on_file(clinic, items) -> list[Prescription]:
    """The prescriptions of record for ``items`` (LineInputs), so that adding them picks them."""
    return [prescription_for_line(item, clinic=clinic) for item in items]


def prescribe_as_line(line) -> Prescription:
    """The prescription updated to what the line now says (a new prescription, as the prescriber
    would write it): the line points to it."""
    from carts.models import CartLine

    line.refresh_from_db()
    rx = prescription_for_line(line)
    CartLine.objects.filter(pk=line.pk).update(prescription=rx)
    line.prescription = rx
    return rx
