from django import forms

from clinics.models import Clinic, Patient

from .models import CartLine
from .selectors import prescribers_for

LINE_FIELDS = ["prescriber", "quantity", "sig", "days_supply", "refills", "clinical_difference", "notes"]


class CartLineForm(forms.ModelForm):
    """A line's editable fields; the prescriber choices are the clinic organization's."""

    class Meta:
        model = CartLine
        fields = LINE_FIELDS
        widgets = {
            "sig": forms.Textarea(attrs={"rows": 2, "placeholder": "e.g. Inject 0.25 mg subcutaneously once weekly"}),
            "clinical_difference": forms.Textarea(attrs={"rows": 2}),
            "notes": forms.Textarea(attrs={"rows": 1}),
            "quantity": forms.NumberInput(attrs={"min": 1, "class": "num"}),
            "days_supply": forms.NumberInput(attrs={"min": 1, "class": "num"}),
            "refills": forms.NumberInput(attrs={"min": 0, "class": "num"}),
        }
        error_messages = {
            "quantity": {"required": "Enter a quantity of at least 1.", "min_value": "Quantity must be at least 1."},
        }

    def __init__(self, *args, clinic: Clinic, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["prescriber"].queryset = prescribers_for(clinic=clinic)
        self.fields["prescriber"].empty_label = "— choose the prescriber —"
        self.fields["quantity"].min_value = 1
        self.fields["quantity"].widget.attrs["min"] = 1

    def clean_quantity(self):
        quantity = self.cleaned_data["quantity"]
        if quantity is None or quantity < 1:
            raise forms.ValidationError("Quantity must be at least 1.")
        return quantity

    def changes(self) -> dict:
        return {name: self.cleaned_data[name] for name in LINE_FIELDS}


class PatientQuickForm(forms.ModelForm):
    class Meta:
        model = Patient
        fields = ["chart_id", "first_name", "last_name", "date_of_birth", "phone", "email",
                  "address_line1", "address_line2", "city", "state", "zip_code"]
        widgets = {"date_of_birth": forms.DateInput(attrs={"type": "date"})}

    def __init__(self, *args, clinic: Clinic, **kwargs):
        super().__init__(*args, **kwargs)
        self.clinic = clinic
        for name in ["date_of_birth", "address_line1", "city", "state", "zip_code"]:
            self.fields[name].required = True

    def clean_chart_id(self):
        chart_id = self.cleaned_data["chart_id"].strip()
        if Patient.objects.filter(organization_id=self.clinic.organization_id, chart_id=chart_id).exists():
            raise forms.ValidationError(
                f"Chart ID {chart_id} already belongs to a patient of your organization; search for them instead."
            )
        return chart_id


class CsvUploadForm(forms.Form):
    file = forms.FileField(label="Refill list (CSV)")

    MAX_BYTES = 1_000_000

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > self.MAX_BYTES:
            raise forms.ValidationError("The file is larger than 1 MB; split it into smaller lists.")
        raw = upload.read()
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError("The file is not UTF-8 text. Save it from your spreadsheet as 'CSV UTF-8'.")


class PatientFixForm(forms.ModelForm):
    """What the cart's preflight may ask a coordinator to complete for a patient."""

    class Meta:
        model = Patient
        fields = ["date_of_birth", "phone", "address_line1", "address_line2", "city", "state", "zip_code"]
        widgets = {"date_of_birth": forms.DateInput(attrs={"type": "date"})}
