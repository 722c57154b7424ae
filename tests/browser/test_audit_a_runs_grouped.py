"""The runs table groups runs by experiment on request (issue 19, "What to build" 3): each experiment's
runs together under a heading row, in the server's sort within the group, across pages."""

from __future__ import annotations

import re

import pytest

from experiments.models import Experiment, TrainingJob

pytestmark = pytest.mark.django_db


def test_runs_grouped_by_experiment(client, demo_config):
    owner = demo_config.owner
    a = demo_config.experiment
    b = Experiment.objects.create(owner=owner, name="lr sweep", tags=["sweep"])
    ids = {}
    for name, experiment in (("a1", a), ("b1", b), ("a2", a), ("b2", b)):  # interleaved in time
        job = TrainingJob.objects.create(owner=owner, config=demo_config, experiment=experiment, name=name)
        ids[job.public_id] = name
    client.force_login(owner)

    def order(query: str) -> list[str]:
        html = client.get("/experiments/" + query).content.decode()
        rows = re.findall(r'<tr class="group-row">.*?</th></tr>|<span class="run-name">([^<]+)</span>', html)
        return rows, html

    _, html = order("")
    assert 'class="group-row"' not in html
    names = re.findall(r'<span class="run-name">([^<]+)</span>', html)
    assert names == ["b2", "a2", "b1", "a1"]  # newest first, experiments interleaved

    _, html = order("?group=experiment")
    assert re.findall(r'<span class="run-name">([^<]+)</span>', html) == ["b2", "b1", "a2", "a1"]
    headings = re.findall(
        r'<tr class="group-row"><th scope="rowgroup" colspan="(\d+)"><a [^>]*>([^<]+)</a>', html
    )
    assert [h[1] for h in headings] == ["lr sweep", a.name]
    header_cells = len(re.findall(r'<th scope="col"', html))
    assert {int(h[0]) for h in headings} == {header_cells}

    # the sort applies within each group
    _, html = order("?group=experiment&sort=created")
    assert re.findall(r'<span class="run-name">([^<]+)</span>', html) == ["b1", "b2", "a1", "a2"]
