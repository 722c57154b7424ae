"""An OpenAI-compatible fine-tuning API (/v1/files, /v1/fine_tuning/jobs) backed by local training."""
