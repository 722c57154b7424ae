"""Pages: the evaluator's queue and rating page (/rate/), the researcher's results (/human-eval/).
The rating page is a shell; its script asks the evaluator API for one item at a time."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render

from experiments.human_eval import selectors, services
from experiments.human_eval.models import EvalMode
from experiments.selectors import model_choices
from experiments.views import dashboard
from t4dm_site.errors import DomainError, InvalidInput, NotFound
from t4dm_site.roles import can_train


@login_required
def rating_queue(request):
    tasks = selectors.evaluator_queue(user=request.user)
    return render(request, "human_eval/queue.html", {"tasks": tasks, "can_train": can_train(request.user)})


@login_required
def rate_task(request, task_id: str):
    try:
        task = selectors.evaluator_task(user=request.user, task_id=task_id)
    except NotFound as exc:
        raise Http404(str(exc)) from None
    return render(
        request,
        "human_eval/rate.html",
        {
            "task_id": task.public_id,
            "name": task.name,
            "mode": task.mode,
            "guides": (task.params or {}).get("criteria_guides", {}),
        },
    )


@dashboard
def task_list(request):
    tasks = [selectors.task_summary(t) for t in selectors.tasks_visible_to(request.user)[:100]]
    return render(request, "human_eval/list.html", {"tasks": tasks})


@dashboard
def task_results(request, task_id: str):
    try:
        task = selectors.task_get(user=request.user, task_id=task_id)
    except NotFound as exc:
        raise Http404(str(exc)) from None
    try:
        page = int(request.GET.get("page", "1"))
    except ValueError:
        page = 1
    return render(
        request,
        "human_eval/results.html",
        {
            "task": task,
            "results": selectors.task_results(task=task),
            "items": selectors.task_items(task=task, page=page),
        },
    )


def _int(value: str, field: str) -> int | None:
    if not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{field}: a whole number") from None


def _setup_fields(request) -> dict:
    """The set-up form → human_eval_setup's arguments (the service checks them)."""
    post = request.POST
    mode = post.get("mode", EvalMode.RATING)
    models = [post.get("model_a", "").strip()]
    if mode == EvalMode.PAIRWISE:
        models.append(post.get("model_b", "").strip())
    names = [n.strip() for n in post.getlist("criterion_name")]
    rows = zip(names, post.getlist("criterion_description"), post.getlist("criterion_low"),
               post.getlist("criterion_high"), strict=False)  # fmt: skip
    criteria = [name for name in names if name]
    guides = {name: {"description": d, "low": lo, "high": hi} for name, d, lo, hi in rows if name}
    source = post.get("source", "typed")
    fields = {
        "name": post.get("name", ""),
        "mode": mode,
        "models": models,
        "evaluators": post.getlist("evaluators"),
        "overlap": _int(post.get("overlap", "1"), "overlap") or 1,
        "max_questions": _int(post.get("max_questions", ""), "max_questions"),
        "max_new_tokens": _int(post.get("max_new_tokens", ""), "max_new_tokens") or 96,
        "criteria": criteria or None,
        "criteria_guides": guides,
    }
    if source == "dataset":
        fields["test_dataset"] = post.get("test_dataset", "")
    elif source == "file":
        upload = request.FILES.get("questions_file")
        if upload is None:
            raise InvalidInput("questions file: choose a file (JSONL or one question per line)")
        fields["eval_questions"] = services.parse_questions_upload(upload.read())
    else:
        fields["eval_questions"] = [q for q in post.get("questions", "").splitlines() if q.strip()]
    return fields


@dashboard
def task_new(request):
    """Set up a human evaluation in the browser (the same service as POST /api/v1/human-eval/tasks)."""
    from datasets_app.selectors import datasets_visible_to

    error = ""
    if request.method == "POST":
        try:
            task = services.human_eval_setup(owner=request.user, **_setup_fields(request))
        except DomainError as exc:
            error = exc.message
        else:
            messages.success(request, f"{task.public_id} set up: the worker is generating the answers.")
            return redirect("human-eval-results", task_id=task.public_id)
    post = request.POST
    criteria = [
        {"name": n, "description": d, "low": lo, "high": hi}
        for n, d, lo, hi in zip(post.getlist("criterion_name"), post.getlist("criterion_description"),
                                post.getlist("criterion_low"), post.getlist("criterion_high"), strict=False)
    ] or [{"name": n, "description": "", "low": "", "high": ""} for n in services.DEFAULT_CRITERIA]  # fmt: skip
    criteria += [{"name": "", "description": "", "low": "", "high": ""}]  # one empty row to add a criterion
    return render(
        request,
        "human_eval/new.html",
        {
            "error": error,
            "form": post,
            "criteria": criteria,
            "chosen_evaluators": set(post.getlist("evaluators")),
            "evaluators": services.assignable_evaluators(owner=request.user).order_by("username"),
            "datasets": datasets_visible_to(request.user).order_by("-created_at")[:200],
            "models": model_choices(request.user),
            "modes": EvalMode.choices,
        },
        status=400 if error else 200,
    )
