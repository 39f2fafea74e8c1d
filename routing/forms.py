from django import forms
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.utils.html import format_html
from localflavor.us.us_states import STATE_CHOICES

from catalog.models import Product
from clinics.models import Clinic

from .models import RoutingRule


class StatePicker(FilteredSelectMultiple):
    """The admin's two-list selector. Its script puts the selector first in the select's parent, so
    give the select a parent of its own (model M2M fields get one from the related-widget wrapper);
    otherwise the field's label ends up after the selector."""

    def render(self, *args, **kwargs):
        return format_html('<div class="related-widget-wrapper">{}</div>', super().render(*args, **kwargs))


class RoutingRuleForm(forms.ModelForm):
    """The admin's rule form: ship-to states picked from a filterable two-list selector."""

    states = forms.MultipleChoiceField(
        label="Patient ship-to states", required=False, choices=lambda: list(STATE_CHOICES),
        widget=StatePicker("states", is_stacked=False),
        help_text="Only patients shipping to one of the chosen states. None chosen: any state.",
    )

    class Meta:
        model = RoutingRule
        fields = ["name", "priority", "active", "partner", "product", "states", "organization", "clinic"]


class RouteTestForm(forms.Form):
    """Product + state (+ quantity, clinic) → where one line would go, and why."""

    product = forms.ModelChoiceField(queryset=Product.objects.order_by("name", "strength"))
    state = forms.ChoiceField(label="Patient ship-to state", choices=lambda: [("", "---------"), *STATE_CHOICES])
    quantity = forms.IntegerField(min_value=1, initial=1)
    clinic = forms.ModelChoiceField(
        queryset=Clinic.objects.select_related("organization"), required=False,
        help_text="Rules limited to a clinic or an organization apply only when you pick a clinic.",
    )
