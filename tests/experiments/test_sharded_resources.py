"""A job whose plan shards it over several GPUs reaches workers with the per-GPU share of that plan,
so a worker with enough GPUs takes it instead of refusing it for the single-GPU estimate."""

from __future__ import annotations

import pytest

from experiments.jobs import job_spec_for_worker, job_start
from experiments.training.worker import refusal_reason

SHARDED_ESTIMATE = {
    "gpu_memory_mb": 146_335,  # the single-GPU estimate: more than any one GPU holds
    "plan": {
        "fits": False,
        "sharded": {"gpu": "H200-141GB", "gpu_count": 2, "sharding": "fsdp", "per_gpu_mib": 80_000},
    },
}
TWO_H200 = {"gpu_count": 2, "gpu_name": "NVIDIA H200", "gpu_memory_total_mb": 143_771}


@pytest.fixture
def sharded_job(demo_config, django_capture_on_commit_callbacks):
    def make(**hp):
        demo_config.estimate = SHARDED_ESTIMATE
        demo_config.hyperparameters = {**demo_config.hyperparameters, **hp}
        demo_config.save(update_fields=["estimate", "hyperparameters"])
        with django_capture_on_commit_callbacks(execute=False):
            return job_start(owner=demo_config.owner, config=demo_config)

    return make


@pytest.mark.django_db
def test_a_sharded_plan_sends_its_per_gpu_share_and_a_worker_with_the_gpus_takes_it(sharded_job):
    spec = job_spec_for_worker(job=sharded_job(gpus=2))
    assert spec["resources"] == {"gpu_memory_mb": 80_000, "gpus": 2, "sharding": "fsdp"}
    assert refusal_reason(spec, TWO_H200) is None


@pytest.mark.django_db
def test_too_few_gpus_or_sharding_off_keeps_the_single_gpu_estimate(sharded_job):
    spec = job_spec_for_worker(job=sharded_job(gpus=1))
    assert spec["resources"] == {"gpu_memory_mb": 146_335, "gpus": 1}
    assert "needs 146,335 MiB" in refusal_reason(spec, {**TWO_H200, "gpu_count": 1})
