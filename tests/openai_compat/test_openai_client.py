"""The real `openai` package on the calls OpenAI documents, in-process (an httpx transport onto Django's
test client): the jobs list's metadata filter and page size, the range of `seed`, what is refused
rather than dropped (integrations, non-finite hyperparameters), a job trains on its file's own rows, and
cancelling a finished job."""

from __future__ import annotations

import httpx
import openai
import pytest

from datasets_app.services import dataset_clean
from datasets_app.storage import datasets_root
from experiments.openai_compat.models import OpenAIFile, OpenAIFineTuneJob
from tests.conftest import DEMO_ROWS
from tests.openai_compat.test_files_worker import DjangoTransport


def _sdk(client, user) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1",
        api_key=user.raw_token,
        max_retries=0,
        http_client=httpx.Client(transport=DjangoTransport(client)),
    )


@pytest.fixture
def sdk(client, researcher, artifact_root):
    return _sdk(client, researcher)


@pytest.fixture
def training_file(sdk):
    return sdk.files.create(file=("kb.jsonl", DEMO_ROWS.read_bytes()), purpose="fine-tune")


def test_files_delete_removes_the_file_as_openai_does(sdk, client, make_user, training_file):
    other = _sdk(client, make_user("otto"))
    with pytest.raises(openai.NotFoundError):
        other.files.delete(training_file.id)  # another user's file: 404, and it stays
    assert sdk.files.retrieve(training_file.id).id == training_file.id

    deleted = sdk.files.delete(training_file.id)

    assert isinstance(deleted, openai.types.FileDeleted)
    assert (deleted.id, deleted.object, deleted.deleted) == (training_file.id, "file", True)
    for call in (sdk.files.retrieve, sdk.files.content, sdk.files.delete):
        with pytest.raises(openai.NotFoundError) as missing:
            call(training_file.id)
        assert training_file.id in missing.value.message
    assert training_file.id not in [f.id for f in sdk.files.list()]
    assert not (datasets_root() / ".openai_files" / training_file.id).exists()  # the bytes are gone
    with pytest.raises(openai.NotFoundError):
        sdk.fine_tuning.jobs.create(model="t4dm-tiny", training_file=training_file.id)


def test_a_file_a_job_trained_on_can_be_deleted_and_the_job_still_names_it(sdk, training_file):
    job = sdk.fine_tuning.jobs.create(model="t4dm-tiny", training_file=training_file.id)

    assert sdk.files.delete(training_file.id).deleted is True

    assert sdk.fine_tuning.jobs.retrieve(job.id).training_file == training_file.id
    assert [j.id for j in sdk.fine_tuning.jobs.list()] == [job.id]


def test_jobs_list_filters_by_metadata(sdk, training_file):
    def create(metadata):
        return sdk.fine_tuning.jobs.create(
            model="t4dm-tiny", training_file=training_file.id, metadata=metadata
        ).id

    docs_a = create({"team": "docs", "run": "a"})
    docs_b = create({"team": "docs", "run": "b"})
    create({"team": "search"})
    plain = create(None)

    assert [j.id for j in sdk.fine_tuning.jobs.list(metadata={"team": "docs"})] == [docs_b, docs_a]
    assert [j.id for j in sdk.fine_tuning.jobs.list(metadata={"team": "docs", "run": "a"})] == [docs_a]
    assert sdk.fine_tuning.jobs.list(metadata={"team": "nobody"}).data == []
    assert [j.id for j in sdk.fine_tuning.jobs.list(extra_query={"metadata": "null"})] == [plain]
    assert len(sdk.fine_tuning.jobs.list().data) == 4


def test_a_page_larger_than_100_is_served_in_pages_not_refused(sdk, training_file):
    ids = [
        sdk.fine_tuning.jobs.create(model="t4dm-tiny", training_file=training_file.id).id for _ in range(3)
    ]

    page = sdk.fine_tuning.jobs.list(limit=1000)
    assert [j.id for j in page.data] == ids[::-1] and page.has_more is False
    events = sdk.fine_tuning.jobs.list_events(ids[0], limit=500)
    assert events.data and events.has_more is False


@pytest.mark.parametrize("seed", [-1, 2**31, 2**64])
def test_a_seed_outside_openais_range_is_a_400_naming_it(sdk, training_file, seed):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.fine_tuning.jobs.create(model="t4dm-tiny", training_file=training_file.id, seed=seed)
    assert refused.value.param == "seed"
    assert OpenAIFineTuneJob.objects.count() == 0


def test_the_largest_seed_is_accepted(sdk, training_file):
    job = sdk.fine_tuning.jobs.create(model="t4dm-tiny", training_file=training_file.id, seed=2**31 - 1)
    assert job.seed == 2**31 - 1 == sdk.fine_tuning.jobs.retrieve(job.id).seed


def test_integrations_are_refused_rather_than_dropped(sdk, training_file):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.fine_tuning.jobs.create(
            model="t4dm-tiny",
            training_file=training_file.id,
            integrations=[{"type": "wandb", "wandb": {"project": "my-project"}}],
        )
    assert refused.value.param == "integrations"
    assert OpenAIFineTuneJob.objects.count() == 0
    assert sdk.fine_tuning.jobs.create(model="t4dm-tiny", training_file=training_file.id, integrations=[])


@pytest.mark.parametrize("value", ["Infinity", "NaN", "-Infinity"])
def test_a_non_finite_learning_rate_multiplier_is_a_400(client, researcher, training_file, value):
    """The `openai` package will not send these, but Python's json reads them from any other client."""
    body = (
        f'{{"model": "t4dm-tiny", "training_file": "{training_file.id}", "method": {{"type": "supervised", '
        f'"supervised": {{"hyperparameters": {{"learning_rate_multiplier": {value}}}}}}}}}'
    )
    response = client.post(
        "/v1/fine_tuning/jobs",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {researcher.raw_token}"},
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == "hyperparameters.learning_rate_multiplier"
    assert OpenAIFineTuneJob.objects.count() == 0


def test_a_job_trains_on_the_files_rows_not_a_later_version_of_their_dataset(sdk):
    rows = DEMO_ROWS.read_bytes().splitlines(keepends=True)
    uploaded = sdk.files.create(file=("dup.jsonl", b"".join(rows + rows[:5])), purpose="fine-tune")
    version = OpenAIFile.objects.get(file_id=uploaded.id).dataset_version
    cleaned = dataset_clean(version=version)  # on the dataset page: a new version of the same dataset
    assert cleaned.dataset_id == version.dataset_id and cleaned.number == version.number + 1

    job = sdk.fine_tuning.jobs.create(model="t4dm-tiny", training_file=uploaded.id)

    assert OpenAIFineTuneJob.objects.get(ftjob_id=job.id).job.config.dataset_version == version


def test_cancelling_a_finished_job_names_the_job_the_caller_knows(sdk, training_file):
    job = sdk.fine_tuning.jobs.create(model="t4dm-tiny", training_file=training_file.id)
    assert sdk.fine_tuning.jobs.cancel(job.id).status == "cancelled"

    with pytest.raises(openai.ConflictError) as again:
        sdk.fine_tuning.jobs.cancel(job.id)

    assert job.id in again.value.message and "cancelled" in again.value.message
    assert OpenAIFineTuneJob.objects.get().job.public_id not in again.value.message
    assert again.value.code == "job_finished"
    assert sdk.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def test_a_fine_tuned_model_is_fine_tuned_further_by_its_name(
    sdk, client, make_user, training_file, tiny_model_dir
):
    """OpenAI's `model` takes a fine-tuned model's name (and a checkpoint's) to continue from it."""
    from experiments.services import checkpoint_record

    first = sdk.fine_tuning.jobs.create(model="t4dm-tiny", training_file=training_file.id, suffix="kb")
    first_job = OpenAIFineTuneJob.objects.get(ftjob_id=first.id).job
    first_job.mark_running(worker="w")
    first_job.mark_succeeded(final_model_path=str(tiny_model_dir))
    checkpoint_record(job=first_job, step=1, path=str(tiny_model_dir), metrics={})
    name = sdk.fine_tuning.jobs.retrieve(first.id).fine_tuned_model
    checkpoint_name = sdk.fine_tuning.jobs.checkpoints.list(first.id).data[0].fine_tuned_model_checkpoint

    further = sdk.fine_tuning.jobs.create(model=name, training_file=training_file.id)
    from_checkpoint = sdk.fine_tuning.jobs.create(model=checkpoint_name, training_file=training_file.id)

    assert (further.model, further.status) == (name, "queued")
    assert from_checkpoint.model == checkpoint_name
    configs = {j.ftjob_id: j.job.config for j in OpenAIFineTuneJob.objects.all()}
    assert configs[further.id].model_base == first_job.public_id
    assert configs[from_checkpoint.id].model_base == f"{first_job.public_id}/step-1"
    # the name of a model that is not the caller's, or not one of ours: 404 naming `model`
    other = _sdk(client, make_user("otto"))
    other_file = other.files.create(file=("kb.jsonl", DEMO_ROWS.read_bytes()), purpose="fine-tune")
    for model in (name, name.replace("org-t4dm:kb", "org-t4dm:other")):
        with pytest.raises(openai.NotFoundError) as missing:
            other.fine_tuning.jobs.create(model=model, training_file=other_file.id)
        assert missing.value.param == "model"


def test_conflicting_top_level_and_method_hyperparameters_are_refused_not_dropped(sdk, training_file):
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.fine_tuning.jobs.create(
            model="t4dm-tiny", training_file=training_file.id, hyperparameters={"n_epochs": 5}, method=method
        )
    assert refused.value.param == "hyperparameters"
    assert OpenAIFineTuneJob.objects.count() == 0
    same = sdk.fine_tuning.jobs.create(
        model="t4dm-tiny", training_file=training_file.id, hyperparameters={"n_epochs": 2}, method=method
    )
    assert same.hyperparameters.n_epochs == 2


@pytest.mark.parametrize("field", ["training_file", "validation_file"])
def test_a_missing_or_others_file_in_a_job_names_its_field(sdk, client, make_user, training_file, field):
    other = _sdk(client, make_user("otto"))
    theirs = other.files.create(file=("kb.jsonl", DEMO_ROWS.read_bytes()), purpose="fine-tune")
    for file_id in ("file-doesnotexist", theirs.id):
        files = {"training_file": training_file.id, field: file_id}
        with pytest.raises(openai.NotFoundError) as missing:
            sdk.fine_tuning.jobs.create(model="t4dm-tiny", **files)
        assert missing.value.param == field and file_id in missing.value.message


def _weighted(weight) -> bytes:
    import json

    row = {
        "messages": [
            {"role": "user", "content": "What is T4DM?"},
            {"role": "assistant", "content": "A draft answer not to learn from.", "weight": weight},
            {"role": "user", "content": "Again, please."},
            {"role": "assistant", "content": "A fine-tuning platform."},
        ]
    }
    plain = {"messages": row["messages"][2:]}
    return b"".join(json.dumps(r).encode() + b"\n" for r in (plain, plain, row, plain))


def test_an_assistant_message_of_weight_0_is_refused_not_trained_on(sdk):
    """OpenAI skips learning from an assistant message with `weight: 0`; T4DM trains on every assistant
    message, so such a file is a 400 with its line rather than trained on silently."""
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.files.create(file=("weighted.jsonl", _weighted(0)), purpose="fine-tune")
    message = refused.value.message
    assert "line 3" in message and "messages[1].weight" in message
    assert sdk.files.list().data == []
    assert sdk.files.create(file=("weighted.jsonl", _weighted(1)), purpose="fine-tune").status == "processed"


def test_a_large_file_with_weight_0_ends_in_error_on_the_worker(sdk, settings):
    from tests.openai_compat.test_files_worker import _run_worker

    settings.SYNC_PREPARE_BYTES = 200
    uploaded = sdk.files.create(file=("weighted.jsonl", _weighted(0)), purpose="fine-tune")
    assert uploaded.status == "uploaded"

    _run_worker(uploaded.id)

    failed = sdk.files.retrieve(uploaded.id)
    assert failed.status == "error" and "line 3" in failed.status_details


def test_a_deeply_nested_weight_row_is_refused_with_its_line_not_a_500(sdk):
    deep = b'{"weight": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.files.create(file=("deep.jsonl", _weighted(1) + deep), purpose="fine-tune")
    assert "line 5" in refused.value.message


def test_a_body_over_djangos_limit_is_a_413_in_openais_shape_not_a_500(sdk, training_file, settings):
    """A 500 would make the client send it twice more (it retries 5xx)."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    calls = [
        lambda: sdk.fine_tuning.jobs.create(
            model="t4dm-tiny", training_file=training_file.id, extra_body={"pad": "x" * 20_000}
        ),
        lambda: sdk.files.create(
            file=("kb.jsonl", DEMO_ROWS.read_bytes()), purpose="fine-tune", extra_body={"pad": "x" * 20_000}
        ),
    ]
    for call in calls:
        with pytest.raises(openai.APIStatusError) as refused:
            call()
        assert refused.value.status_code == 413
        assert (
            refused.value.body["type"] == "invalid_request_error" and "10000 bytes" in refused.value.message
        )
    assert OpenAIFineTuneJob.objects.count() == 0 and [f.id for f in sdk.files.list()] == [training_file.id]


def test_a_nul_character_is_a_4xx_not_a_database_error(sdk, training_file):
    """PostgreSQL refuses NUL in text and JSON: a 500 there (which the client retries) before the check.
    Run with DATABASE_URL=postgres://… to see the difference; the answers are the same on SQLite."""
    create = sdk.fine_tuning.jobs.create
    for kwargs, param in (
        ({"suffix": "a\x00b"}, "suffix"),
        ({"metadata": {"k": "a\x00b"}}, "metadata"),
        ({"metadata": {"k\x00": "b"}}, "metadata"),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            create(model="t4dm-tiny", training_file=training_file.id, **kwargs)
        assert refused.value.param == param
    with pytest.raises(openai.NotFoundError) as missing:
        create(model="t4dm-tiny", training_file="file-\x00")
    assert missing.value.param == "training_file"
    for call, missing_id in (
        (sdk.files.retrieve, "file-\x00"),
        (sdk.files.content, "file-\x00"),
        (sdk.fine_tuning.jobs.retrieve, "ftjob-\x00"),
        (sdk.fine_tuning.jobs.cancel, "ftjob-\x00"),
        (sdk.fine_tuning.jobs.list_events, "ftjob-\x00"),
    ):
        with pytest.raises(openai.NotFoundError):
            call(missing_id)
    assert sdk.files.list(purpose="fine\x00tune").data == []
    assert OpenAIFineTuneJob.objects.count() == 0


def test_cancelling_a_finished_job_is_not_retried_by_the_client(client, researcher, training_file, sdk):
    """The `openai` client retries a 409 (it reads it as a lock conflict) unless told not to: the answer for
    a finished job does not change, so the request is sent once."""
    job = sdk.fine_tuning.jobs.create(model="t4dm-tiny", training_file=training_file.id)
    sdk.fine_tuning.jobs.cancel(job.id)
    sent = []

    class Counting(DjangoTransport):
        def handle_request(self, request):
            sent.append(request.url.path)
            return super().handle_request(request)

    retrying = openai.OpenAI(
        base_url="http://testserver/v1",
        api_key=researcher.raw_token,
        max_retries=2,
        http_client=httpx.Client(transport=Counting(client)),
    )
    with pytest.raises(openai.ConflictError):
        retrying.fine_tuning.jobs.cancel(job.id)
    assert sent == [f"/v1/fine_tuning/jobs/{job.id}/cancel"]


def test_a_file_with_several_bad_rows_names_the_next_ones_in_the_message(sdk):
    """OpenAI's error object has no details: the message says what the details would."""
    bad = b'{"messages": 3}\n' * 3
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.files.create(file=("bad.jsonl", bad), purpose="fine-tune")
    message = refused.value.message
    assert "line 1" in message and "line 2" in message and "line 3" in message
    assert "see details" not in message


def test_a_large_file_with_several_bad_rows_names_the_next_ones_in_status_details(sdk, settings):
    from tests.openai_compat.test_files_worker import _run_worker

    settings.SYNC_PREPARE_BYTES = 20
    uploaded = sdk.files.create(file=("bad.jsonl", b'{"messages": 3}\n' * 3), purpose="fine-tune")
    assert uploaded.status == "uploaded"

    _run_worker(uploaded.id)

    details = sdk.files.retrieve(uploaded.id).status_details
    assert "line 2" in details and "line 3" in details and "see details" not in details


def test_an_endpoint_t4dm_does_not_serve_is_a_404_in_openais_shape(sdk, training_file):
    """pause/resume and any other /v1 path this API lacks: the client's NotFoundError with OpenAI's error
    object, not the site's HTML page."""
    job = sdk.fine_tuning.jobs.create(model="t4dm-tiny", training_file=training_file.id)
    for call in (sdk.fine_tuning.jobs.pause, sdk.fine_tuning.jobs.resume):
        with pytest.raises(openai.NotFoundError) as missing:
            call(job.id)
        assert isinstance(missing.value.body, dict), missing.value.body
        assert missing.value.body["type"] == "invalid_request_error"
        assert f"/v1/fine_tuning/jobs/{job.id}/" in missing.value.message
    assert sdk.fine_tuning.jobs.retrieve(job.id).status == "queued"


def test_a_tool_calling_row_is_refused_saying_so(sdk):
    """OpenAI's format may hold tool calls; T4DM's chat rows do not: the 400 says that, with the line
    (it said an assistant message's content must be a string)."""
    import json

    plain = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    tools = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
    }
    body = b"".join(json.dumps(r).encode() + b"\n" for r in (plain, tools))
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.files.create(file=("tools.jsonl", body), purpose="fine-tune")
    assert "line 2" in refused.value.message and "tool_calls" in refused.value.message


def test_files_list_refuses_an_order_other_than_asc_or_desc(sdk, training_file):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.files.list(extra_query={"order": "newest"})
    assert refused.value.param == "order"
    assert [f.id for f in sdk.files.list(order="asc")] == [training_file.id]
