"""BLEU with sacrebleu: corpus BLEU (one reference per example) and sentence BLEU per example, both /100."""

from __future__ import annotations

import datasets
import evaluate
from sacrebleu.metrics import BLEU


class Bleu(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="sacrebleu corpus BLEU (13a tokenizer, exp smoothing) divided by 100, so 0–1; "
            "per example: sentence BLEU with effective order, /100.",
            citation="Post, A Call for Clarity in Reporting BLEU Scores, WMT 2018.",
            inputs_description="predictions: list of str; references: list of str (one reference each)",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        corpus_bleu = BLEU()
        corpus = corpus_bleu.corpus_score(list(predictions), [list(references)])
        sentence_bleu = BLEU(effective_order=True)
        per_example = [
            sentence_bleu.sentence_score(p, [r]).score / 100
            for p, r in zip(predictions, references, strict=True)
        ]
        return {
            "bleu": corpus.score / 100,
            "per_example": per_example,
            "signature": str(corpus_bleu.get_signature()),
        }
