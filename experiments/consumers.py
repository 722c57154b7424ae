"""Moved to experiments/tracking/consumers.py; this module keeps the old import path working."""

from experiments.tracking.consumers import JobConsumer  # noqa: F401
