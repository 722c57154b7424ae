"""Events for other systems: signed webhooks, the pluggable validator hook, knowledge-store metadata."""
