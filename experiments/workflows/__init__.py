"""Workflows: the seed's whole fine-tuning chain (prepare → validate → configure → train → evaluate →
version → promote) as one request, each step its own Celery task over the existing services."""
