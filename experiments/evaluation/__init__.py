"""Evaluation on the platform side: services (write), selectors (read), the API router, the Celery
task and the evaluation page. The computation itself is experiments.training.evaluation (no Django)."""
