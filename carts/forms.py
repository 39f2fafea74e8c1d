from django import forms
from django.utils import timezone

from clinics.models import Clinic, Patient
from clinics.patients import PATIENT_FIX_FIELDS
from fizy.lib.http import has_nul

from .models import CartLine
from .selectors import prescribers_for
from .services import EDITABLE_FIELDS


class PrescriberChoiceField(forms.ModelChoiceField):
    """Prescribers, those licensed in the patient's state first and marked so."""

    state = ""

    def label_from_instance(self, prescriber):
        if not self.state:
            return str(prescriber)
        if getattr(prescriber, "licensed_here", False):
            return f"{prescriber} · licensed in {self.state}"
        return f"{prescriber} · no active {self.state} license"


class CartLineForm(forms.ModelForm):
    """A line's editable fields (the cart service's ``EDITABLE_FIELDS``: one list for both); the
    prescriber choices are the clinic organization's, those licensed in ``state`` first."""

    class Meta:
        model = CartLine
        fields = EDITABLE_FIELDS
        field_classes = {"prescriber": PrescriberChoiceField}
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

    def __init__(self, *args, clinic: Clinic, state: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["prescriber"].queryset = prescribers_for(clinic=clinic, state=state)
        self.fields["prescriber"].state = state
        self.fields["prescriber"].empty_label = "— choose the prescriber —"
        self.fields["quantity"].min_value = 1
        self.fields["quantity"].widget.attrs["min"] = 1

    def clean_quantity(self):
        quantity = self.cleaned_data["quantity"]
        if quantity is None or quantity < 1:
            raise forms.ValidationError("Quantity must be at least 1.")
        return quantity

    def changes(self) -> dict:
        return {name: self.cleaned_data[name] for name in EDITABLE_FIELDS}

    @staticmethod
    def data_of(line: CartLine, **override) -> dict:
        """What the form posts for ``line`` as it is, with ``override`` (a one-click fix)."""
        data = {name: getattr(line, name) for name in EDITABLE_FIELDS if name != "prescriber"}
        data["prescriber"] = line.prescriber_id or ""
        data = {name: "" if value is None else value for name, value in data.items()}
        return {**data, **override}


class PatientQuickForm(forms.ModelForm):
    class Meta:
        model = Patient
        fields = ["chart_id", "first_name", "last_name", "date_of_birth", "phone", "email",
                  "address_line1", "address_line2", "city", "state", "zip_code"]
        widgets = {"date_of_birth": forms.DateInput(attrs={"type": "date", "min": "1900-01-01"})}

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
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError("The file is not UTF-8 text. Save it from your spreadsheet as 'CSV UTF-8'.")
        if has_nul(text):
            raise forms.ValidationError("The file contains NUL characters (\\0), so it is not a plain CSV file. "
                                        "Save it from your spreadsheet as 'CSV UTF-8' and upload it again.")
        return text


class PatientFixForm(forms.ModelForm):
    """What the cart's preflight may ask a coordinator to complete for a patient: all of
    ``PATIENT_FIX_FIELDS``, or only ``fields`` (a one-field fix typed in the problem's row).
    A date of birth once recorded cannot be cleared; it must be a real one (the model's rule)."""

    class Meta:
        model = Patient
        fields = list(PATIENT_FIX_FIELDS)
        widgets = {"date_of_birth": forms.DateInput(attrs={"type": "date"})}
        error_messages = {"date_of_birth": {"required": "The date of birth cannot be removed; enter the right one."}}

    def __init__(self, *args, fields=None, **kwargs):
        super().__init__(*args, **kwargs)
        if fields:
            for name in set(self.fields) - set(fields):
                del self.fields[name]
        if "date_of_birth" in self.fields:
            dob = self.fields["date_of_birth"]
            dob.required = fields is not None and "date_of_birth" in fields or self.instance.date_of_birth is not None
            dob.widget.attrs.update({"min": "1900-01-01", "max": timezone.localdate().isoformat()})
        for name in {"address_line1", "city", "state", "zip_code"} & set(fields or ()):
            self.fields[name].required = True
