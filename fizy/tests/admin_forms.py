"""What a browser would submit from an admin page's form: every field with its shown value,
for tests that change one or two fields and post the rest as they are."""

from html.parser import HTMLParser


class _FormReader(HTMLParser):
    def __init__(self, form_id):
        super().__init__(convert_charrefs=True)
        self.form_id, self.inside, self.data = form_id, False, {}
        self._select = self._textarea = None
        self._first_option = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = self.form_id is None or a.get("id") == self.form_id
            return
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in {"submit", "button", "file", "image", "reset"}:
            if a.get("type") in {"checkbox", "radio"}:
                if "checked" in a:
                    self._add(name, a.get("value", "on"))
            else:
                self.data[name] = a.get("value", "")
        elif tag == "select" and name:
            self._select = (name, "multiple" in a)
            if "multiple" in a:
                self.data.setdefault(name, [])
        elif tag == "option" and self._select:
            name, multiple = self._select
            value = a.get("value", "")
            self._first_option.setdefault(name, value)
            if "selected" in a:
                self._add(name, value) if multiple else self.data.__setitem__(name, value)
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select:
            name, multiple = self._select
            if not multiple and name not in self.data:
                self.data[name] = self._first_option.get(name, "")
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, text):
        if self._textarea:
            self.data[self._textarea] += text.lstrip("\n") if not self.data[self._textarea] else text

    def _add(self, name, value):
        current = self.data.get(name)
        if current is None:
            self.data[name] = value
        elif isinstance(current, list):
            current.append(value)
        else:
            self.data[name] = [current, value]


def admin_form_data(html: str, form_id: str | None = None, **changes) -> dict:
    """The fields of the page's form (the admin's change form has id ``<model>_form``), with
    ``changes`` applied; a change of ``None`` removes the field (an unticked checkbox)."""
    reader = _FormReader(form_id)
    reader.feed(html)
    data = reader.data
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data
