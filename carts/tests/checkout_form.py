"""What the review page's place-order form sends: the cart version and the signed prices shown."""

import html
import re

from django.urls import reverse

FIELD = re.compile(r'<input type="hidden" name="(version|quote)" value="([^"]*)">')


def place_order_data(client) -> dict:
    """Open the review page as the coordinator would and read the form's hidden fields."""
    page = client.get(reverse("carts:checkout")).content.decode()
    return {name: html.unescape(value) for name, value in FIELD.findall(page)}
