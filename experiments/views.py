"""Server-rendered pages. Thin: authorize, select, render."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from datasets_app.selectors import datasets_visible_to
from experiments.demo import demo_job_start
from experiments.models import JobStatus
from experiments.selectors import configs_visible_to, job_get, job_to_dict, jobs_visible_to
from t4dm_site.errors import NotFound
from t4dm_site.roles import can_train


@login_required
def overview(request):
    if not can_train(request.user):
        return render(request, "overview.html", {"can_train": False})
    jobs = list(jobs_visible_to(request.user)[:50])
    return render(
        request,
        "overview.html",
        {
            "can_train": True,
            "jobs": jobs,
            "active": [j for j in jobs if j.status in (JobStatus.QUEUED, JobStatus.RUNNING)],
            "configs": list(configs_visible_to(request.user)[:20]),
            "datasets": list(datasets_visible_to(request.user)[:20]),
        },
    )


@login_required
def job_detail(request, job_id: str):
    if not can_train(request.user):
        raise Http404("no such job")
    try:
        job = job_get(user=request.user, job_id=job_id)
    except NotFound as exc:
        raise Http404(str(exc)) from None
    return render(
        request,
        "job_detail.html",
        {
            "job": job,
            "job_json": job_to_dict(job),
            "config": job.config,
            "events": list(job.events.order_by("-id")[:50])[::-1],
        },
    )


@login_required
@require_POST
def demo_start(request):
    if not can_train(request.user):
        raise Http404("not available")
    job = demo_job_start(owner=request.user)
    return redirect("job-detail", job_id=job.public_id)
