"""Knowledge-base import: a documented JSON document (schema.json) → chat or instruction samples.

Concepts become Q&A pairs ("What is LoRA?"), procedures become instruction-following samples whose
answer lists the steps, facts become retrieval questions. Each item gets several phrasings of its
question, so a model learns the knowledge rather than one wording.
"""

from __future__ import annotations

import json
from pathlib import Path

from t4dm_site.errors import InvalidInput

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "schema.json"
EXAMPLE_KB = HERE / "example_kb.json"
KNOWLEDGE_TYPES = ("all", "concepts", "procedures", "facts")
OUTPUT_FORMATS = ("chat", "instruction")

CONCEPT_QUESTIONS = (
    "What is {name}?",
    "Explain {name} in one sentence.",
    "Can you define {name}?",
    "What does {name} mean?",
    "Briefly, what is {name}?",
)
PROCEDURE_QUESTIONS = (
    "How do I {name}?",
    "What are the steps to {name}?",
    "Explain how to {name}.",
    "I want to {name}. What should I do?",
    "Walk me through how to {name}.",
)
FACT_QUESTIONS = (
    "What is the {predicate} of {subject}?",
    "Tell me the {predicate} of {subject}.",
    "Do you know the {predicate} of {subject}?",
    "Which {predicate} does {subject} have?",
)
FACT_REPHRASE = (
    "{question}",
    "Quick question: {question}",
    "Please tell me: {question}",
    "I need to know: {question}",
)


def load_knowledge(content: bytes) -> dict:
    import jsonschema

    try:
        document = json.loads(content.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InvalidInput("the knowledge base is not UTF-8 text", code="invalid_encoding") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"line {exc.lineno}: the knowledge base is not valid JSON ({exc.msg} at column {exc.colno})",
            code="invalid_json",
            details={"line": exc.lineno},
        ) from None
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        raise InvalidInput(
            f"the knowledge base does not follow the schema at {first.json_path}: {first.message}",
            code="invalid_knowledge_base",
            details={
                "errors": [{"path": e.json_path, "message": e.message} for e in errors[:50]],
                "schema": "datasets_app/knowledge/schema.json",
            },
        )
    return document


def _steps(steps: list[str]) -> str:
    return "\n".join(f"{i}. {step}" for i, step in enumerate(steps, start=1))


def knowledge_to_rows(
    document: dict, *, knowledge_type: str = "all", format: str = "chat", phrasings: int = 3
) -> tuple[list[dict], dict]:
    if knowledge_type not in KNOWLEDGE_TYPES:
        raise InvalidInput(
            f"unknown knowledge_type {knowledge_type!r}; choose one of {', '.join(KNOWLEDGE_TYPES)}",
            code="invalid_knowledge_type",
        )
    if format not in OUTPUT_FORMATS:
        raise InvalidInput(
            f"format {format!r} is not available for knowledge import; choose chat or instruction",
            code="unknown_format",
        )
    if not 1 <= phrasings <= 5:
        raise InvalidInput("phrasings must be from 1 to 5", code="invalid_phrasings")
    pairs: list[tuple[str, str, str]] = []  # (kind, question, answer)
    wanted = KNOWLEDGE_TYPES[1:] if knowledge_type == "all" else (knowledge_type,)
    if "concepts" in wanted:
        for concept in document.get("concepts", []):
            names = [concept["name"], *concept.get("aliases", [])]
            for i, template in enumerate(CONCEPT_QUESTIONS[:phrasings]):
                answer = concept["definition"]
                if concept.get("examples"):
                    answer += " For example: " + "; ".join(concept["examples"])
                pairs.append(("concept", template.format(name=names[i % len(names)]), answer))
    if "procedures" in wanted:
        for procedure in document.get("procedures", []):
            answer = _steps(procedure["steps"])
            if procedure.get("prerequisites"):
                answer = "First make sure: " + "; ".join(procedure["prerequisites"]) + ".\n" + answer
            for template in PROCEDURE_QUESTIONS[:phrasings]:
                pairs.append(("procedure", template.format(name=procedure["name"]), answer))
    if "facts" in wanted:
        for fact in document.get("facts", []):
            if fact.get("question"):
                questions = [t.format(question=fact["question"]) for t in FACT_REPHRASE[:phrasings]]
            elif fact.get("subject") and fact.get("predicate"):
                questions = [t.format(**fact) for t in FACT_QUESTIONS[:phrasings]]
            else:
                questions = [f"Is it true that {fact['statement'].rstrip('.')}?"]
            for question in questions:
                pairs.append(("fact", question, fact["statement"]))
    if not pairs:
        raise InvalidInput(
            f"the knowledge base has no {knowledge_type if knowledge_type != 'all' else 'items'} to turn into samples",
            code="empty_dataset",
        )
    system = document.get("system_prompt")
    rows = []
    for _, question, answer in pairs:
        if format == "chat":
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
            rows.append({"messages": messages})
        else:
            rows.append({"instruction": question, "input": "", "output": answer})
    counts: dict[str, int] = {}
    for kind, _, _ in pairs:
        counts[kind] = counts.get(kind, 0) + 1
    return rows, {
        "knowledge_base": document.get("name", ""),
        "knowledge_type": knowledge_type,
        "phrasings": phrasings,
        "samples_by_kind": counts,
    }
