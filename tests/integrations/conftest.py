from __future__ import annotations

import pytest

from tests.integrations.receiver import Receiver


@pytest.fixture
def receiver():
    started = Receiver().start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def admin(make_user):
    return make_user("ada", role="admin")


# The registry's fixtures: a job that really trained the tiny model, moved to succeeded.
from tests.models_registry.conftest import (  # noqa: E402, F401
    finished_evaluation,
    make_config,
    succeeded_job,
    trained_final,
)
