from django import forms
from django.utils import timezone

from clinics.models import Prescriber

from .models import Prescription

SOURCES = [
    (Prescription.Source.ERX, "E-prescription (message id or Rx number)"),
    (Prescription.Source.DOCUMENT, "Signed document (PDF, JPEG or PNG, up to 10 MB)"),
    (Prescription.Source.WRITTEN, "Written here by the prescriber (typed-name attestation)"),
]


class PrescriptionForm(forms.Form):
    """A prescription of record as the clinic has it; the service checks the rest (limits by
    schedule and state, the document's real type, the attestation)."""

    source = forms.ChoiceField(choices=SOURCES, widget=forms.RadioSelect, initial=Prescription.Source.ERX)
    prescriber = forms.ModelChoiceField(queryset=Prescriber.objects.none(), empty_label="— prescriber —")
    sig = forms.CharField(label="SIG (directions)", widget=forms.Textarea(attrs={"rows": 2}))
    quantity = forms.IntegerField(label="Quantity per fill", min_value=1)
    days_supply = forms.IntegerField(min_value=1, max_value=365)
    refills_authorized = forms.IntegerField(label="Refills", min_value=0, max_value=11, initial=0)
    written_on = forms.DateField(label="Written on", widget=forms.DateInput(attrs={"type": "date"}))
    erx_message_id = forms.CharField(label="E-prescription message id", required=False, max_length=100)
    rx_number = forms.CharField(label="Rx number", required=False, max_length=40)
    document = forms.FileField(label="Signed prescription", required=False)
    attested_name = forms.CharField(label="Prescriber's full name (attestation)", required=False, max_length=200)

    def __init__(self, *args, organization_id: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["prescriber"].queryset = Prescriber.objects.filter(organization_id=organization_id, active=True)
        self.fields["written_on"].widget.attrs["max"] = timezone.localdate().isoformat()

    @classmethod
    def initial_for(cls, line) -> dict:
        return {"prescriber": line.prescriber_id, "sig": line.sig, "quantity": line.quantity,
                "days_supply": line.days_supply, "refills_authorized": line.refills,
                "written_on": timezone.localdate(), "source": Prescription.Source.ERX}
