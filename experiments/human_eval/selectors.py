"""Reads for human evaluation. Evaluator-facing payloads never include model identities (task
model_refs, item model_a/model_b), other evaluators' ratings, or items not assigned to the caller."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from typing import Any

from django.db.models import Count, Prefetch, Q

from experiments.human_eval import stats
from experiments.human_eval.models import (
    AssignmentStatus,
    EvalMode,
    HumanEvalAssignment,
    HumanEvalRating,
    HumanEvalTask,
    TaskStatus,
)
from experiments.human_eval.rendering import render_markdown
from experiments.human_eval.services import SCORE_RANGE
from t4dm_site.access import get_visible, visible
from t4dm_site.errors import NotFound
from t4dm_site.public_ids import parse_public_id


def tasks_visible_to(user):
    return visible(HumanEvalTask.objects.all(), user)


def task_get(*, user, task_id: str) -> HumanEvalTask:
    return get_visible(HumanEvalTask.objects.all(), user, task_id, "human evaluation", prefix="he")


def _progress(user, task_pk: int) -> dict[str, int]:
    counts = HumanEvalAssignment.objects.filter(task_id=task_pk, evaluator=user).aggregate(
        total=Count("pk"), done=Count("pk", filter=Q(status=AssignmentStatus.DONE))
    )
    return {"done": counts["done"], "total": counts["total"]}


def evaluator_queue(*, user) -> list[dict[str, Any]]:
    """The caller's tasks (ready ones), with their own progress only."""
    rows = (
        HumanEvalAssignment.objects.filter(evaluator=user, task__status=TaskStatus.READY)
        .values("task_id", "task__name", "task__mode", "task__created_at")
        .annotate(total=Count("pk"), done=Count("pk", filter=Q(status=AssignmentStatus.DONE)))
        .order_by("-task__created_at")
    )
    return [
        {
            "task_id": HumanEvalTask(pk=r["task_id"]).public_id,
            "name": r["task__name"],
            "mode": r["task__mode"],
            "done": r["done"],
            "total": r["total"],
        }
        for r in rows
    ]


def evaluator_task(*, user, task_id: str) -> HumanEvalTask:
    """A task the caller has items in (404 otherwise, whether or not it exists)."""
    pk = parse_public_id("he", task_id)
    task = HumanEvalTask.objects.filter(pk=pk, status=TaskStatus.READY, assignments__evaluator=user).first()
    if task is None:
        raise NotFound(f"human evaluation {task_id} has no items for you")
    return task


def _turns(item) -> list[dict[str, str]]:
    """A multi-turn question's turns with their roles (system, user, assistant), each rendered."""
    return [
        {"role": str(m.get("role", "")), "html": render_markdown(str(m.get("content", "")))}
        for m in item.messages or []
    ]


def assignment_payload(assignment: HumanEvalAssignment) -> dict[str, Any]:
    task, item = assignment.task, assignment.item
    labels = ["A", "B"] if task.mode == EvalMode.PAIRWISE else ["Output"]
    texts = [item.output_a, item.output_b][: len(labels)]
    return {
        "assignment_id": assignment.pk,
        "prompt": item.prompt,
        "prompt_html": render_markdown(item.prompt),
        "turns": _turns(item),
        "reference_html": render_markdown(item.reference) if item.reference.strip() else "",
        "outputs": [
            {"label": label, "text": text, "html": render_markdown(text)}
            for label, text in zip(labels, texts, strict=True)
        ],
        "draft": assignment.draft or {},
        "skips": assignment.skips,
    }


def _done(user, task_pk: int):
    return HumanEvalAssignment.objects.filter(task_id=task_pk, evaluator=user, status=AssignmentStatus.DONE)


def _previous_id(user, task_pk: int, before: HumanEvalAssignment | None = None) -> str | None:
    """The item the caller rated just before `before` (or last, from the queue): the order they rated in."""
    done = _done(user, task_pk)
    if before is not None:
        done = done.filter(
            Q(completed_at__lt=before.completed_at) | Q(completed_at=before.completed_at, pk__lt=before.pk)
        )
    return done.order_by("-completed_at", "-pk").values_list("pk", flat=True).first()


def _next_id(user, task_pk: int, after: HumanEvalAssignment) -> str | None:
    done = _done(user, task_pk).filter(
        Q(completed_at__gt=after.completed_at) | Q(completed_at=after.completed_at, pk__gt=after.pk)
    )
    return done.order_by("completed_at", "pk").values_list("pk", flat=True).first()


def _task_head(user, task: HumanEvalTask) -> dict[str, Any]:
    return {
        "task_id": task.public_id,
        "name": task.name,
        "mode": task.mode,
        "criteria": task.criteria,
        "progress": _progress(user, task.pk),
    }


def evaluator_next(*, user, task_id: str) -> dict[str, Any]:
    """The caller's next item (lowest queue position still to do), or item None when all are done;
    `previous` is the item they rated last (to go back and change it)."""
    task = evaluator_task(user=user, task_id=task_id)
    assignment = (
        HumanEvalAssignment.objects.select_related("task", "item")
        .filter(task=task, evaluator=user, status=AssignmentStatus.PENDING)
        .order_by("position", "pk")
        .first()
    )
    return {
        **_task_head(user, task),
        "item": assignment_payload(assignment) if assignment else None,
        "rating": None,
        "previous": _previous_id(user, task.pk),
        "next": None,
    }


def evaluator_assignment(*, user, assignment_id: str) -> dict[str, Any]:
    """One of the caller's items again (going back): its payload with their own rating if they rated
    it, `previous` (rated before it) and `next` (rated after it; None: back to the queue)."""
    from experiments.human_eval.services import _own_assignment

    assignment = _own_assignment(user=user, assignment_id=assignment_id)
    task = assignment.task
    if task.status != TaskStatus.READY:
        raise NotFound("this assignment is not in your queue")
    done = assignment.status == AssignmentStatus.DONE
    rating = HumanEvalRating.objects.filter(assignment=assignment).first() if done else None
    return {
        **_task_head(user, task),
        "item": assignment_payload(assignment),
        "rating": {"scores": rating.scores, "comment": rating.comment} if rating else None,
        "previous": _previous_id(user, task.pk, before=assignment) if done else _previous_id(user, task.pk),
        "next": _next_id(user, task.pk, after=assignment) if done else None,
    }


# --- results for researchers -----------------------------------------------------------------------


def _model_names(task: HumanEvalTask) -> list[str]:
    return [m["ref"] for m in task.model_refs]


def task_summary(task: HumanEvalTask) -> dict[str, Any]:
    return {
        "task_id": task.public_id,
        "name": task.name,
        "mode": task.mode,
        "status": task.status,
        "progress": task.progress,
        "error": task.error,
        "models": _model_names(task),
        "criteria": task.criteria,
        "source": task.source,
        "overlap": task.overlap,
        "items": task.items.count(),
        "evaluators": sorted(task.evaluators.values_list("username", flat=True)),
        "created_at": task.created_at.isoformat(),
    }


def _evaluator_progress(task: HumanEvalTask) -> list[dict[str, Any]]:
    rows = (
        task.assignments.values("evaluator__username")
        .annotate(total=Count("pk"), done=Count("pk", filter=Q(status=AssignmentStatus.DONE)))
        .order_by("evaluator__username")
    )
    return [
        {"evaluator": r["evaluator__username"], "done": r["done"], "total": r["total"],
         "fraction": r["done"] / r["total"] if r["total"] else 0.0}
        for r in rows
    ]  # fmt: skip


def task_results(*, task: HumanEvalTask) -> dict[str, Any]:
    ratings = list(HumanEvalRating.objects.filter(task=task).select_related("item"))
    names = _model_names(task)
    result: dict[str, Any] = {
        **task_summary(task),
        "ratings": len(ratings),
        "evaluator_progress": _evaluator_progress(task),
    }
    if task.mode == EvalMode.RATING:
        result.update(_rating_results(task, ratings, names))
    else:
        result.update(_pairwise_results(task, ratings, names))
    return result


def _rating_results(task, ratings, names) -> dict[str, Any]:
    per_criterion: dict[str, Any] = {}
    agreement: dict[str, Any] = {}
    for criterion in task.criteria:
        values = [r.scores[criterion] for r in ratings if criterion in r.scores]
        per_criterion[criterion] = {names[0]: stats.mean_ci(values, bounds=SCORE_RANGE)}
        units: dict[int, dict[int, float]] = defaultdict(dict)
        for r in ratings:
            if criterion in r.scores:
                units[r.item_id][r.evaluator_id] = r.scores[criterion]
        alpha = stats.krippendorff_alpha(list(units.values()))
        agreement[criterion] = {
            "krippendorff_alpha": alpha,
            "interpretation": stats.interpret_alpha(alpha),
            **stats.agreement_basis(list(units.values())),
        }
    return {"means": per_criterion, "agreement": agreement, "conventions": {"alpha": stats.ALPHA_CONVENTION}}


def _pairwise_results(task, ratings, names) -> dict[str, Any]:
    pairwise: dict[str, Any] = {}
    agreement: dict[str, Any] = {}
    leaderboard: dict[str, Any] = {}
    bias: dict[str, Any] = {}
    all_choices: list[str] = []
    for criterion in task.criteria:
        wins = [0, 0]
        ties = 0
        comparisons = []
        units: dict[int, dict[int, str]] = defaultdict(dict)
        choices = []
        for r in ratings:
            choice = r.scores.get(criterion)
            if choice is None:
                continue
            choices.append(choice)
            units[r.item_id][r.evaluator_id] = choice
            if choice == "tie":
                ties += 1
                comparisons.append((r.item.model_a, r.item.model_b, 0.5))
            else:
                winner = r.item.model_a if choice == "a" else r.item.model_b
                wins[winner] += 1
                comparisons.append((winner, 1 - winner, 1.0))
        total = len(choices)
        pairwise[criterion] = {
            "comparisons": total,
            "win_rate": {
                names[0]: wins[0] / total if total else None,
                names[1]: wins[1] / total if total else None,
            },
            "tie_rate": ties / total if total else None,
            "wins": {names[0]: wins[0], names[1]: wins[1]},
            "ties": ties,
            "win_rate_ci": {names[m]: _proportion_ci(wins[m], total) for m in (0, 1)},
        }
        bt = stats.bradley_terry(2, comparisons)
        board = [{"model": names[m], "score": bt["scores"][m], "ci_low": bt["ci_low"][m],
                  "ci_high": bt["ci_high"][m]} for m in (0, 1)]  # fmt: skip
        leaderboard[criterion] = sorted(board, key=lambda row: -row["score"])
        agreement[criterion] = stats.pairwise_agreement(list(units.values()), ["a", "b", "tie"])
        agreement[criterion].update(
            interpretation=stats.interpret_kappa(agreement[criterion]["fleiss_kappa"]),
            cohen_interpretation=stats.interpret_kappa(agreement[criterion]["cohen_kappa_mean"]),
            **stats.agreement_basis(list(units.values())),
        )
        bias[criterion] = stats.position_bias(choices)
        all_choices.extend(choices)
    return {
        "pairwise": pairwise,
        "leaderboard": leaderboard,
        "agreement": agreement,
        "position_bias": {"overall": stats.position_bias(all_choices), **bias},
        "conventions": {"kappa": stats.KAPPA_CONVENTION},
    }


ITEMS_PER_PAGE = 20
CHOICE_WORDS = {"a": "A better", "b": "B better", "tie": "tie"}


def task_items(*, task: HumanEvalTask, page: int = 1) -> dict[str, Any]:
    """The per-item view of the results page (researchers only: it names the models): each question
    with its turns and reference answer, each model's output, and each evaluator's scores per criterion
    and comment; in pairwise mode which side each evaluator chose and which model that side was."""
    names = _model_names(task)
    total = task.items.count()
    pages = max(1, -(-total // ITEMS_PER_PAGE))
    page = min(max(1, page), pages)
    items = (
        task.items.order_by("index").prefetch_related(
            Prefetch("ratings", HumanEvalRating.objects.select_related("evaluator").order_by("pk"))
        )
    )[(page - 1) * ITEMS_PER_PAGE : page * ITEMS_PER_PAGE]
    rows = []
    for item in items:
        if task.mode == EvalMode.PAIRWISE:
            sides = {"a": names[item.model_a], "b": names[item.model_b] if item.model_b is not None else ""}
            outputs = [
                {"label": "A", "model": sides["a"], "html": render_markdown(item.output_a)},
                {"label": "B", "model": sides["b"], "html": render_markdown(item.output_b)},
            ]
        else:
            sides = {}
            outputs = [
                {"label": "Output", "model": names[item.model_a], "html": render_markdown(item.output_a)}
            ]
        ratings = []
        for r in item.ratings.all():
            scores = []
            for criterion in task.criteria:
                value = r.scores.get(criterion)
                if task.mode == EvalMode.PAIRWISE and value is not None:
                    shown = CHOICE_WORDS.get(value, str(value))
                    winner = sides.get(value, "")
                    scores.append({"criterion": criterion, "value": value, "shown": shown, "winner": winner})
                else:
                    shown = "–" if value is None else str(value)
                    scores.append({"criterion": criterion, "value": value, "shown": shown, "winner": ""})
            ratings.append({"evaluator": r.evaluator.username, "scores": scores, "comment": r.comment,
                            "changed": r.updated_at is not None})  # fmt: skip
        rows.append({
            "number": item.index + 1,
            "prompt_html": render_markdown(item.prompt),
            "turns": _turns(item),
            "reference_html": render_markdown(item.reference) if item.reference.strip() else "",
            "outputs": outputs,
            "ratings": ratings,
        })  # fmt: skip
    return {"rows": rows, "page": page, "pages": pages, "total": total,
            "previous": page - 1 if page > 1 else None, "next": page + 1 if page < pages else None}  # fmt: skip


def _proportion_ci(successes: int, total: int) -> dict[str, float | None]:
    """Wilson score interval (statsmodels)."""
    if not total:
        return {"ci_low": None, "ci_high": None}
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, total, alpha=0.05, method="wilson")
    return {"ci_low": float(low), "ci_high": float(high)}


# --- exports ---------------------------------------------------------------------------------------

EXPORT_FIELDS = ["task_id", "item", "evaluator", "prompt", "output_a", "output_b", "model_a", "model_b",
                 "criterion", "value", "comment", "created_at"]  # fmt: skip


def export_rows(*, task: HumanEvalTask) -> list[dict[str, Any]]:
    """One row per rating and criterion, with model identities (researchers only)."""
    names = _model_names(task)
    rows = []
    ratings = (
        HumanEvalRating.objects.filter(task=task)
        .select_related("item", "evaluator")
        .order_by("item__index", "pk")
    )
    for r in ratings:
        for criterion in task.criteria:
            rows.append({
                "task_id": task.public_id, "item": r.item.index + 1, "evaluator": r.evaluator.username,
                "prompt": r.item.prompt, "output_a": r.item.output_a, "output_b": r.item.output_b,
                "model_a": names[r.item.model_a],
                "model_b": names[r.item.model_b] if r.item.model_b is not None else "",
                "criterion": criterion, "value": r.scores.get(criterion), "comment": r.comment,
                "created_at": r.created_at.isoformat(),
            })  # fmt: skip
    return rows


def export_text(*, task: HumanEvalTask, format: str) -> str:
    rows = export_rows(task=task)
    if format == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
