"""Give every registered model an owner and tie every version to its owner's registered model.

Model ids used to be one namespace for everyone: a model_id could hold versions of several owners.
Each version's owner is its job's owner, else the user named in created_by, else the first admin
(a superuser, else a member of the "admin" group). The versions of one model_id are split per owner:
the owner of the oldest version keeps the existing row, every other owner gets a copy of it
(description, intended use, limitations, thresholds) in their own namespace. Rows with no owner at
all stay ownerless, which makes them visible to admins only.
"""

from django.db import migrations


def _first_admin(User):
    admin = User.objects.filter(is_superuser=True).order_by("pk").first()
    return admin or User.objects.filter(groups__name="admin").order_by("pk").first()


def assign_owners(apps, schema_editor):
    User = apps.get_model(*_user_model().split("."))
    RegisteredModel = apps.get_model("models_registry", "RegisteredModel")
    ModelVersion = apps.get_model("models_registry", "ModelVersion")
    fallback = _first_admin(User)
    model_ids = set(ModelVersion.objects.values_list("model_id", flat=True)) | set(
        RegisteredModel.objects.filter(owner__isnull=True).values_list("model_id", flat=True)
    )
    for model_id in sorted(model_ids):
        versions = list(ModelVersion.objects.filter(model_id=model_id).select_related("job").order_by("created_at", "pk"))
        by_owner: dict = {}
        for version in versions:
            owner_id = version.job.owner_id if version.job_id else None
            if owner_id is None:
                named = User.objects.filter(username=version.created_by).first()
                owner_id = named.pk if named else (fallback.pk if fallback else None)
            by_owner.setdefault(owner_id, []).append(version)
        existing = RegisteredModel.objects.filter(model_id=model_id, owner__isnull=True).order_by("pk").first()
        if existing is None:
            existing = RegisteredModel.objects.create(model_id=model_id)
        if not by_owner:  # a registered model without versions: the first admin's
            existing.owner_id = fallback.pk if fallback else None
            existing.save(update_fields=["owner"])
            continue
        for index, (owner_id, owned) in enumerate(by_owner.items()):
            if index == 0:
                registered = existing
                registered.owner_id = owner_id
                registered.save(update_fields=["owner"])
            else:
                registered = RegisteredModel.objects.create(
                    owner_id=owner_id,
                    model_id=model_id,
                    description=existing.description,
                    intended_use=existing.intended_use,
                    limitations=existing.limitations,
                    thresholds=existing.thresholds,
                )
            ModelVersion.objects.filter(pk__in=[v.pk for v in owned]).update(registered=registered)


def _user_model() -> str:
    from django.conf import settings

    return settings.AUTH_USER_MODEL


def merge_back(apps, schema_editor):
    """Reverse: versions keep their model_id; the per-owner rows beyond the first are dropped."""
    RegisteredModel = apps.get_model("models_registry", "RegisteredModel")
    ModelVersion = apps.get_model("models_registry", "ModelVersion")
    ModelVersion.objects.update(registered=None)
    seen = set()
    for registered in RegisteredModel.objects.order_by("pk"):
        if registered.model_id in seen:
            registered.delete()
        else:
            seen.add(registered.model_id)
            registered.owner = None
            registered.save(update_fields=["owner"])


class Migration(migrations.Migration):
    dependencies = [("models_registry", "0003_owner_namespace")]

    operations = [migrations.RunPython(assign_owners, merge_back)]
