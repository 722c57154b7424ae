"""Training recipes, one per task family, on the shared components (experiments/training/components.py).

- ``causal_lm``: chat, instruction and completion data; next-token loss on the response tokens,
  padding-free packed batches with chunked (or fused) linear + cross entropy where they apply.
- ``classification``: a sequence-classification head over labelled texts; accuracy as a metric.
"""

from __future__ import annotations

from experiments.training.components import Recipe
from experiments.training.recipes.causal_lm import CausalLMRecipe
from experiments.training.recipes.classification import ClassificationRecipe
from experiments.training.spec import TrainingSpec

RECIPES: dict[str, type[Recipe]] = {
    "chat": CausalLMRecipe,
    "instruction": CausalLMRecipe,
    "completion": CausalLMRecipe,
    "classification": ClassificationRecipe,
}


def recipe_for(spec: TrainingSpec) -> type[Recipe]:
    return RECIPES[spec.task_type]


__all__ = ["RECIPES", "CausalLMRecipe", "ClassificationRecipe", "Recipe", "recipe_for"]
