"""The Vagrantfile is valid (checked without any provider installed)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import REPO


def test_vagrantfile_validates():
    if not shutil.which("vagrant"):
        pytest.skip("vagrant is not installed (make test installs it)")
    result = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout
