"""/api/v1/human-eval: researchers set up tasks, read results and export; evaluators read their own
queue and submit. Evaluator endpoints answer only about the caller's own assignments."""

from __future__ import annotations

from typing import Literal

from django.http import HttpResponse
from ninja import Field, File, Form, Router, Schema
from ninja.files import UploadedFile
from pydantic import ValidationError

from experiments.human_eval import selectors, services
from t4dm_site.auth import any_user_auth, trainer_auth
from t4dm_site.errors import InvalidInput

router = Router(tags=["human evaluation"])


class SetupIn(Schema):
    evaluators: list[str]
    model_path: str | None = None
    models: list[str] | None = None
    mode: Literal["rating", "pairwise"] = "rating"
    eval_questions: list[str] | None = None
    test_dataset: str | None = None
    max_questions: int | None = None
    criteria: list[str] | None = None
    overlap: int = 1
    name: str = ""
    max_new_tokens: int = 96
    criteria_guides: dict[str, dict[str, str]] | None = Field(
        None, description="per criterion: {description, low, high} (what it means; its scale's anchors)"
    )
    seed: int | None = Field(
        None,
        description="Accepted for old clients and ignored: which model is shown as A, and each evaluator's "
        "queue order, come from secret randomness on the server (a seed would let evaluators replay them).",
    )

    def setup_fields(self) -> dict:
        return self.dict(exclude={"seed"})


class RatingIn(Schema):
    scores: dict
    comment: str = ""


class PreferenceIn(Schema):
    criterion: str | None = None
    name: str = ""


@router.post("/tasks", auth=trainer_auth, response={201: dict})
def setup_human_eval(request, payload: SetupIn):
    task = services.human_eval_setup(owner=request.user, **payload.setup_fields())
    return 201, selectors.task_summary(task)


@router.post("/tasks/upload", auth=trainer_auth, response={201: dict})
def setup_human_eval_from_file(request, file: UploadedFile = File(...), setup: str = Form(...)):
    """set-up with the questions in an uploaded file (JSONL or one question per line); `setup` is the
    JSON of the other set-up fields."""
    try:
        fields = SetupIn.model_validate_json(setup)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"setup.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    questions = services.parse_questions_upload(file.read())
    task = services.human_eval_setup(
        owner=request.user, **{**fields.setup_fields(), "eval_questions": questions}
    )
    return 201, selectors.task_summary(task)


@router.get("/tasks", auth=trainer_auth)
def list_tasks(request):
    return {"tasks": [selectors.task_summary(t) for t in selectors.tasks_visible_to(request.user)[:100]]}


@router.get("/tasks/{task_id}", auth=trainer_auth)
def get_task(request, task_id: str):
    return selectors.task_summary(selectors.task_get(user=request.user, task_id=task_id))


@router.get("/tasks/{task_id}/results", auth=trainer_auth)
def get_results(request, task_id: str):
    return selectors.task_results(task=selectors.task_get(user=request.user, task_id=task_id))


@router.get("/tasks/{task_id}/export", auth=trainer_auth)
def export(request, task_id: str, format: Literal["csv", "jsonl"] = "csv"):
    task = selectors.task_get(user=request.user, task_id=task_id)
    content_type = "text/csv" if format == "csv" else "application/x-ndjson"
    response = HttpResponse(selectors.export_text(task=task, format=format), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{task.public_id}-ratings.{format}"'
    return response


@router.post("/tasks/{task_id}/preference-dataset", auth=trainer_auth, response={201: dict})
def export_preferences(request, task_id: str, payload: PreferenceIn):
    task = selectors.task_get(user=request.user, task_id=task_id)
    version = services.preference_dataset_export(
        owner=request.user, task=task, criterion=payload.criterion, name=payload.name
    )
    return 201, {
        "dataset_id": version.dataset.public_id,
        "version": version.number,
        "rows": sum(s.get("rows", 0) for s in (version.splits or {}).values()),
        "task_type": version.task_type,
    }


# --- evaluators (any logged-in user; only their own assignments) ------------------------------------


@router.get("/queue", auth=any_user_auth)
def my_queue(request):
    return {"tasks": selectors.evaluator_queue(user=request.user)}


@router.get("/queue/{task_id}/next", auth=any_user_auth)
def my_next_item(request, task_id: str):
    return selectors.evaluator_next(user=request.user, task_id=task_id)


@router.get("/assignments/{assignment_id}", auth=any_user_auth)
def my_assignment(request, assignment_id: str):
    """One of your items again (going back): with your rating if you rated it, and the ids of the items
    you rated just before (`previous`) and after it (`next`; null: back to your queue)."""
    return selectors.evaluator_assignment(user=request.user, assignment_id=assignment_id)


@router.put("/assignments/{assignment_id}/rating", auth=any_user_auth)
def change_rating(request, assignment_id: str, payload: RatingIn):
    """Change your rating of an item you rated (the one rating is updated, never duplicated)."""
    rating = services.rating_update(
        user=request.user, assignment_id=assignment_id, scores=payload.scores, comment=payload.comment
    )
    return {"assignment_id": rating.assignment_id, "scores": rating.scores, "comment": rating.comment}


@router.post("/assignments/{assignment_id}/rating", auth=any_user_auth, response={201: dict})
def submit_rating(request, assignment_id: str, payload: RatingIn):
    rating = services.rating_submit(
        user=request.user, assignment_id=assignment_id, scores=payload.scores, comment=payload.comment
    )
    return 201, {"assignment_id": rating.assignment_id, "scores": rating.scores, "comment": rating.comment}


@router.post("/assignments/{assignment_id}/draft", auth=any_user_auth)
def save_draft(request, assignment_id: str, payload: RatingIn):
    assignment = services.draft_save(
        user=request.user, assignment_id=assignment_id, scores=payload.scores, comment=payload.comment
    )
    return {"assignment_id": assignment.pk, "draft": assignment.draft}


@router.post("/assignments/{assignment_id}/skip", auth=any_user_auth)
def skip(request, assignment_id: str):
    assignment = services.assignment_skip(user=request.user, assignment_id=assignment_id)
    return {"assignment_id": assignment.pk, "skipped": True}
