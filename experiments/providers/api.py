"""finetune_openai / finetune_anthropic (/api/v1/finetune/...). Thin: parse → provider service → dict."""

from __future__ import annotations

from ninja import Router, Schema

from experiments.openai_compat.models import ProviderJob
from experiments.openai_compat.tasks import follow_on_commit
from experiments.providers import anthropic_provider, openai_provider
from experiments.selectors import job_get
from t4dm_site.auth import trainer_auth
from t4dm_site.errors import NotFound

router = Router(tags=["API fine-tuning"], auth=trainer_auth)


class OpenAIIn(Schema):
    dataset_path: str
    base_model: str = "gpt-4o-mini-2024-07-18"
    suffix: str = "t4dm-custom"


class AnthropicIn(Schema):
    dataset_path: str
    base_model: str
    config: dict = {}


def openai_job_out(provider_job: ProviderJob) -> dict:
    """The seed's OpenAIJob: the remote job and where it lives on the dashboard."""
    job = provider_job.job
    return {
        "job_id": job.public_id,
        "provider": provider_job.provider,
        "openai_job_id": provider_job.remote_job_id,
        "training_file": provider_job.remote_file_id,
        "status": job.status,
        "openai_status": provider_job.remote_status,
        "base_model": job.config.model_base,
        "suffix": job.config.hyperparameters.get("suffix"),
        "fine_tuned_model": provider_job.fine_tuned_model or None,
        "metrics": job.latest_metrics,
    }


def _provider_job(request, job_id: str) -> ProviderJob:
    job = job_get(user=request.auth, job_id=job_id)
    found = ProviderJob.objects.filter(job=job).select_related("job__config").first()
    if found is None:
        raise NotFound(f"{job_id} is not an API fine-tuning job")
    return found


@router.post("/openai", response={201: dict})
def finetune_openai(request, payload: OpenAIIn):
    provider_job = openai_provider.finetune_openai(owner=request.auth, **payload.dict())
    follow_on_commit(provider_job)
    return 201, openai_job_out(provider_job)


@router.get("/openai/{job_id}", response=dict)
def finetune_openai_status(request, job_id: str):
    return openai_job_out(_provider_job(request, job_id))


@router.post("/openai/{job_id}/cancel", response=dict)
def finetune_openai_cancel(request, job_id: str):
    return openai_job_out(openai_provider.provider_job_cancel(provider_job=_provider_job(request, job_id)))


@router.post("/anthropic", response={201: dict})
def finetune_anthropic(request, payload: AnthropicIn):
    return 201, anthropic_provider.finetune_anthropic(owner=request.auth, **payload.dict())
