"""Corpus perplexity from per-example token negative log-likelihoods summed over target tokens.

    perplexity = exp( Σ_i Σ_{t ∈ target(i)} −log p(x_t | x_<t)  /  Σ_i |target(i)| )

Target tokens are the ones a training run learns (labels ≠ -100 after the usual one-token shift:
assistant turns for chat, the response for instruction/completion rows). The engine computes each
example's NLL sum in float64 from the model's logits; this module only aggregates, token-weighted.
"""

from __future__ import annotations

import math

import datasets
import evaluate


class Perplexity(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="nll_sum: per-example sum of target-token NLL (nats); target_tokens: their counts",
            features=datasets.Features(
                {"nll_sum": datasets.Value("float64"), "target_tokens": datasets.Value("int64")}
            ),
        )

    def _compute(self, nll_sum, target_tokens):
        tokens = int(sum(target_tokens))
        if tokens == 0:
            raise ValueError("perplexity: no target tokens to score")
        mean_nll = math.fsum(nll_sum) / tokens
        return {"perplexity": math.exp(mean_nll), "mean_nll": mean_nll, "target_tokens": tokens}
