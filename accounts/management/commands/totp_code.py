"""For the demo (DEBUG only): the code a login's authenticator app would show now, for someone
trying Fizy without an authenticator app at hand."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = "Print the current two-factor code of a demo login (its authenticator set up or being set up). DEBUG only."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        if not settings.DEBUG:
            raise CommandError("totp_code is for the demo only (DEBUG=true): a real login's code comes from its owner's phone.")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No login {username!r}.")
        # The confirmed authenticator, or the one the enrolment page shows right now.
        device = TOTPDevice.objects.filter(user=user).order_by("-confirmed", "-pk").first()
        if device is None:
            raise CommandError(f"{username} has no authenticator yet: log in as {username} first (the page that "
                               "sets one up creates it), then run this again.")
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        self.stdout.write(f"{totp.token():0{device.digits}d}")
