"""HumanEvalTask → items → assignments (one evaluator, one item) → ratings.

In blind pairwise mode an item's outputs are stored as shown: `output_a` on the left, `output_b` on the
right; `model_a`/`model_b` (indexes into the task's `model_refs`) record the order, drawn from `secrets`
per item. Evaluators never receive those two fields, nor the task's `model_refs`; an assignment's id is
128 random bits (it says nothing about the item, its place in the task or its sides).
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from t4dm_site.models import OutboxUpdate
from t4dm_site.public_ids import PublicIdMixin
from t4dm_site.status import StatusTransitionsMixin


class EvalMode(models.TextChoices):
    RATING = "rating", "Rating (1–5 per criterion)"
    PAIRWISE = "pairwise", "Blind pairwise (A / B / tie)"


class TaskStatus(models.TextChoices):
    GENERATING = "generating"
    READY = "ready"
    FAILED = "failed"


class AssignmentStatus(models.TextChoices):
    PENDING = "pending"
    DONE = "done"


class HumanEvalTask(StatusTransitionsMixin, PublicIdMixin, models.Model):
    PUBLIC_ID_PREFIX = "he"
    STATUS_RUNNING, STATUS_SUCCEEDED = TaskStatus.GENERATING, TaskStatus.READY  # → ready | failed

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    mode = models.CharField(max_length=10, choices=EvalMode.choices, default=EvalMode.RATING)
    criteria = models.JSONField(default=list)
    model_refs = models.JSONField(default=list, help_text="[{ref, path}] — never shown to evaluators")
    questions = models.JSONField(default=list, help_text="[{prompt, reference}] to generate answers for")
    source = models.CharField(max_length=200, blank=True, help_text="typed, upload, or ds-001 test split")
    overlap = models.PositiveSmallIntegerField(default=1, help_text="evaluators per item")
    evaluators = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="human_eval_tasks")
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=12, choices=TaskStatus.choices, default=TaskStatus.GENERATING)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.public_id} {self.name}"

    def record_progress(self, fraction: float) -> None:
        self.progress = fraction
        self.save(update_fields=["progress"])

    def mark_ready(self) -> None:
        self.mark_succeeded(error="")


class HumanEvalItem(models.Model):
    task = models.ForeignKey(HumanEvalTask, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField()
    prompt = models.TextField()
    messages = models.JSONField(
        default=list, blank=True, help_text="a multi-turn question: [{role, content}] (system/user/assistant)"
    )
    reference = models.TextField(blank=True)
    output_a = models.TextField(help_text="the output shown (on the left in pairwise mode)")
    output_b = models.TextField(blank=True, help_text="pairwise mode: the output on the right")
    model_a = models.PositiveSmallIntegerField(default=0, help_text="index in task.model_refs of output_a")
    model_b = models.PositiveSmallIntegerField(null=True, blank=True, help_text="index of output_b")

    class Meta:
        ordering = ["task", "index"]
        constraints = [models.UniqueConstraint(fields=["task", "index"], name="human_eval_item_index_unique")]

    def __str__(self) -> str:
        return f"{self.task.public_id} item {self.index + 1}"


def new_assignment_id() -> str:
    """The id an evaluator sees and sends back: opaque, unguessable, in no order."""
    return secrets.token_urlsafe(16)


class HumanEvalAssignment(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_assignment_id, editable=False)
    task = models.ForeignKey(HumanEvalTask, on_delete=models.CASCADE, related_name="assignments")
    item = models.ForeignKey(HumanEvalItem, on_delete=models.CASCADE, related_name="assignments")
    evaluator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="human_eval_assignments"
    )
    position = models.PositiveIntegerField(help_text="order in the evaluator's queue; a skip moves it last")
    status = models.CharField(
        max_length=10, choices=AssignmentStatus.choices, default=AssignmentStatus.PENDING
    )
    draft = models.JSONField(default=dict, blank=True, help_text="autosaved, not yet submitted choices")
    skips = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["task", "evaluator", "position"]
        constraints = [
            # Nobody rates the same item twice.
            models.UniqueConstraint(fields=["item", "evaluator"], name="human_eval_one_assignment_per_item")
        ]

    def __str__(self) -> str:
        return f"{self.item} → {self.evaluator}"


class HumanEvalRating(models.Model):
    assignment = models.OneToOneField(HumanEvalAssignment, on_delete=models.CASCADE, related_name="rating")
    task = models.ForeignKey(HumanEvalTask, on_delete=models.CASCADE, related_name="ratings")
    item = models.ForeignKey(HumanEvalItem, on_delete=models.CASCADE, related_name="ratings")
    evaluator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    scores = models.JSONField(help_text="rating: {criterion: 1..5}; pairwise: {criterion: 'a'|'b'|'tie'}")
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(null=True, blank=True, help_text="when the evaluator last changed it")

    class Meta:
        ordering = ["task", "item", "created_at"]

    def __str__(self) -> str:
        return f"{self.item} by {self.evaluator}"


class HumanEvalUpdate(OutboxUpdate):
    """The results page's outbox: one row per change a researcher watches (generation progress, ready,
    failed, a rating submitted or changed), written in the transaction that made it (the
    HumanEvalChanged subscriber). Its payload is the task's status and counts at that change and what
    happened (never a model identity; the socket is the researcher's anyway); the websocket
    (experiments/human_eval/consumers.py) sends the rows after a viewer's cursor (the row id)."""

    task = models.ForeignKey(HumanEvalTask, on_delete=models.CASCADE, related_name="updates")
    kind = models.CharField(
        max_length=40, help_text="human_eval.progress, .ready, .failed, .rated, .rating_changed"
    )

    record_field = "task"

    class Meta(OutboxUpdate.Meta):
        indexes = [models.Index(fields=["task", "id"], name="human_eval_update_cursor")]
