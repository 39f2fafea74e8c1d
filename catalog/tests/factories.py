import base64
import datetime
import hashlib
from decimal import Decimal

import factory

from catalog.models import Offering, Partner, PartnerStateLicense, Product


class PartnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Partner
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Partner Pharmacy {n}")
    slug = factory.Sequence(lambda n: f"partner-{n}")
    api_base_url = factory.LazyAttribute(lambda p: f"http://partner.test/{p.slug}")
    api_key = "key-for-tests"
    webhook_secret = factory.Sequence(lambda n: "whsec_" + base64.b64encode(hashlib.sha256(f"test-{n}".encode()).digest()).decode())

    @factory.post_generation
    def states(self, create, extracted, **kwargs):
        for state in extracted or ():
            PartnerStateLicense.objects.create(
                partner=self, state=state, expires_on=datetime.date.today() + datetime.timedelta(days=365)
            )


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"FZ-T{n:04d}")
    name = factory.Sequence(lambda n: f"Compound {n}")
    strength = "10 mg/mL"
    dosage_form = Product.DosageForm.INJECTABLE
    unit = "vial"
    max_quantity_per_line = 10


class OfferingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Offering

    partner = factory.SubFactory(PartnerFactory)
    product = factory.SubFactory(ProductFactory)
    partner_sku = factory.Sequence(lambda n: f"PSKU-{n:05d}")
    unit_price = Decimal("100.00")
    shipping_fee = Decimal("10.00")
    stock_quantity = 100
