"""Classification metrics on scikit-learn: accuracy, macro precision/recall/F1, per class, confusion matrix."""

from __future__ import annotations

import datasets
import evaluate
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

_DESCRIPTION = """Accuracy and macro-averaged precision, recall and F1 (scikit-learn, zero_division=0), with
per-class precision/recall/F1/support and the confusion matrix (rows = reference, columns = predicted).
Labels are strings; `labels` fixes their order (default: sorted union of references and predictions)."""


class Classification(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="scikit-learn: Pedregosa et al., JMLR 12, 2011.",
            inputs_description="predictions: list of str labels; references: list of str labels; labels: optional list",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, labels=None):
        labels = list(labels) if labels else sorted(set(references) | set(predictions))
        precision, recall, f1, _ = precision_recall_fscore_support(
            references, predictions, labels=labels, average="macro", zero_division=0
        )
        per_p, per_r, per_f, support = precision_recall_fscore_support(
            references, predictions, labels=labels, average=None, zero_division=0
        )
        matrix = confusion_matrix(references, predictions, labels=labels)
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "precision": float(precision),
            "recall": float(recall),
            "f1_score": float(f1),
            "per_class": {
                label: {
                    "precision": float(per_p[i]),
                    "recall": float(per_r[i]),
                    "f1_score": float(per_f[i]),
                    "support": int(support[i]),
                }
                for i, label in enumerate(labels)
            },
            "confusion_matrix": {"labels": labels, "matrix": matrix.tolist()},
        }
