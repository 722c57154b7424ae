"""Modules use each other's public names only: no `from x import _private` across modules, and no view
module imports another view module (shared read helpers live in selectors)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text())
    return [
        (node.module or "", alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]


def test_openai_compat_queues_a_job_through_the_public_jobs_function():
    from experiments import jobs

    private = [
        (str(path.relative_to(ROOT)), module, name)
        for path in sorted((ROOT / "experiments" / "openai_compat").rglob("*.py"))
        for module, name in _imports(path)
        if module.startswith("experiments.jobs") and name.startswith("_")
    ]
    assert private == []
    assert callable(jobs.job_enqueue_on_commit)
    assert not hasattr(jobs, "_enqueue_on_commit")  # one name, not an alias kept beside it


def test_the_workflow_page_reads_the_loadable_bases_from_selectors_not_another_view():
    from experiments import selectors

    assert ("experiments.views", "loadable_bases") not in _imports(ROOT / "experiments/workflows/views.py")
    assert ("experiments.selectors", "loadable_bases") in _imports(ROOT / "experiments/workflows/views.py")
    assert callable(selectors.loadable_bases)
    assert "def loadable_bases" not in (ROOT / "experiments/views.py").read_text()  # one home
