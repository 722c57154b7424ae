"""Item 11: CSRF. Every POST form in the templates carries the token; with CSRF checks enforced (as a
browser meets them) every state-changing page and the session-authenticated API refuse a request
without it, and accept one with it. Bearer-token API calls carry no cookie, so they need none."""

from __future__ import annotations

import re
from pathlib import Path

from django.test import Client

from tests.security.test_page_matrix import PAGE_POLICY, _url, pages

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.S | re.I)


def test_every_post_form_in_the_templates_has_the_csrf_token():
    post_forms, missing = 0, []
    for template in TEMPLATES.rglob("*.html"):
        for form in FORM.findall(template.read_text()):
            opening = form.split(">", 1)[0]
            if re.search(r"method\s*=\s*[\"']?post", opening, re.I):
                post_forms += 1
                if "{% csrf_token %}" not in form:
                    missing.append(f"{template.relative_to(TEMPLATES)}: {opening}>")
    assert post_forms >= 5
    assert not missing, "\n".join(missing)


def test_state_changing_pages_refuse_a_post_without_the_token(
    people, world, django_capture_on_commit_callbacks
):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(people["owner"])
    refused = []
    with django_capture_on_commit_callbacks(execute=False):
        for route, name in pages():
            method, _ = PAGE_POLICY.get(name, ("GET", None))
            if method != "POST":
                continue
            response = browser.post(_url(route, world), {"version_a": world["version"]})
            refused.append((name, response.status_code))
    assert refused and all(status == 403 for _, status in refused), refused


def test_a_post_with_the_token_passes(people, world, django_capture_on_commit_callbacks):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(people["owner"])
    browser.get("/")  # sets the csrftoken cookie
    token = browser.cookies["csrftoken"].value
    url = f"/models/{world['model_id']}/{world['version']}/signoff/"
    with django_capture_on_commit_callbacks(execute=False):
        response = browser.post(url, {"csrfmiddlewaretoken": token, "note": "looked at 20 samples"})
    assert response.status_code == 302


def test_the_login_form_needs_the_token(people):
    browser = Client(enforce_csrf_checks=True)
    assert browser.post("/login/", {"username": "olga", "password": "pw-olga"}).status_code == 403
    page = browser.get("/login/")
    token = browser.cookies["csrftoken"].value
    assert token and "csrfmiddlewaretoken" in page.content.decode()
    response = browser.post(
        "/login/", {"username": "olga", "password": "pw-olga", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302


def test_the_api_with_a_session_needs_the_token_and_with_a_bearer_token_does_not(people):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(people["owner"])
    refused = browser.post("/api/v1/experiments", {"name": "x"}, content_type="application/json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    browser.get("/")
    token = browser.cookies["csrftoken"].value
    accepted = browser.post(
        "/api/v1/experiments", {"name": "x"}, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert accepted.status_code == 201
    # The OpenAI- and MLflow-compatible APIs share the auth class: same rule.
    for url, body in (("/api/2.0/mlflow/experiments/create", {"name": "m"}),):
        assert browser.post(url, body, content_type="application/json").status_code == 403
    bearer = Client(enforce_csrf_checks=True).post(
        "/api/v1/experiments", {"name": "y"}, content_type="application/json",
        headers={"Authorization": f"Bearer {people['owner'].raw_token}"},
    )  # fmt: skip
    assert bearer.status_code == 201
