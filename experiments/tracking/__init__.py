"""Tracking: the path of a metric point from whoever measured it to the browser.

- `ingest.py` — the one writer of metric points (worker ingest, SDK, MLflow-compatible API): batches
  checked and stored idempotently on (job, key, step), rollups kept in the same transaction, the new
  points broadcast after commit.
- `series.py` — reads: a job's series for the chart and the websocket snapshot, exact or downsampled
  (first/last/min/max per bucket, each at its own step) from the rollups.
- `live.py` — broadcasts to a job's websocket group, after commit.
- `consumers.py` — the job websocket: snapshot from `series`, then the live points, resumable by id.

The old module paths (experiments.ingest, experiments.live, experiments.consumers and the series
functions in experiments.selectors) re-export these names.
"""
