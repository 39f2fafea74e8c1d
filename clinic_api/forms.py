from django import forms

from .models import Scope, WebhookEvent


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="The system that uses it, e.g. 'EHR sync'. The audit trail shows it.")
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple,
                                       error_messages={"required": "Choose at least one scope."})


class SubscriptionForm(forms.Form):
    url = forms.URLField(max_length=500, label="URL", assume_scheme="https",
                         help_text="Your HTTPS endpoint; each event is POSTed to it, signed (Standard Webhooks).")
    events = forms.MultipleChoiceField(choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple,
                                       error_messages={"required": "Choose at least one event."})
