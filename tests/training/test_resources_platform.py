"""POST /api/v1/estimate quotes time for the device a registered worker would run the job on."""

from __future__ import annotations

from django.utils import timezone

from experiments.models import Worker


def test_only_cpu_workers_registered_says_so_instead_of_a_gpu_time(api, researcher, artifact_root):
    Worker.objects.create(name="cpu0@box", gpu_count=0, last_heartbeat_at=timezone.now())

    estimate = api.post(researcher, "/estimate", {"model_base": "t4dm-tiny"}).json()

    assert estimate["training_device"] == "cpu"
    assert "only CPU workers" in estimate["training_time"]
    assert "T4" not in estimate["training_time"] and estimate["estimated_cost"] == "unknown"


def test_a_registered_gpu_worker_times_the_job_on_its_gpu(api, researcher, artifact_root):
    Worker.objects.create(
        name="gpu0@box",
        gpu_count=1,
        gpu_name="NVIDIA H200",
        gpu_memory_total_mb=143771,
        last_heartbeat_at=timezone.now(),
    )

    estimate = api.post(researcher, "/estimate", {"model_base": "llama-3-8b", "approach": "full"}).json()

    assert estimate["training_device"] == "H200-141GB"
    assert estimate["recommended_gpu"] == "H200-141GB"
    assert estimate["plan"]["fits"] and estimate["plan"]["recipe"].startswith("bf16_kahan")
    assert estimate["gpu_memory_gib"] <= estimate["plan"]["usable_gib"]


def test_no_gpu_holds_the_job_and_the_answer_says_what_to_change(api, researcher, artifact_root):
    estimate = api.post(
        researcher,
        "/estimate",
        {"model_base": "llama-3-70b", "approach": "full"},
    ).json()

    assert estimate["recommended_gpu"] == "none"
    assert estimate["plan"]["fits"] is False
    assert any("QLoRA" in change for change in estimate["plan"]["changes"])
