"""Moved to experiments/tracking/live.py; this module keeps the old import path working."""

from experiments.tracking.live import broadcast, broadcast_on_commit, job_group  # noqa: F401
