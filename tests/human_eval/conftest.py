from __future__ import annotations

import pytest

from experiments.human_eval.services import human_eval_setup, items_create


@pytest.fixture
def evaluators(make_user):
    return [make_user(name, role="evaluator") for name in ("ann", "bob", "cat")]


@pytest.fixture
def make_task(researcher, evaluators, artifact_root, tiny_model_dir):
    """A ready task with given outputs (the generation step is tested on its own): rating or pairwise.
    Pairwise compares `t4dm-tiny` with the same folder named by path: two refs, two 'models'."""

    def make(*, mode="rating", n=6, overlap=2, criteria=None, outputs=None, people=None):
        task = human_eval_setup(
            owner=researcher,
            mode=mode,
            **(
                {"models": ["t4dm-tiny", str(tiny_model_dir)]}
                if mode == "pairwise"
                else {"model_path": "t4dm-tiny"}
            ),
            eval_questions=[f"Question {k}?" for k in range(n)],
            evaluators=[p.username for p in people or evaluators],
            overlap=overlap,
            criteria=criteria,
        )
        outputs = outputs or [[f"answer {m}-{k}" for k in range(n)] for m in range(len(task.model_refs))]
        items_create(task=task, outputs=outputs)
        task.refresh_from_db()
        return task

    return make
