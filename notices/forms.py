from django import forms

from clinics.models import Patient

from .models import NoticeSettings
from .services import SETTINGS_FIELDS


class NoticeSettingsForm(forms.ModelForm):
    class Meta:
        model = NoticeSettings
        fields = list(SETTINGS_FIELDS)
        widgets = {
            "quiet_hours_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "quiet_hours_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "digest_hour": forms.NumberInput(attrs={"min": 0, "max": 23}),
            "link_valid_days": forms.NumberInput(attrs={"min": 1, "max": 365}),
        }

    def changes(self) -> dict:
        return {name: self.cleaned_data[name] for name in SETTINGS_FIELDS}


class TemplateForm(forms.Form):
    subject = forms.CharField(max_length=200, required=False)
    body = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 6}))


class PatientNoticesForm(forms.Form):
    contact_preference = forms.ChoiceField(label="Order updates by", choices=Patient.ContactPreference.choices,
                                           required=False)
    consent = forms.BooleanField(
        required=False, label="The patient agreed to receive order updates this way",
        help_text="Record it only when the patient said yes (in person, on the phone, or on your intake form).",
    )
