"""Sequence classification: labelled texts, a classification head, accuracy at each evaluation."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from transformers import DataCollatorWithPadding

from experiments.training.components import Recipe
from experiments.training.data import classification_labels, load_split, tokenize_classification


class ClassificationRecipe(Recipe):
    name: ClassVar[str] = "classification"

    def setup(self, tokenizer: Any) -> None:
        self.labels = classification_labels(load_split(self.spec.dataset.train))

    def tokenize(self, path: str, tokenizer: Any) -> Any:
        return tokenize_classification(
            load_split(path),
            tokenizer,
            labels=self.labels or [],
            max_seq_length=self.spec.hyperparameters.max_seq_length,
        )

    def collator(self, tokenizer: Any) -> Any:
        return DataCollatorWithPadding(tokenizer)

    def compute_metrics(self) -> Any:
        return accuracy


def accuracy(eval_prediction: Any) -> dict[str, float]:
    logits = eval_prediction.predictions
    if isinstance(logits, tuple):
        logits = logits[0]
    return {"accuracy": float((np.argmax(logits, axis=-1) == eval_prediction.label_ids).mean())}
