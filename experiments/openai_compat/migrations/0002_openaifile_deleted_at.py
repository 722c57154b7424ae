from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("openai_compat", "0001_openai_files_jobs_and_provider_jobs"),
    ]

    operations = [
        migrations.AddField(
            model_name="openaifile",
            name="deleted_at",
            field=models.DateTimeField(
                blank=True,
                help_text="Set by DELETE /v1/files/{id}: the bytes are removed and the id answers 404; the row "
                "stays for the fine-tuning jobs that name it.",
                null=True,
            ),
        ),
    ]
