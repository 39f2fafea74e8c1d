import factory

from catalog.tests.factories import PartnerFactory
from routing.engine import route_lines
from routing.models import RoutingRule


def route_cart(cart, *, today=None):
    """Route every line of a cart (the tests' shorthand for what the cart page does)."""
    return route_lines(cart.lines.select_related("patient", "product"), clinic=cart.clinic, today=today)


class RoutingRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RoutingRule

    name = factory.Sequence(lambda n: f"Rule {n}")
    priority = factory.Sequence(lambda n: 10 * (n + 1))
    partner = factory.SubFactory(PartnerFactory)
    states = factory.LazyFunction(list)
