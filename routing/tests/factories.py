import factory

from catalog.tests.factories import PartnerFactory
from routing.models import RoutingRule


class RoutingRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RoutingRule

    name = factory.Sequence(lambda n: f"Rule {n}")
    priority = factory.Sequence(lambda n: 10 * (n + 1))
    partner = factory.SubFactory(PartnerFactory)
    states = factory.LazyFunction(list)
