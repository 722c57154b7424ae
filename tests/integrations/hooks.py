"""Real validator hooks for the tests, named by T4DM_VALIDATOR_HOOK="tests.integrations.hooks:<name>"."""

from __future__ import annotations

CALLS: list[tuple[str, dict]] = []


def flag_short_answers(kind: str, payload: dict) -> dict:
    """Datasets: an error for any assistant answer under 12 characters. Outputs: pass if non-empty."""
    CALLS.append((kind, payload))
    if kind == "dataset":
        issues = []
        for row in payload["rows"]:
            answer = row["data"]["messages"][-1]["content"] if row["data"].get("messages") else ""
            if len(answer) < 12:
                issues.append(
                    {
                        "severity": "error",
                        "code": "answer_too_short",
                        "row": row["row"],
                        "message": f"answer {answer!r} is too short",
                    }
                )
        return {"issues": issues}
    return {
        "verdicts": [
            {"index": s["index"], "passed": bool(s["output"].strip()), "score": len(s["output"])}
            for s in payload["samples"]
        ]
    }


def broken(kind: str, payload: dict) -> dict:
    raise RuntimeError("the knowledge service is down")
