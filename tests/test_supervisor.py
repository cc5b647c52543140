"""The supervisor's restart schedule, without root: kubelet's CrashLoopBackOff.

Kubernetes documents it (Pod Lifecycle, "Container restarts"): after the first restart, the kubelet waits
10 s, then doubles the delay (20 s, 40 s, ...) up to 300 s, and resets it once a container has run for
10 minutes without a problem. The live restarts are in tests/test_faults.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from lab.netns.supervisor import Backoff, DaemonSpec


def test_first_restart_is_immediate_then_10_s_doubling_to_300_s():
    backoff = Backoff()
    delays = [backoff.next_delay(ran_for=1.0) for _ in range(9)]
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300, 300]


def test_ten_minutes_of_running_forgets_the_back_off():
    backoff = Backoff()
    for _ in range(5):
        backoff.next_delay(ran_for=1.0)
    assert backoff.next_delay(ran_for=599.0) == 160
    assert backoff.next_delay(ran_for=600.0) == 0
    assert backoff.next_delay(ran_for=1.0) == 10


def test_a_spec_comes_back_whole_from_the_json_file_the_supervisor_reads():
    """`start` writes the specs as JSON, which turns tuples into lists; `from_dict` must give back the same
    spec (tuples: `ready` is unpacked as a pair, `argv` passed to Popen), or a restart would differ from `lab up`."""
    spec = DaemonSpec(name="bird/n1", netns="x.n1", argv=("bird", "-d"), log="/tmp/bird.log",
                      ready=("socket", "/tmp/bird.ctl"), cwd="/tmp", env={"A": "1"}, clean=("/tmp/bird.ctl",),
                      pid_file="/tmp/b.pid", node="n1", pid=42)
    data = json.loads(json.dumps({"daemons": [asdict(spec)]}))["daemons"][0]
    assert data["argv"] == ["bird", "-d"] and data["ready"] == ["socket", "/tmp/bird.ctl"]
    back = DaemonSpec.from_dict(data)
    assert back == spec
    assert isinstance(back.argv, tuple) and isinstance(back.ready, tuple) and isinstance(back.clean, tuple)


def test_a_spec_with_only_the_required_fields_gets_the_defaults():
    back = DaemonSpec.from_dict({"name": "probe/p1", "netns": "x.p1", "argv": ["srv"], "log": "/tmp/p.log",
                                 "ready": ["none", ""]})
    assert back == DaemonSpec(name="probe/p1", netns="x.p1", argv=("srv",), log="/tmp/p.log")
    assert (back.cwd, back.env, back.clean, back.pid_file, back.node, back.pid) == (None, {}, (), None, None, None)
