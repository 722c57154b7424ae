"""Writing a deployable model folder: merged LoRA or adapter, tokenizer, model card, checksum manifest,
and a .tar.gz of it all. Plain transformers/peft; the service records the result."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

MANIFEST_NAME = "MANIFEST.json"
ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def _auto_class(task_type: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForSequenceClassification if task_type == "classification" else AutoModelForCausalLM


def load_for_inference(folder: str | Path, *, task_type: str = "chat"):
    """A trained folder as the platform runs it: an adapter over its base (peft) or a full model."""
    folder = Path(folder)
    if is_adapter(folder):
        from peft import AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification

        cls = (
            AutoPeftModelForSequenceClassification
            if task_type == "classification"
            else AutoPeftModelForCausalLM
        )
        model = cls.from_pretrained(str(folder))
    else:
        model = _auto_class(task_type).from_pretrained(str(folder))
    return model.eval()


def write_model_folder(
    *, source: str | Path, dest: str | Path, merge: bool, task_type: str, on_step=None
) -> None:
    """`source` is a job's final folder. merge=True folds a LoRA adapter into its base weights
    (`merge_and_unload`) and saves a plain model; merge=False keeps the adapter as it is.
    `on_step(progress, message)`, if given, hears each step (progress 0..0.7 of the whole export)."""
    from transformers import AutoTokenizer

    step = on_step or (lambda progress, message: None)
    source, dest = Path(source), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    step(0.05, "loading the trained model")
    model = load_for_inference(source, task_type=task_type)
    if merge and is_adapter(source):
        step(0.3, "merging the LoRA adapter into the base weights")
        model = model.merge_and_unload()
    step(0.45, "saving the model")
    model.save_pretrained(str(dest))
    step(0.6, "saving the tokenizer")
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(dest))


def write_manifest(folder: str | Path) -> dict[str, Any]:
    """SHA-256 and size of every file in the folder (the manifest itself excluded), written as MANIFEST.json."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        files[path.relative_to(folder).as_posix()] = {
            "sha256": digest.hexdigest(),
            "bytes": path.stat().st_size,
        }
    manifest = {"algorithm": "sha256", "files": files}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def verify_manifest(folder: str | Path) -> list[str]:
    """Files whose checksum does not match the manifest (empty when the folder is intact)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    bad = []
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            bad.append(name)
    return bad


def make_archive(folder: str | Path, archive: str | Path) -> Path:
    folder, archive = Path(folder), Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def greedy_generate(model, tokenizer, prompt: str, *, max_new_tokens: int = 16) -> list[int]:
    """Token ids a model produces for a prompt with greedy decoding (deterministic)."""
    import torch

    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id,
        )
    return output[0, inputs["input_ids"].shape[1] :].tolist()
