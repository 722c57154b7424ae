"""The training form's live estimate follows the dataset version picker: picking an older, smaller
version estimates on its tokens, and switching datasets never sends the previous dataset's version
number (needs the system Chromium, tests/platform.py)."""

from __future__ import annotations

import pytest

from tests.platform import browser_log_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _tokens(version) -> int:
    stats = version.statistics
    return int(
        (stats.get("avg_tokens_input", 0) + stats.get("avg_tokens_output", 0)) * stats["train_samples"]
    )


def test_the_estimate_follows_the_picked_version(page, live_server, transactional_db, demo_config):
    from datasets_app.models import DatasetVersion
    from datasets_app.services import dataset_prepare
    from tests.conftest import DEMO_ROWS

    v1 = demo_config.dataset_version
    v2 = DatasetVersion.objects.get(pk=v1.pk)
    v2.pk, v2.number, v2.parent = None, 2, v1
    v2.statistics = {**v1.statistics, "train_samples": v1.statistics["train_samples"] * 10}
    v2.save()
    other = dataset_prepare(owner=demo_config.owner, name="other", content=DEMO_ROWS.read_bytes() * 2,
                            task_type="chat", reuse_same_content=False)  # fmt: skip
    browser_log_in(page, live_server.url)
    page.goto(live_server.url + "/configs/new/")
    page.select_option("select[name=dataset_id]", v1.dataset.public_id)
    page.wait_for_function("document.querySelectorAll('#dataset-version option').length === 2")
    page.wait_for_function(
        f"document.getElementById('est-basis').textContent.includes('{_tokens(v2)} train')"
    )

    page.select_option("#dataset-version", "1")
    page.wait_for_function(
        f"document.getElementById('est-basis').textContent.includes('{_tokens(v1)} train')"
    )

    page.select_option("#dataset-version", "2")
    page.select_option("select[name=dataset_id]", other.dataset.public_id)  # it has no version 2
    page.wait_for_function(
        f"document.getElementById('est-basis').textContent.includes('{_tokens(other)} train')"
    )
    assert "no version 2" not in page.content()
