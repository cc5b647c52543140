"""The README's two set-up commands work in a root shell that has no sudo (minimal images, containers).

No root needed: the commands are read from the README itself, and make's dry run (-n) shows every
command each target would run, with a PATH on which `sudo` does not exist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from conftest import REPO


def _two_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's two-commands section has no sh block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_shows_make_demo_and_make_test_without_sudo():
    assert _two_commands() == ["make demo", "make test"]
    assert "root shell" in (REPO / "README.md").read_text()


def test_targets_run_no_sudo(tmp_path):
    """Every command `make demo` and `make test` would run resolves on a PATH without sudo."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "bash", "sh"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    for command in _two_commands():
        dry = subprocess.run([*command.split(), "-n"], cwd=REPO, env=env, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
        assert not re.search(r"(^|[\s;&|(])sudo\s", dry.stdout), dry.stdout
    for script in (REPO / "scripts").glob("*.sh"):
        code = [line for line in script.read_text().splitlines() if not line.lstrip().startswith("#")]
        assert not any(re.search(r"(^|[\s;&|(])sudo\s", line) and "echo" not in line for line in code), script
