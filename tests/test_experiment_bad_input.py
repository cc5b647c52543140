"""Bad experiment files: `lab experiment run` refuses each with exit 2 and an error naming the file,
line and field at fault, and runs nothing (no namespace, no results directory).

Line numbers are counted by hand from the YAML text (line 1 is the first line of the text).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

RUN_LABS = re.compile(r"^x[0-9a-f]{4}-refused")   # the runner's lab names: x<run id>-<mode>; modes here: refused*

HEAD = """\
name: bad
repetitions: 2
modes:
  - {name: refused, topology: flannel-hostgw}
measurements:
"""
LATENCY = HEAD + "  - {kind: latency, duration: 1}\n"


def case(id, text, line, field, message, env_path=None, args=()):
    return pytest.param(dedent(text), line, field, message, env_path, list(args), id=id)


CASES = [
    case("unknown-kind", HEAD + "  - {kind: jitter}\n", 6, "measurements[0].kind", "unknown measurement kind 'jitter'"),
    case("unknown-topology", """\
        name: bad
        modes:
          - {name: refused, topology: flannel-hostgw}
          - {topology: no-such-topology}
        measurements:
          - {kind: latency}
        """, 4, "modes[1].topology", "unknown topology 'no-such-topology'"),
    case("repetitions-zero", LATENCY.replace("repetitions: 2", "repetitions: 0"), 2, "repetitions", "out of range"),
    case("repetitions-not-a-number", LATENCY.replace("repetitions: 2", "repetitions: five"), 2, "repetitions",
         "expected integer"),
    case("unknown-top-level-key", LATENCY + "colour: blue\n", 7, "colour", "unknown key 'colour'"),
    case("baseline-not-a-mode", LATENCY + "baseline: calico-bgp\n", 7, "baseline", "is not one of the modes"),
    case("mode-twice", """\
        name: bad
        modes:
          - {name: refused, topology: flannel-hostgw}
          - {name: refused, topology: flannel-vxlan}
        measurements:
          - {kind: latency}
        """, 4, "modes[1].name", "listed twice"),
    case("bad-parameter-value", HEAD + "  - kind: latency\n    duration: 0\n", 7, "measurements[0].duration",
         "out of range"),
    case("unknown-parameter", HEAD + "  - {kind: throughput, streamz: 4}\n", 6, "measurements[0].streamz",
         "unknown key 'streamz'"),
    case("cross-subnet-without-racks", LATENCY + "placements: [same-node, cross-subnet]\n", 7, "placements",
         "cross-subnet needs nodes on two networks"),
    case("quick-unknown-mode", LATENCY + "quick:\n  modes: [calico-vxlan]\n", 8, "quick.modes[0]",
         "'calico-vxlan' is not one of the modes"),
    case("yaml-syntax", HEAD + "  - {kind: latency, duration: 1\n", 6, "", "not valid YAML"),
    case("missing-measurements", "name: bad\nmodes:\n  - {name: refused, topology: flannel-hostgw}\n", 1, "",
         "missing required key 'measurements'"),
    case("unknown-protocol", HEAD + "  - {kind: latency, protocols: [icmp, sctp]}\n", 6,
         "measurements[0].protocols[1]", "'sctp' is not one of"),
    case("missing-tool", HEAD + "  - {kind: latency}\n  - {kind: throughput}\n", 7, "measurements[1].kind",
         "throughput needs iperf3, which is not on PATH", env_path="no-iperf3"),
]


def tool_dir_without(tmp_path: Path, missing: str) -> str:
    """A PATH directory with the runner's tools but not `missing`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "ss", "ping", "sockperf", "tcpdump", "iperf3"):
        where = shutil.which(tool)
        if where and tool != missing:
            (bin_dir / tool).symlink_to(where)
    return str(bin_dir)


def run_nothing_ran(tmp_path: Path, text: str, env_path: str | None, args: list[str]
                    ) -> tuple[subprocess.CompletedProcess, Path]:
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    out = tmp_path / "results"
    env = dict(os.environ)
    if env_path == "no-iperf3":
        env["PATH"] = tool_dir_without(tmp_path, "iperf3")
    before = {n for n in _netns() if RUN_LABS.match(n)}
    done = subprocess.run([sys.executable, "-m", "lab.cli", "experiment", "run", str(path), "--out", str(out), *args],
                          capture_output=True, text=True, env=env, timeout=120)
    assert {n for n in _netns() if RUN_LABS.match(n)} <= before, "a namespace was created"
    assert not out.exists(), "a results directory was created for a refused experiment"
    return done, path


def _netns() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


@pytest.mark.parametrize("text, line, field, message, env_path, args", CASES)
def test_bad_experiment_is_refused_with_file_line_and_field(tmp_path, text, line, field, message, env_path, args):
    done, path = run_nothing_ran(tmp_path, text, env_path, args)
    assert done.returncode == 2, done.stdout + done.stderr
    first = done.stderr.splitlines()[0]
    where = f"lab: error: {path}:{line}: " + (f"{field}: " if field else "")
    assert first.startswith(where), f"expected {where!r}, got {first!r}"
    assert message in first, first
    assert "hint:" in done.stderr or field == "", done.stderr


def test_repeat_zero_is_refused(tmp_path):
    done, _ = run_nothing_ran(tmp_path, dedent(LATENCY), None, ["--repeat", "0"])
    assert done.returncode == 2
    assert "--repeat 0" in done.stderr and "at least 1" in done.stderr


def test_only_unknown_mode_is_refused(tmp_path):
    done, _ = run_nothing_ran(tmp_path, dedent(LATENCY), None, ["--only", "calico-ipip"])
    assert done.returncode == 2
    assert "no mode named 'calico-ipip'" in done.stderr and "refused" in done.stderr


def test_a_topology_that_does_not_load_names_the_experiment_line(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: broken\ncluster: {cni: weave}\nnetworks: []\nnodes: []\n")
    text = "name: bad\nmodes:\n  - {name: refused, topology: broken.yaml}\nmeasurements:\n  - {kind: latency}\n"
    done, path = run_nothing_ran(tmp_path, text, None, [])
    assert done.returncode == 2
    assert done.stderr.startswith(f"lab: error: {path}:3: modes[0].topology: the topology does not load: "), done.stderr
    assert "broken.yaml" in done.stderr
