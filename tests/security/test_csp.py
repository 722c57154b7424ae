"""Issue 17 item 13: no Content-Security-Policy; `/api/v1/docs` loaded Swagger UI from a CDN without
integrity. Pages carry a CSP whose scripts come from this site only (no inline script or handler,
no eval), and the API docs load Swagger UI from this site's static files. The pages themselves are
checked in Chromium by tests/security/test_csp_browser.py and by every browser test (tests/conftest.py
fails a browser test on any CSP violation)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in header.split(";")) if d}


@pytest.mark.parametrize("path", ["/", "/experiments/", "/configs/new/", "/models/", "/datasets/", "/login/"])
def test_pages_carry_a_csp_with_scripts_from_this_site_only(client, researcher, path):
    client.force_login(researcher)
    response = client.get(path)
    assert response.status_code == 200
    policy = _policy(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["default-src"] == ["'self'"] and policy["base-uri"] == ["'self'"]


def test_no_template_has_an_inline_script_or_event_handler():
    offenders = []
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            if "src=" not in tag and "application/json" not in tag:
                offenders.append(f"{template.name}: {tag}")
        offenders += [f"{template.name}: {m}" for m in re.findall(r"<[^>]*\son[a-z]+\s*=", text)]
        offenders += [f"{template.name}: javascript: URL" for _ in re.findall(r"javascript:", text)]
    assert not offenders, offenders


@pytest.mark.parametrize("docs", ["/api/v1/docs", "/v1/docs", "/api/2.0/mlflow/docs"])
def test_api_docs_load_swagger_ui_from_this_site(client, researcher, docs):
    client.force_login(researcher)
    response = client.get(docs)
    assert response.status_code == 200
    html = response.content.decode()
    sources = re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="([^"]+)"', html)
    assert any(s.endswith("swagger-ui-bundle.js") for s in sources), sources
    assert all(s.startswith("/static/") for s in sources), sources  # nothing from a CDN
    assert "cdn.jsdelivr" not in html and "unpkg" not in html
    assert _policy(response)["script-src"] == ["'self'"]
    # the files are there to serve (the static finders find them)
    from django.contrib.staticfiles import finders

    for source in sources:
        assert finders.find(source.removeprefix("/static/")), source
