"""`lab down` with no lab up is not an error (this module brings no lab up)."""

from __future__ import annotations

import pytest
from conftest import run_lab

pytestmark = pytest.mark.needs_root


def test_down_without_a_lab_is_not_an_error():
    assert "no lab is up" in run_lab("list").stdout, "another test left a lab up"
    result = run_lab("down")
    assert result.returncode == 0
    assert "no lab is up; nothing to remove" in result.stdout
