"""T4DM training engine: plain Python on torch/transformers/peft/datasets, no Django.

Entry points: ``engine.train(spec, reporter)``, ``tiny_model.build_tiny_model(dir)`` and the CLI
``python -m experiments.training``. Heavy modules are imported by those submodules, not here.
"""
