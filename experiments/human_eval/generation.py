"""Answers to evaluation questions from one model folder (adapter or full model). Plain Python on the
evaluation engine, no Django: the Celery task calls it on a worker."""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_MAX_NEW_TOKENS = 96


def prompt_ids(tokenizer, question: str) -> list[int]:
    """A chat model gets the question as a user turn (its chat template); any other gets the raw text."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(question, add_special_tokens=True)["input_ids"]


def generate_answers(
    *,
    model_path: str,
    questions: list[str],
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    base_model: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[str]:
    """Greedy answers, one per question, in order."""
    from experiments.training.evaluation.core import generate, load_model_for_eval

    loaded = load_model_for_eval(model_path, "completion", base_model=base_model)
    answers: list[str] = []
    batch = 8
    for start in range(0, len(questions), batch):
        chunk = [prompt_ids(loaded.tokenizer, q) for q in questions[start : start + batch]]
        answers.extend(generate(loaded.model, loaded.tokenizer, chunk, max_new_tokens=max_new_tokens))
        if progress:
            progress(min(1.0, (start + len(chunk)) / len(questions)))
    return answers
