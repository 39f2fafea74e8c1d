import re

import pytest
import yaml
from django.urls import URLResolver, get_resolver
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db


def _api_routes():
    for pattern in get_resolver().url_patterns:
        if isinstance(pattern, URLResolver) and getattr(pattern, "urlconf_name", None) and \
                getattr(pattern.urlconf_module, "app_name", "") == "clinic_api":
            for p in pattern.url_patterns:
                route = str(p.pattern)
                if route.startswith("api/v1/") and p.name not in ("schema", "docs"):
                    yield "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route).replace("{pk}", "{id}")  # drf-spectacular names a pk "id"


def test_the_schema_is_valid_openapi_3_1_and_lists_every_endpoint(client):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.1")
    validate(schema)
    routes = set(_api_routes())
    assert routes and routes <= set(schema["paths"]), routes - set(schema["paths"])
    assert not any(path.startswith("/api/partners") for path in schema["paths"])
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_the_docs_page_serves_its_scripts_from_this_site(client):
    page = client.get("/api/v1/docs/").content.decode()
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page)
    assert scripts and all(src.startswith("/static/") for src in scripts), scripts
