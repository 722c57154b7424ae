"""SQuAD v1.1 exact match and token F1, with the official answer normalisation (lower case, strip
punctuation and the articles a/an/the, collapse whitespace). Scores are 0–1 (the official script
reports 0–100). With several references per example, the best one counts."""

from __future__ import annotations

import re
import string
from collections import Counter

import datasets
import evaluate


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred_tokens, ref_tokens = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = Counter(pred_tokens) & Counter(ref_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


class Squad(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Rajpurkar et al., SQuAD: 100,000+ Questions for Machine Comprehension of Text, 2016.",
            inputs_description="predictions: list of str; references: list of list of str",
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references):
        em = [max(exact_match(p, r) for r in refs) for p, refs in zip(predictions, references, strict=True)]
        f1 = [max(token_f1(p, r) for r in refs) for p, refs in zip(predictions, references, strict=True)]
        n = max(len(em), 1)
        return {
            "exact_match": sum(em) / n,
            "f1_score": sum(f1) / n,
            "per_example": [{"exact_match": e, "f1_score": f} for e, f in zip(em, f1, strict=True)],
        }
