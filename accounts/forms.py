from django import forms


class CodeForm(forms.Form):
    code = forms.CharField(label="Code", max_length=40, strip=True,
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text",
                                                         "autofocus": True, "spellcheck": "false"}))

    def clean_code(self):
        code = self.cleaned_data["code"]
        if "\x00" in code:
            raise forms.ValidationError("That is not a code.")
        return code
