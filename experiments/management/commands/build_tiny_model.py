"""Build the project's tiny causal LM (deterministic, offline) into T4DM_TINY_MODEL_DIR if missing."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from experiments.training.tiny_model import build_tiny_model


class Command(BaseCommand):
    help = "Build the built-in tiny Llama-shaped model and its tokenizer (skipped if already built)."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true")
        parser.add_argument("--out", default=None)

    def handle(self, *args, force, out, **options):
        target = Path(out) if out else settings.TINY_MODEL_DIR
        if (target / "config.json").exists() and not force:
            self.stdout.write(f"tiny model already at {target}")
            return
        path = build_tiny_model(target)
        self.stdout.write(self.style.SUCCESS(f"built the tiny model at {path}"))
