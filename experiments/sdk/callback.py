"""Moved to the client package: t4dm.callback."""

from t4dm.callback import T4DMCallback  # noqa: F401
