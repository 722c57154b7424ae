"""Defects seen on every page: the 403 and 404 pages, the favicon, the top bar's links."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_an_evaluator_on_a_dashboard_gets_the_styled_403(client, make_user):
    client.force_login(make_user("ann", role="evaluator"))
    response = client.get("/experiments/")
    page = response.content.decode()
    assert response.status_code == 403
    assert 'class="topbar"' in page and 'data-status="403"' in page
    assert "Dashboards are for researchers and admins" in page
    assert 'href="/rate/"' in page  # the way back to what they can do


def test_a_404_is_the_styled_page_not_a_debug_page(client, researcher, settings):
    settings.DEBUG = False
    client.force_login(researcher)
    response = client.get("/no/such/page/")
    page = response.content.decode()
    assert response.status_code == 404
    assert 'data-status="404"' in page and "/no/such/page/" in page
    assert "URLconf" not in page and "Using the URLconf" not in page


def test_debug_is_off_unless_asked_for():
    from django.conf import settings as live

    assert live.DEBUG is False


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO header


def test_top_bar_links_evaluations_and_rate(client, researcher, make_user):
    from t4dm_site.services import role_assign

    client.force_login(researcher)
    page = client.get("/").content.decode()
    assert 'href="/evaluations/"' in page
    assert 'href="/rate/"' not in page  # not an evaluator
    role_assign(user=researcher, role="evaluator")
    assert 'href="/rate/">Rate<' in client.get("/").content.decode()
    client.force_login(make_user("ann", role="evaluator"))
    assert 'href="/rate/">Rate<' in client.get("/rate/").content.decode()
