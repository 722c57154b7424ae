from django.contrib import admin

from experiments.openai_compat.models import OpenAIFile, OpenAIFineTuneJob, ProviderJob


@admin.register(OpenAIFile)
class OpenAIFileAdmin(admin.ModelAdmin):
    list_display = ("file_id", "filename", "purpose", "owner", "dataset_version", "created_at")
    search_fields = ("file_id", "filename")
    exclude = ("content",)
    raw_id_fields = ("owner", "dataset_version")


@admin.register(OpenAIFineTuneJob)
class OpenAIFineTuneJobAdmin(admin.ModelAdmin):
    list_display = ("ftjob_id", "job", "model", "suffix", "created_at")
    search_fields = ("ftjob_id", "suffix")
    raw_id_fields = ("job", "training_file", "validation_file")


@admin.register(ProviderJob)
class ProviderJobAdmin(admin.ModelAdmin):
    list_display = ("remote_job_id", "provider", "job", "remote_status", "fine_tuned_model", "created_at")
    search_fields = ("remote_job_id", "fine_tuned_model")
    raw_id_fields = ("job",)
    exclude = ("seen_event_ids",)
