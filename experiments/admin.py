from django.contrib import admin

from experiments.evaluation.models import EvaluationUpdate
from experiments.models import (
    Checkpoint,
    Evaluation,
    Experiment,
    JobEvent,
    MetricPoint,
    MetricRollup,
    SavedRunsView,
    TrainingConfig,
    TrainingJob,
    Worker,
    WorkerThroughput,
)
from t4dm_site.admin import OutboxAdmin


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["public_id", "name", "owner", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["name", "notes", "owner__username"]


@admin.register(SavedRunsView)
class SavedRunsViewAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "query", "updated_at"]
    search_fields = ["name", "owner__username"]


@admin.register(TrainingConfig)
class TrainingConfigAdmin(admin.ModelAdmin):
    list_display = ["public_id", "model_base", "approach", "task_type", "experiment", "owner", "created_at"]
    list_filter = ["approach", "task_type", "template"]
    search_fields = ["model_base", "experiment__name"]
    raw_id_fields = ["experiment", "dataset_version"]


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    fields = ["created_at", "level", "message"]
    readonly_fields = fields


class CheckpointInline(admin.TabularInline):
    model = Checkpoint
    extra = 0
    fields = ["step", "path", "is_best", "metrics"]
    readonly_fields = fields


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "status",
        "config",
        "step",
        "total_steps",
        "worker",
        "heartbeat_at",
        "owner",
        "created_at",
    ]
    list_filter = ["status", "config__approach", "created_at"]
    search_fields = ["worker", "error", "experiment__name", "config__model_base"]
    readonly_fields = ["token_hash", "created_at", "queued_at", "started_at", "finished_at", "heartbeat_at"]
    raw_id_fields = ["config", "experiment", "resume_from"]
    inlines = [CheckpointInline, JobEventInline]


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ["job", "level", "message", "created_at"]
    list_filter = ["level"]
    search_fields = ["message"]
    raw_id_fields = ["job"]


@admin.register(MetricPoint)
class MetricPointAdmin(admin.ModelAdmin):
    list_display = ["job", "key", "step", "value", "wall_time"]
    list_filter = ["key"]
    search_fields = ["key"]
    raw_id_fields = ["job"]
    show_full_result_count = False
    # Newest job's points first, along the (job, id) key (the default, -id alone, would sort the table).
    ordering = ["-job_id", "-id"]


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["job", "step", "is_best", "path", "created_at"]
    list_filter = ["is_best"]
    search_fields = ["path"]
    raw_id_fields = ["job"]


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ["public_id", "model_path", "status", "split", "owner", "created_at"]
    list_filter = ["status", "split"]
    search_fields = ["model_path"]
    raw_id_fields = ["job", "checkpoint", "dataset_version"]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status",
        "queue",
        "gpu_name",
        "gpu_count",
        "gpu_memory_free_mb",
        "current_job",
        "last_heartbeat_at",
    ]
    list_filter = ["status", "queue"]
    search_fields = ["name", "hostname", "gpu_name"]
    raw_id_fields = ["current_job"]
    readonly_fields = ["started_at", "last_heartbeat_at"]


@admin.register(WorkerThroughput)
class WorkerThroughputAdmin(admin.ModelAdmin):
    list_display = ["worker", "size_class", "approach", "device", "tokens_per_sec", "samples", "updated_at"]
    list_filter = ["size_class", "approach"]
    search_fields = ["worker__name", "device"]
    raw_id_fields = ["worker"]


@admin.register(MetricRollup)
class MetricRollupAdmin(admin.ModelAdmin):
    list_display = ["job", "key", "bucket", "lo", "hi", "n", "last_step"]
    list_filter = ["key"]
    search_fields = ["key"]
    raw_id_fields = ["job"]
    show_full_result_count = False


@admin.register(EvaluationUpdate)
class EvaluationUpdateAdmin(OutboxAdmin):
    list_display = ("id", "evaluation", "kind", "created_at")
    raw_id_fields = ("evaluation",)
