"""Pages: the evaluator's queue and rating page (/rate/), the researcher's results (/human-eval/).
The rating page is a shell; its script asks the evaluator API for one item at a time."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from experiments.human_eval import selectors
from experiments.views import dashboard
from t4dm_site.errors import NotFound
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
        request, "human_eval/rate.html", {"task_id": task.public_id, "name": task.name, "mode": task.mode}
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
    return render(
        request, "human_eval/results.html", {"task": task, "results": selectors.task_results(task=task)}
    )
