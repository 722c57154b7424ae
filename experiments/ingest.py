"""Moved to experiments/tracking/ingest.py; this module keeps the old import path working."""

from experiments.tracking.ingest import (  # noqa: F401
    MAX_STEP,
    METRIC_KEY,
    IngestResult,
    PointIn,
    metric_points_ingest,
    metric_points_ingest_body,
    parse_points,
    rollup_merge,
)
