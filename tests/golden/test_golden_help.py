"""Golden CLI surface (no root): `lab --help`, every `lab <command> --help`, and how misuse is refused,
compared with tests/golden/help/<case>.txt (stdout, stderr and the exit code).

The help texts are formatted 100 columns wide (COLUMNS=100) by this Python's argparse. After an
intended change of the CLI: `LAB_GOLDEN_UPDATE=1 python -m pytest tests/golden`, then review the diff.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import pytest

from lab import cli

SNAPSHOTS = Path(__file__).resolve().parent / "help"
UPDATE = os.environ.get("LAB_GOLDEN_UPDATE") == "1"
COMMANDS = ["up", "wait", "down", "list", "status", "exec", "shell", "ping", "apply", "delete", "label", "probe",
            "policy", "birdc", "calicoctl", "bgp", "graph", "capture", "trace", "impair", "fault", "report",
            "mininet", "topologies", "experiment", "cleanup"]
CASES = {"lab": ["--help"]} | {f"lab-{c}": [c, "--help"] for c in COMMANDS} | {
    "lab-experiment-run": ["experiment", "run", "--help"],
    "lab-bgp-monitor": ["bgp", "monitor", "--help"],
    "lab-bgp-announce": ["bgp", "announce", "--help"],
    # misuse: argparse's usage line and message, exit 2, before anything is loaded
    "error-no-command": [],
    "error-unknown-command": ["bogus"],
    "error-up-no-topology": ["up"],
    "error-up-bad-timeout": ["up", "x", "--timeout", "-1"],
    "error-label-bad-kind": ["label", "deployment", "x", "a=b"],
    "error-probe-bad-protocol": ["probe", "--protocol", "icmp"],
    "error-experiment-no-action": ["experiment"],
    "error-ping-bad-count": ["ping", "a", "b", "-c", "many"],
    "error-fault-bad-action": ["fault", "crash", "n1"],
}


def run(argv: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return f"$ lab {' '.join(argv)}\n# exit {code}\n# stdout\n{out}# stderr\n{err}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_surface_matches_its_snapshot(case, capsys, monkeypatch):
    text = run(CASES[case], capsys, monkeypatch)
    snapshot = SNAPSHOTS / f"{case}.txt"
    if UPDATE:
        snapshot.write_text(text, encoding="utf-8")
        return
    expected = snapshot.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "snapshot", "now"))
        pytest.fail(f"`lab {' '.join(CASES[case])}` differs from {snapshot.name} (intended? regenerate with "
                    f"LAB_GOLDEN_UPDATE=1 python -m pytest tests/golden):\n{diff}")


def test_every_command_has_a_help_snapshot(capsys, monkeypatch):
    """A command added to the CLI is added to COMMANDS (and so snapshotted); none disappears."""
    text = run(["bogus"], capsys, monkeypatch)
    listed = re.search(r"\(choose from (.*)\)", text)
    assert listed, text
    assert re.findall(r"'([a-z]+)'", listed.group(1)) == COMMANDS
    assert {p.stem for p in SNAPSHOTS.glob("*.txt")} == set(CASES)
