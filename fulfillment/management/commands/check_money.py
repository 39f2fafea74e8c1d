"""``python manage.py check_money``: the money invariant over every order (``fulfillment.ledger``)."""

from django.core.management.base import BaseCommand, CommandError

from fulfillment.ledger import money_violations
from fulfillment.models import Order


class Command(BaseCommand):
    help = "Check that captured + charged − refunded equals what every order's charged lines cost; exit 1 on any violation."

    def add_arguments(self, parser):
        parser.add_argument("--order", action="append", default=[], metavar="FZ-000123",
                            help="check only these orders (number as printed, or id); repeatable")

    def handle(self, *args, order, **options):
        orders = Order.objects.all()
        if order:
            try:
                ids = [int(value.upper().removeprefix("FZ-")) for value in order]
            except ValueError:
                raise CommandError("--order takes an order number such as FZ-000123 (or its id).") from None
            orders = orders.filter(pk__in=ids)
        violations = money_violations(orders=orders)
        for violation in violations:
            self.stdout.write(str(violation))
        count = orders.count()
        if violations:
            raise CommandError(f"{len(violations)} money violation(s) in {count} order(s).", returncode=1)
        self.stdout.write(self.style.SUCCESS(f"Money is right: {count} order(s) checked, no violation."))
