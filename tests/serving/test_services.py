"""Serving's web side without a worker: which folder a `model` names for whom, and the workers' reply
endpoint (signed token, 410 once the request has gone)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core import signing

from experiments.model_refs import ModelUnavailable
from models_registry.serving import services
from t4dm_site.errors import InvalidInput


@pytest.fixture(autouse=True)
def _memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def served(demo_config, tiny_model_dir, django_capture_on_commit_callbacks):
    """A succeeded job of `researcher` (final model: the tiny model, a checkpoint at step 4), its
    version in production and an OpenAI fine-tuning job around it."""
    from experiments.models import Checkpoint
    from experiments.openai_compat.models import OpenAIFile, OpenAIFineTuneJob
    from experiments.openai_compat.services import fine_tuned_model_name
    from experiments.services import job_start
    from models_registry.models import ModelVersion
    from models_registry.services import model_version_create

    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=demo_config.owner, config=demo_config)
    job.mark_running(worker="test")
    Checkpoint.objects.create(job=job, step=4, path=str(tiny_model_dir))
    job.mark_succeeded(final_model_path=str(tiny_model_dir))
    version = ModelVersion.objects.filter(job=job).first() or model_version_create(
        job=job, model_id="demo-bot"
    )
    version.set_stage("production")
    upload = OpenAIFile.objects.create(owner=job.owner, filename="d.jsonl", purpose="fine-tune", content=b"{}",
                                       dataset_version=demo_config.dataset_version)  # fmt: skip
    ftjob = OpenAIFineTuneJob.objects.create(job=job, training_file=upload, model="t4dm-tiny", suffix="s",
                                             seed=1, hyperparameters={})  # fmt: skip
    return {"owner": job.owner, "version": version, "ft": fine_tuned_model_name(ftjob), "path": str(tiny_model_dir),
            "job": job}  # fmt: skip


def test_every_name_of_a_model_leads_to_its_folder(served):
    owner, version = served["owner"], served["version"]
    for name in (f"{version.model_id}@{version.version}", f"{version.model_id}@production", served["ft"],
                 f"{served['ft']}:ckpt-step-4", served["job"].public_id, "t4dm-tiny"):  # fmt: skip
        assert services.served_model_path(user=owner, model=name) == served["path"], name


def test_names_that_do_not_lead_to_a_model_of_the_caller_are_one_404(served, make_user):
    version, other = served["version"], make_user("mallory")
    for name in (f"{version.model_id}@{version.version}", f"{version.model_id}@production", served["ft"]):
        with pytest.raises(ModelUnavailable):
            services.served_model_path(user=other, model=name)
    wrong_suffix = served["ft"].replace(":s:", ":other:")
    for name in (wrong_suffix, f"{version.model_id}@staging", "nobody@1.0.0", "ft:x"):
        with pytest.raises(ModelUnavailable):
            services.served_model_path(user=served["owner"], model=name)
    with pytest.raises(InvalidInput):  # a checkpoint the job does not have
        services.served_model_path(user=served["owner"], model=f"{served['ft']}:ckpt-step-9")


def test_the_model_list_is_the_callers_own(served, make_user):
    mine = {m["id"] for m in services.served_models(user=served["owner"])}
    theirs = {m["id"] for m in services.served_models(user=make_user("mallory"))}
    version = served["version"]
    assert {f"{version.model_id}@{version.version}", served["ft"], "t4dm-tiny"} <= mine
    assert theirs == {"t4dm-tiny"}


def test_sampling_is_checked_and_defaulted(settings):
    spec = services.sampling_spec(services.Sampling(None, None, None, "###", None, None))
    assert spec == {"max_tokens": 256, "temperature": 1.0, "top_p": 1.0, "stop": ["###"], "seed": None}
    for bad, param in (({"temperature": 2.5}, "temperature"), ({"n": 2}, "n"), ({"max_tokens": 0}, "max_tokens"),
                       ({"stop": ["a", "b", "c", "d", "e"]}, "stop")):  # fmt: skip
        fields = {
            "max_tokens": None,
            "temperature": None,
            "top_p": None,
            "stop": None,
            "seed": None,
            "n": None,
        }
        with pytest.raises(InvalidInput) as caught:
            services.sampling_spec(services.Sampling(**{**fields, **bad}))
        assert caught.value.details["param"] == param


def test_the_reply_endpoint_passes_events_on_until_the_request_is_gone(client, db):
    layer = get_channel_layer()

    async def scenario():
        generation = services.Generation({})
        generation.channel = await layer.new_channel("serving.")
        reply = signing.dumps({"c": generation.channel}, salt=services.REPLY_SALT)
        delivered = await services.reply_deliver(reply=reply, events=[{"type": "delta", "text": "hi"}])
        received = await asyncio.wait_for(layer.receive(generation.channel), 5)
        forged = await services.reply_deliver(reply=reply + "x", events=[])
        await generation.close()
        gone = await services.reply_deliver(reply=reply, events=[{"type": "delta", "text": "late"}])
        return delivered, received, forged, gone

    delivered, received, forged, gone = async_to_sync(scenario)()
    assert delivered == 204 and received["events"] == [{"type": "delta", "text": "hi"}]
    assert forged == 403
    assert gone == 410  # the worker stops generating for it
    assert client.post("/v1/serving/events/", "not json", content_type="application/json").status_code == 400
