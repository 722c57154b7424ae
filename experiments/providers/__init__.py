"""API fine-tuning through outside providers: OpenAI (any OpenAI-compatible server), Anthropic (not yet)."""
