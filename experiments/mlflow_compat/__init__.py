"""MLflow-compatible tracking endpoints (/api/2.0/mlflow/...) mapped onto experiments, jobs and metric points."""
