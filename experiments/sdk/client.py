"""Moved to the client package: t4dm.client."""

from t4dm.client import T4DM, TERMINAL, T4DMError  # noqa: F401
