"""ROUGE with rouge-score: mean F-measure over examples of rouge1, rouge2, rougeL and rougeLsum.

rougeLsum treats newlines as sentence boundaries (rouge-score's own behaviour; nltk's sentence
splitter is not used). Porter stemming on. No bootstrap aggregation: a plain mean, deterministic.
"""

from __future__ import annotations

import datasets
import evaluate
from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


class Rouge(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Lin, ROUGE: A Package for Automatic Evaluation of Summaries, 2004.",
            inputs_description="predictions: list of str; references: list of str",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
        scores = [scorer.score(r, p) for p, r in zip(predictions, references, strict=True)]
        n = max(len(scores), 1)
        result = {t: sum(s[t].fmeasure for s in scores) / n for t in ROUGE_TYPES}
        result["per_example"] = [{t: s[t].fmeasure for t in ROUGE_TYPES} for s in scores]
        return result
