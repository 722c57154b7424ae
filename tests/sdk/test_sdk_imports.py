"""The SDK runs outside the platform: importing it (and its callback) must not import Django."""

from __future__ import annotations

import subprocess
import sys


def test_the_sdk_does_not_import_django():
    code = (
        "import sys; import experiments.sdk; from experiments.sdk import T4DM, T4DMCallback; "
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if m.startswith('django'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_errors_carry_the_servers_code_and_message():
    from experiments.sdk import T4DMError

    error = T4DMError(
        404, {"error": {"code": "not_found", "message": "job job-009 does not exist", "details": None}}
    )
    assert (error.status, error.code, error.message) == (404, "not_found", "job job-009 does not exist")
    assert "job-009" in str(error)
