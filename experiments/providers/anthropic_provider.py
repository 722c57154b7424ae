"""finetune_anthropic: Anthropic offers no public fine-tuning API to call; say so clearly."""

from __future__ import annotations

from t4dm_site.errors import DomainError


class ProviderNotAvailable(DomainError):
    status = 400
    code = "provider_not_available"


def finetune_anthropic(*, owner, dataset_path: str, base_model: str, config: dict | None = None):
    raise ProviderNotAvailable(
        "finetune_anthropic is not available: Anthropic has no public fine-tuning API for T4DM to call. "
        "Use finetune_openai, or train locally (configure_training + start_training).",
        details={"provider": "anthropic", "base_model": base_model},
    )
