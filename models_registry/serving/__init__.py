"""Serving registered models through OpenAI's chat and completion shapes (docs/serving.md).

api.py: the /v1/chat/completions, /v1/completions and /v1/models endpoints and the workers' reply
endpoint; services.py: the web side (model names, request checks, the round trip); worker.py and
engine.py: the serving worker (models_registry/tasks.py registers the task).
"""
