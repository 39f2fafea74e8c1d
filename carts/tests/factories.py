import factory

from carts.models import Cart, CartLine
from catalog.tests.factories import ProductFactory
from prescriptions.tests.factories import prescription_for_line
from clinics.tests.factories import ClinicFactory, PatientFactory, PrescriberFactory


class CartFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cart

    clinic = factory.SubFactory(ClinicFactory)


class CartLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CartLine

    cart = factory.SubFactory(CartFactory)
    patient = factory.SubFactory(PatientFactory, organization=factory.SelfAttribute("..cart.clinic.organization"))
    product = factory.SubFactory(ProductFactory)
    prescriber = factory.SubFactory(PrescriberFactory, organization=factory.SelfAttribute("..cart.clinic.organization"))
    quantity = 1
    sig = "Inject 0.25 mg subcutaneously once weekly for 4 weeks."
    days_supply = 28
    refills = 0
    # The prescription of record the line points to, matching it (its product, quantity, SIG).
    prescription = factory.LazyAttribute(lambda line: prescription_for_line(line))
