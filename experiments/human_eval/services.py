"""Human evaluation services: set up a task (the Celery task then generates outputs and creates items
and assignments), evaluators' drafts, skips and ratings, reassignment, preference-dataset export."""

from __future__ import annotations

import json
import logging
import re
import secrets

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Count, Max
from django.utils import timezone

from experiments.human_eval.models import (
    AssignmentStatus,
    EvalMode,
    HumanEvalAssignment,
    HumanEvalItem,
    HumanEvalRating,
    HumanEvalTask,
    TaskStatus,
)
from t4dm_site.errors import Conflict, InvalidInput, NotFound
from t4dm_site.events import HumanEvalChanged, publish
from t4dm_site.jsonlimits import loads_bounded
from t4dm_site.roles import ADMIN, EVALUATOR

log = logging.getLogger(__name__)

DEFAULT_CRITERIA = ["accuracy", "helpfulness", "safety"]
DEFAULT_PAIRWISE_CRITERIA = ["overall"]
PAIRWISE_CHOICES = ("a", "b", "tie")
SCORE_RANGE = (1, 5)
MAX_QUESTIONS = 500
MAX_QUESTION_CHARS = 8000
ASSIGNMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # new_assignment_id's alphabet (token_urlsafe)


def _criteria(criteria: list[str] | None, mode: str) -> list[str]:
    names = [c.strip() for c in (criteria or []) if isinstance(c, str)]
    if criteria is not None and len(names) != len(criteria):
        raise InvalidInput("criteria: each criterion must be a non-empty string")
    names = names or (DEFAULT_PAIRWISE_CRITERIA if mode == EvalMode.PAIRWISE else DEFAULT_CRITERIA)
    if any(not n for n in names) or len(set(names)) != len(names):
        raise InvalidInput("criteria: names must be non-empty and distinct")
    if len(names) > 10 or any(len(n) > 40 for n in names):
        raise InvalidInput("criteria: at most 10, each at most 40 characters")
    return names


GUIDE_FIELDS = {"description": 500, "low": 120, "high": 120}  # what a criterion means; its scale's ends


def _criteria_guides(guides: dict | None, names: list[str]) -> dict:
    """Optional help shown to evaluators per criterion: {name: {description, low, high}} (the anchors of
    the lowest and highest score, or of A/B in pairwise mode)."""
    clean = {}
    for name, guide in (guides or {}).items():
        if name not in names:
            raise InvalidInput(f"criteria_guides: {name!r} is not one of the criteria ({', '.join(names)})")
        if not isinstance(guide, dict):
            raise InvalidInput(f"criteria_guides.{name}: an object {{description, low, high}}")
        entry = {}
        for field, limit in GUIDE_FIELDS.items():
            text = guide.get(field) or ""
            if not isinstance(text, str) or len(text) > limit:
                raise InvalidInput(f"criteria_guides.{name}.{field}: text of at most {limit} characters")
            if text.strip():
                entry[field] = text.strip()
        if entry:
            clean[name] = entry
    return clean


def _questions_from_split(*, owner, test_dataset: str, max_questions: int | None) -> list[dict]:
    from experiments.evaluation.services import _split_file, _test_version
    from experiments.training.data import load_split

    version = _test_version(user=owner, dataset_id=test_dataset, fallback=None)
    if version.task_type == "classification":
        raise InvalidInput(f"test_dataset: {version.dataset.public_id} is a classification dataset; "
                           "human evaluation rates generated text (chat, instruction or completion)")  # fmt: skip
    rows = load_split(str(_split_file(version, "test"))).to_list()
    questions = []
    for row in rows[: max_questions or MAX_QUESTIONS]:
        if version.task_type == "chat":
            messages = row["messages"]
            last = max((k for k, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
            prompt = "\n\n".join(m["content"] for m in messages[:last] if m["role"] != "system")
            reference = messages[last]["content"] if last < len(messages) else ""
            turns = [{"role": m["role"], "content": m["content"]} for m in messages[:last]]
            if prompt.strip():
                # the turns with their roles, for the rating and results pages (one user turn: no roles)
                questions.append({"prompt": prompt, "reference": reference,
                                  "messages": turns if len(turns) > 1 else []})  # fmt: skip
            continue
        elif version.task_type == "instruction":
            prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
            reference = row["output"]
        else:
            prompt, reference = row.get("prompt") or "", row.get("completion") or ""
        if prompt.strip():
            questions.append({"prompt": prompt, "reference": reference})
    return questions


def _typed_questions(eval_questions: list) -> list[dict]:
    """Typed questions (strings), or an uploaded file's (see parse_questions_upload: dicts with a
    prompt, a reference and maybe the turns of a conversation)."""
    questions = []
    for k, q in enumerate(eval_questions):
        if isinstance(q, dict):  # from parse_questions_upload, already checked
            questions.append(q)
            continue
        if not isinstance(q, str) or not q.strip():
            raise InvalidInput(f"eval_questions[{k}]: must be a non-empty string")
        if len(q) > MAX_QUESTION_CHARS:
            raise InvalidInput(f"eval_questions[{k}]: longer than {MAX_QUESTION_CHARS} characters")
        questions.append({"prompt": q.strip(), "reference": ""})
    return questions


ROLES = ("system", "user", "assistant")


def _conversation_question(messages, number: int) -> dict:
    """A JSONL line's {"messages": [...]}: the turns up to the last assistant turn are the question (with
    their roles), that turn is the reference answer (as from a chat test split)."""
    where = f"questions file line {number}"
    if not isinstance(messages, list) or not messages:
        raise InvalidInput(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise InvalidInput(
                f"{where}: each message needs a role ({', '.join(ROLES)}) and a content string"
            )
    last = max((k for k, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    if last == len(messages) - 1 and any(m["role"] == "user" for m in messages[:last]):
        turns, reference = messages[:last], messages[last]["content"]
    else:
        turns, reference = messages, ""
    prompt = "\n\n".join(m["content"] for m in turns if m["role"] != "system")
    if not prompt.strip() or sum(len(m["content"]) for m in turns) > MAX_QUESTION_CHARS:
        raise InvalidInput(f"{where}: an empty conversation, or longer than {MAX_QUESTION_CHARS} characters")
    clean = [{"role": m["role"], "content": m["content"]} for m in turns]
    return {"prompt": prompt, "reference": reference, "messages": clean if len(clean) > 1 else []}


def parse_questions_upload(content: bytes) -> list:
    """An uploaded question file: JSONL ({"question"|"prompt": ..., optional "reference"|"answer": ...},
    {"messages": [{role, content}, ...]} for a multi-turn question, or a JSON string per line) or plain
    text with one question per line. Returns strings (plain questions) and dicts (with a reference or
    turns)."""
    try:
        text = content.decode("utf-8-sig", errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"questions file: not UTF-8 text (byte {exc.start})") from None
    if "\x00" in text:
        raise InvalidInput(
            f"questions file: binary data (a NUL byte at {text.index(chr(0))}), not a text file"
        )
    questions: list = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        control = next((ch for ch in line if ch < " " and ch != "\t" or ch == "\x7f"), None)
        if control is not None:
            raise InvalidInput(f"questions file line {number}: a control character (U+{ord(control):04X})")
        if line.startswith(("{", '"')):
            try:
                value = loads_bounded(line, what=f"questions file line {number}")  # deep JSON: 400
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"questions file line {number}: not valid JSON ({exc.msg})") from None
            if isinstance(value, dict) and "messages" in value:
                questions.append(_conversation_question(value["messages"], number))
                continue
            reference = ""
            if isinstance(value, dict):
                reference = value.get("reference") or value.get("answer") or ""
                value = value.get("question") or value.get("prompt")
            if not isinstance(value, str) or not isinstance(reference, str):
                raise InvalidInput(f"questions file line {number}: expected a 'question' string")
            if reference.strip():
                if len(value) > MAX_QUESTION_CHARS or not value.strip():
                    raise InvalidInput(
                        f"questions file line {number}: empty or longer than {MAX_QUESTION_CHARS}"
                    )
                questions.append({"prompt": value.strip(), "reference": reference.strip()})
                continue
            line = value
        questions.append(line)
    return questions


def assignable_evaluators(*, owner=None):
    """Who may be given items: active users with the evaluator role, never an admin or staff member
    (they can read every task's results) nor the task's owner (who knows the models)."""
    users = (
        get_user_model()
        .objects.filter(is_active=True, is_staff=False, is_superuser=False, groups__name=EVALUATOR)
        .exclude(groups__name=ADMIN)
    )
    return users.exclude(pk=owner.pk) if owner is not None else users


def _evaluators(usernames: list[str], *, owner) -> list:
    """The named evaluators. A name that is unknown, inactive, or someone who may not evaluate (an admin,
    a researcher without the evaluator role, the owner) gets one and the same answer, so that set-up
    cannot be used to find out which accounts exist or what roles they hold."""
    if not usernames:
        raise InvalidInput("evaluators: name at least one evaluator (usernames)")
    users = list(assignable_evaluators(owner=owner).filter(username__in=usernames).distinct())
    refused = sorted(set(usernames) - {u.username for u in users})
    if refused:
        raise InvalidInput(
            f"evaluators: no evaluator you can assign is named {', '.join(refused)}", code="unknown_evaluator"
        )
    return sorted(users, key=lambda u: u.username)


@transaction.atomic
def human_eval_setup(
    *,
    owner,
    evaluators: list[str],
    model_path: str | None = None,
    models: list[str] | None = None,
    mode: str = EvalMode.RATING,
    eval_questions: list[str] | None = None,
    test_dataset: str | None = None,
    max_questions: int | None = None,
    criteria: list[str] | None = None,
    overlap: int = 1,
    name: str = "",
    max_new_tokens: int = 96,
    criteria_guides: dict | None = None,
) -> HumanEvalTask:
    """setup_human_eval: resolve the model(s), collect questions, queue output generation. The worker
    then creates the items and assigns each to `overlap` evaluators (see human_eval_generate). There is
    no seed: sides and queue order are secret randomness (see items_create)."""
    from experiments.model_refs import model_resolve

    if mode not in EvalMode.values:
        raise InvalidInput(f"mode: choose one of {', '.join(EvalMode.values)}")
    refs = list(models or ([model_path] if model_path else []))
    expected = 2 if mode == EvalMode.PAIRWISE else 1
    if len(refs) != expected:
        raise InvalidInput(
            "models: blind pairwise mode compares exactly two models"
            if mode == EvalMode.PAIRWISE
            else "model_path: give one model (a job id, job-001/step-40, model_id@1.0.0 or a folder)"
        )
    if mode == EvalMode.PAIRWISE and refs[0] == refs[1]:
        raise InvalidInput("models: compare two different models")
    resolved = []
    for ref in refs:
        target = model_resolve(user=owner, ref=ref)  # checks the folder holds a model
        resolved.append({"ref": ref, "path": target.path, "base_model": target.base_model or ""})
    if bool(eval_questions) == bool(test_dataset):
        raise InvalidInput(
            "give eval_questions (typed or uploaded) or test_dataset (its test split), not both"
        )
    if max_questions is not None and not 1 <= max_questions <= MAX_QUESTIONS:
        raise InvalidInput(f"max_questions: between 1 and {MAX_QUESTIONS}")
    if test_dataset:
        questions = _questions_from_split(owner=owner, test_dataset=test_dataset, max_questions=max_questions)
        source = f"{test_dataset} test split"
    else:
        questions = _typed_questions(eval_questions or [])[: max_questions or MAX_QUESTIONS]
        source = "questions"
    if not questions:
        raise InvalidInput("no questions to evaluate: the list or the test split is empty")
    people = _evaluators(evaluators, owner=owner)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 1 <= overlap <= len(people):
        raise InvalidInput(f"overlap: between 1 and the number of evaluators ({len(people)})")
    if not 1 <= max_new_tokens <= 1024:
        raise InvalidInput("max_new_tokens: between 1 and 1024")
    task = HumanEvalTask.objects.create(
        owner=owner,
        # The name is shown to evaluators: the default never names the models (blind mode).
        name=name.strip()[:200] or f"{EvalMode(mode).label} · {len(questions)} questions",
        mode=mode,
        criteria=_criteria(criteria, mode),
        model_refs=resolved,
        questions=questions,
        source=source,
        overlap=overlap,
        params={
            "max_new_tokens": max_new_tokens,
            "criteria_guides": _criteria_guides(criteria_guides, _criteria(criteria, mode)),
        },
    )
    task.evaluators.set(people)
    _enqueue_on_commit(task)
    return task


def _enqueue_on_commit(task: HumanEvalTask) -> None:
    from experiments.evaluation.services import eval_queue
    from experiments.human_eval.tasks import human_eval_generate_task

    pk, queue = task.pk, eval_queue()
    transaction.on_commit(lambda: human_eval_generate_task.apply_async((pk,), queue=queue))


# --- the worker side -------------------------------------------------------------------------------


def human_eval_generate(*, task: HumanEvalTask) -> HumanEvalTask:
    """Generate every model's answers, then create items and assignments in one transaction."""
    from experiments.human_eval.generation import generate_answers

    if task.status != TaskStatus.GENERATING or task.items.exists():
        return task  # a redelivered message for a task already built
    prompts = [q["prompt"] for q in task.questions]
    outputs = []
    try:
        for m, model in enumerate(task.model_refs):
            share = 1 / len(task.model_refs)
            outputs.append(
                generate_answers(
                    model_path=model["path"],
                    questions=prompts,
                    max_new_tokens=task.params.get("max_new_tokens", 96),
                    base_model=model.get("base_model") or None,
                    progress=lambda f, m=m, share=share: _progressed(task, 0.95 * share * (m + f)),
                )
            )
    except Exception as exc:
        log.exception("human eval %s: generation failed", task.public_id)
        task.mark_failed(error=f"{type(exc).__name__}: {exc}")
        publish(HumanEvalChanged(task_pk=task.pk, webhook_type="human_eval.failed"))
        return task
    items_create(task=task, outputs=outputs)
    return task


def _progressed(task: HumanEvalTask, fraction: float) -> None:
    task.record_progress(fraction)
    publish(HumanEvalChanged(task_pk=task.pk, webhook_type="human_eval.progress"))


@transaction.atomic
def items_create(*, task: HumanEvalTask, outputs: list[list[str]]) -> list[HumanEvalItem]:
    """Items from per-model outputs (outputs[model][question]); in pairwise mode the side each model is
    shown on is a fresh coin from `secrets` per item (no seed, nothing an evaluator could replay),
    recorded on the item for the results; then balanced assignment. Marks the task ready."""
    items = []
    for index, question in enumerate(task.questions):
        if task.mode == EvalMode.PAIRWISE:
            left = secrets.randbelow(2)
            item = HumanEvalItem(task=task, index=index, prompt=question["prompt"],
                                 messages=question.get("messages") or [],
                                 reference=question.get("reference", ""),
                                 output_a=outputs[left][index], output_b=outputs[1 - left][index],
                                 model_a=left, model_b=1 - left)  # fmt: skip
        else:
            item = HumanEvalItem(task=task, index=index, prompt=question["prompt"],
                                 messages=question.get("messages") or [],
                                 reference=question.get("reference", ""), output_a=outputs[0][index],
                                 model_a=0)  # fmt: skip
        items.append(item)
    items = HumanEvalItem.objects.bulk_create(items)
    assignments_create(task=task, items=items)
    task.mark_ready()
    publish(HumanEvalChanged(task_pk=task.pk, webhook_type="human_eval.ready"))
    return items


def assignments_create(*, task: HumanEvalTask, items: list[HumanEvalItem]) -> list[HumanEvalAssignment]:
    """Each item to `overlap` distinct evaluators, always the least loaded ones (ties in a rotating
    order), so loads differ by at most one. Each evaluator's queue is shuffled with `secrets`; the
    assignments' ids are random (new_assignment_id), so neither says where an item stands in the task."""
    people = list(task.evaluators.order_by("username"))
    load = {p.pk: 0 for p in people}
    rng = secrets.SystemRandom()
    order = list(range(len(people)))
    rows = []
    now = timezone.now()  # one timestamp for all: creation times do not order the items either
    for n, item in enumerate(items):
        rotated = order[n % len(order) :] + order[: n % len(order)]
        chosen = sorted(rotated, key=lambda k: load[people[k].pk])[: task.overlap]
        for k in chosen:
            load[people[k].pk] += 1
            rows.append(
                HumanEvalAssignment(task=task, item=item, evaluator=people[k], position=0, created_at=now)
            )
    by_person: dict[int, list[HumanEvalAssignment]] = {}
    for row in rows:
        by_person.setdefault(row.evaluator_id, []).append(row)
    for queue in by_person.values():
        rng.shuffle(queue)
        for position, row in enumerate(queue):
            row.position = position
    rng.shuffle(rows)  # nor does the order the rows are stored in
    return HumanEvalAssignment.objects.bulk_create(rows)


# --- evaluators --------------------------------------------------------------------------------------


def _own_assignment(*, user, assignment_id: str, for_update: bool = False) -> HumanEvalAssignment:
    query = HumanEvalAssignment.objects.select_related("task", "item")
    if for_update:
        query = query.select_for_update()
    assignment_id = str(assignment_id)[:64]
    # Only the id alphabet reaches the database (a NUL byte would be an error on PostgreSQL).
    well_formed = ASSIGNMENT_ID.fullmatch(assignment_id) is not None
    assignment = query.filter(pk=assignment_id, evaluator=user).first() if well_formed else None
    if assignment is None:
        # The same answer for someone else's item and for none: no way to probe which exist.
        raise NotFound("this assignment is not in your queue")
    return assignment


def validate_scores(*, task: HumanEvalTask, scores: dict, partial: bool = False) -> dict:
    if not isinstance(scores, dict):
        raise InvalidInput("scores: an object {criterion: value}")
    unknown = sorted(set(scores) - set(task.criteria))
    if unknown:
        raise InvalidInput(
            f"scores: unknown criteria {', '.join(unknown)}; this task rates {', '.join(task.criteria)}",
            code="unknown_criterion",
        )
    missing = [c for c in task.criteria if c not in scores]
    if missing and not partial:
        raise InvalidInput(f"scores: missing {', '.join(missing)}", code="missing_criterion")
    clean = {}
    for criterion, value in scores.items():
        if task.mode == EvalMode.PAIRWISE:
            if value not in PAIRWISE_CHOICES:
                raise InvalidInput(f"scores.{criterion}: choose a, b or tie", code="invalid_choice")
        else:
            low, high = SCORE_RANGE
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidInput(
                    f"scores.{criterion}: an integer from {low} to {high}, got {value!r}", code="out_of_range"
                )
        clean[criterion] = value
    return clean


@transaction.atomic
def rating_submit(*, user, assignment_id: str, scores: dict, comment: str = "") -> HumanEvalRating:
    assignment = _own_assignment(user=user, assignment_id=assignment_id, for_update=True)
    if assignment.status == AssignmentStatus.DONE:
        raise Conflict(
            "you already rated this item; a rating cannot be submitted twice", code="already_rated"
        )
    clean = validate_scores(task=assignment.task, scores=scores)
    if len(comment) > 4000:
        raise InvalidInput("comment: at most 4000 characters")
    try:
        with transaction.atomic():
            rating = HumanEvalRating.objects.create(assignment=assignment, task=assignment.task,
                                                    item=assignment.item, evaluator=user, scores=clean,
                                                    comment=comment.strip())  # fmt: skip
    except IntegrityError:
        raise Conflict("you already rated this item", code="already_rated") from None
    assignment.status, assignment.completed_at, assignment.draft = AssignmentStatus.DONE, timezone.now(), {}
    assignment.save(update_fields=["status", "completed_at", "draft"])
    publish(HumanEvalChanged(task_pk=assignment.task_id, webhook_type="human_eval.rated"))
    return rating


@transaction.atomic
def rating_update(*, user, assignment_id: str, scores: dict, comment: str = "") -> HumanEvalRating:
    """An evaluator changes their own rating (back on a previous item): the one rating row is updated,
    never a second one added; the item keeps its place in the order they rated."""
    assignment = _own_assignment(user=user, assignment_id=assignment_id, for_update=True)
    if assignment.status != AssignmentStatus.DONE:
        raise Conflict("this item is not rated yet: submit a rating first", code="not_rated")
    clean = validate_scores(task=assignment.task, scores=scores)
    if len(comment) > 4000:
        raise InvalidInput("comment: at most 4000 characters")
    rating = HumanEvalRating.objects.select_for_update().get(assignment=assignment)
    rating.scores, rating.comment, rating.updated_at = clean, comment.strip(), timezone.now()
    rating.save(update_fields=["scores", "comment", "updated_at"])
    publish(HumanEvalChanged(task_pk=assignment.task_id, webhook_type="human_eval.rating_changed"))
    return rating


@transaction.atomic
def draft_save(*, user, assignment_id: str, scores: dict, comment: str = "") -> HumanEvalAssignment:
    """Autosave: choices made so far, checked like a rating but possibly incomplete."""
    assignment = _own_assignment(user=user, assignment_id=assignment_id, for_update=True)
    if assignment.status == AssignmentStatus.DONE:
        raise Conflict("this item is already rated", code="already_rated")
    clean = validate_scores(task=assignment.task, scores=scores, partial=True)
    assignment.draft = {"scores": clean, "comment": comment[:4000]}
    assignment.save(update_fields=["draft"])
    return assignment


@transaction.atomic
def assignment_skip(*, user, assignment_id: str) -> HumanEvalAssignment:
    """Skip: the item goes to the end of the evaluator's queue (it still counts as to do)."""
    assignment = _own_assignment(user=user, assignment_id=assignment_id, for_update=True)
    if assignment.status == AssignmentStatus.DONE:
        raise Conflict("this item is already rated", code="already_rated")
    last = HumanEvalAssignment.objects.filter(task=assignment.task, evaluator=user).aggregate(
        m=Max("position")
    )
    assignment.position, assignment.skips = (last["m"] or 0) + 1, assignment.skips + 1
    assignment.save(update_fields=["position", "skips"])
    return assignment


# --- admin -----------------------------------------------------------------------------------------


@transaction.atomic
def assignments_reassign(*, task: HumanEvalTask, from_evaluator, to_evaluators: list | None = None) -> int:
    """Move an evaluator's remaining (pending) items of a task to others who do not have that item yet,
    least loaded first (only people who may still evaluate: see assignable_evaluators). Returns how many
    moved; an item nobody else can take stays where it is."""
    allowed = set(assignable_evaluators(owner=task.owner).values_list("pk", flat=True))
    candidates = list(to_evaluators or task.evaluators.exclude(pk=from_evaluator.pk))
    candidates = [c for c in candidates if c.pk != from_evaluator.pk and c.pk in allowed]
    if not candidates:
        raise InvalidInput("no other evaluator to take these items; add one to the task first")
    task.evaluators.add(*candidates)
    pending = list(
        HumanEvalAssignment.objects.select_for_update()
        .filter(task=task, evaluator=from_evaluator, status=AssignmentStatus.PENDING)
        .order_by("position")
    )
    loads = dict(
        HumanEvalAssignment.objects.filter(
            task=task, evaluator__in=candidates, status=AssignmentStatus.PENDING
        )
        .values_list("evaluator")
        .annotate(n=Count("pk"))
    )
    moved = 0
    for assignment in pending:
        taken = set(
            HumanEvalAssignment.objects.filter(item=assignment.item_id).values_list("evaluator", flat=True)
        )
        free = [c for c in candidates if c.pk not in taken]
        if not free:
            continue
        target = min(free, key=lambda c: (loads.get(c.pk, 0), c.username))
        last = HumanEvalAssignment.objects.filter(task=task, evaluator=target).aggregate(m=Max("position"))[
            "m"
        ]
        assignment.evaluator, assignment.position, assignment.draft = target, (last or 0) + 1, {}
        assignment.save(update_fields=["evaluator", "position", "draft"])
        loads[target.pk] = loads.get(target.pk, 0) + 1
        moved += 1
    return moved


# --- exports ---------------------------------------------------------------------------------------


def preference_dataset_export(*, owner, task: HumanEvalTask, criterion: str | None = None, name: str = ""):
    """Pairwise choices → a new preference dataset (prompt, chosen, rejected) in datasets_app. An item's
    preference is the majority of its decided choices on `criterion` (default: the first); ties and
    split votes are left out."""
    from datasets_app.services import dataset_prepare

    if task.mode != EvalMode.PAIRWISE:
        raise InvalidInput("only a blind pairwise task yields preferences (prompt, chosen, rejected)")
    criterion = criterion or task.criteria[0]
    if criterion not in task.criteria:
        raise InvalidInput(f"criterion: this task rates {', '.join(task.criteria)}")
    rows = []
    for item in task.items.prefetch_related("ratings"):
        votes = [r.scores.get(criterion) for r in item.ratings.all()]
        a, b = votes.count("a"), votes.count("b")
        if a == b:
            continue
        chosen, rejected = (item.output_a, item.output_b) if a > b else (item.output_b, item.output_a)
        rows.append({"prompt": item.prompt, "chosen": chosen, "rejected": rejected})
    if not rows:
        raise InvalidInput("no preferences yet: no item has a majority for A or B on " + criterion)
    content = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    return dataset_prepare(owner=owner, name=name or f"preferences from {task.public_id}", content=content,
                           task_type="preference", format="jsonl", split={"train": 1.0},
                           description=f"Pairwise human preferences ({criterion}) from {task.name}")  # fmt: skip
