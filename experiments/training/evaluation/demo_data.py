"""The shipped labelled demo set for classification (corpus/classification_topics.jsonl), generated
deterministically from templates: short sentences about four topics, text/label rows."""

from __future__ import annotations

import json
import random
from pathlib import Path

CORPUS_FILE = Path(__file__).resolve().parent.parent / "corpus" / "classification_topics.jsonl"

TOPICS: dict[str, dict[str, list[str]]] = {
    "sports": {
        "subject": [
            "The striker",
            "Our goalkeeper",
            "The home team",
            "The coach",
            "The young sprinter",
            "The tennis champion",
            "The rugby squad",
            "The cyclist",
            "The referee",
            "The captain",
        ],
        "verb": [
            "scored twice in",
            "was injured during",
            "celebrated after",
            "trained hard for",
            "was sent off in",
            "lost narrowly in",
            "dominated",
            "prepared all week for",
        ],
        "object": [
            "the cup final",
            "the derby",
            "the league match",
            "the marathon",
            "the relay race",
            "the championship game",
            "the penalty shootout",
            "the season opener",
        ],
    },
    "cooking": {
        "subject": [
            "The chef",
            "My grandmother",
            "The baker",
            "The pastry cook",
            "Our neighbour",
            "The restaurant kitchen",
            "The student",
            "The food blogger",
            "The caterer",
            "Dad",
        ],
        "verb": ["simmered", "baked", "seasoned", "roasted", "whisked", "marinated", "chopped", "fried"],
        "object": [
            "the tomato sauce",
            "a loaf of sourdough",
            "the vegetable soup",
            "the chicken with garlic",
            "the pancake batter",
            "the onions and peppers",
            "a chocolate cake",
            "the risotto",
        ],
    },
    "computing": {
        "subject": [
            "The developer",
            "The database server",
            "Our laptop",
            "The compiler",
            "The sysadmin",
            "The web browser",
            "The operating system",
            "The programmer",
            "The cloud cluster",
            "The app",
        ],
        "verb": [
            "crashed while running",
            "recompiled",
            "deployed",
            "debugged",
            "installed an update for",
            "optimised",
            "rebooted after",
            "downloaded",
        ],
        "object": [
            "the kernel module",
            "the Python script",
            "the SQL query",
            "the software package",
            "the memory leak",
            "the network driver",
            "the source code",
            "the encrypted backup",
        ],
    },
    "weather": {
        "subject": [
            "The forecast",
            "A cold front",
            "The storm",
            "Heavy rain",
            "The meteorologist",
            "A heatwave",
            "Thick fog",
            "The hurricane",
            "Strong wind",
            "The snowfall",
        ],
        "verb": [
            "is expected over",
            "swept across",
            "flooded",
            "brought thunder to",
            "will reach",
            "lingered above",
            "warned residents of",
            "cooled down",
        ],
        "object": [
            "the coastal towns",
            "the northern valleys",
            "the mountains tonight",
            "the city this weekend",
            "the islands",
            "the farmland",
            "the lake region",
            "the airport runway",
        ],
    },
}


def generate_rows(*, per_label: int = 80, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, parts in TOPICS.items():
        seen: set[str] = set()
        while len(seen) < per_label:
            text = (
                f"{rng.choice(parts['subject'])} {rng.choice(parts['verb'])} {rng.choice(parts['object'])}."
            )
            if text not in seen:
                seen.add(text)
                rows.append({"text": text, "label": label})
    rng.shuffle(rows)
    return rows


def write_classification_topics(path: Path = CORPUS_FILE, **kwargs) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in generate_rows(**kwargs)), encoding="utf-8")
    return path
