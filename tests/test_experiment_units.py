"""Root-free parts of lab/experiment: the quick profile, pod placement, the results directory, the pcap
reader, the built-in ping-pong and connect-rate tools on loopback. Expected values are computed by hand."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from textwrap import dedent

import pytest

from lab.experiment import labs, pingpong, proc, recorder, spec
from lab.experiment.kinds import mtu, registry
from lab.topology import loader
from lab.topology import registry as topologies


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "experiment.yaml"
    path.write_text(dedent(text))
    return str(path)


EXPERIMENT = """\
    name: units
    baseline: hostgw
    repetitions: 5
    warmup: 2
    modes:
      - {name: hostgw, topology: flannel-hostgw}
      - {name: vxlan, topology: flannel-vxlan}
    measurements:
      - {kind: latency, duration: 3}
      - {kind: throughput, name: tput, duration: 4}
    quick:
      modes: [vxlan]
      repetitions: 2
      warmup: 0
      skip: [tput]
      measurements:
        latency: {duration: 1, protocols: [icmp]}
    """


def test_full_profile_fills_in_defaults(tmp_path):
    experiment = spec.load(write(tmp_path, EXPERIMENT))
    assert (experiment.repetitions, experiment.warmup) == (5, 2)
    assert [m.name for m in experiment.modes] == ["hostgw", "vxlan"]
    latency = experiment.measurements[0]
    assert latency.params["duration"] == 3
    assert latency.params["protocols"] == ["icmp", "tcp", "udp"]          # the kind's default
    assert experiment.measurements[1].name == "tput" and experiment.measurements[1].params["streams"] == 4
    assert experiment.baseline == "hostgw"


def test_quick_profile_overrides(tmp_path):
    experiment = spec.load(write(tmp_path, EXPERIMENT), quick=True)
    assert (experiment.repetitions, experiment.warmup) == (2, 0)
    assert [m.name for m in experiment.modes] == ["vxlan"]
    assert [m.name for m in experiment.measurements] == ["latency"]
    assert experiment.measurements[0].params["duration"] == 1
    assert experiment.measurements[0].params["protocols"] == ["icmp"]
    assert experiment.baseline is None                                     # not among the quick modes


def test_repeat_and_only(tmp_path):
    experiment = spec.load(write(tmp_path, EXPERIMENT), repeat=7, only=["hostgw"])
    assert experiment.repetitions == 7
    assert [m.name for m in experiment.modes] == ["hostgw"]


def test_every_kind_is_registered():
    assert {"latency", "throughput", "cpu", "mtu", "connrate", "policy-scale", "bgp-convergence",
            "rr-migration"} <= set(registry())


def test_pods_are_placed_on_the_topologys_racks():
    topology = loader.load(topologies.resolve("calico-ipip-crosssubnet"))
    nodes = labs.choose_nodes(topology, ("same-node", "cross-node", "cross-subnet"))
    # topologies/calico-ipip-crosssubnet.yaml: k8s-master01, k8s-node01 on rack1; k8s-node02, k8s-node03 on rack2
    assert (nodes["a"].name, nodes["c"].name, nodes["d"].name) == ("k8s-master01", "k8s-node01", "k8s-node02")
    chosen = labs.choose_nodes(topology, ("cross-node",), {"a": "k8s-node02", "c": "k8s-node03"})
    assert (chosen["a"].name, chosen["c"].name) == ("k8s-node02", "k8s-node03")
    with pytest.raises(ValueError):
        labs.choose_nodes(topology, ("cross-node",), {"a": "k8s-node01", "c": "k8s-node02"})


def test_lab_copy_has_its_own_name_and_the_experiment_pods(tmp_path):
    source = topologies.resolve("flannel-vxlan")
    topology = loader.load(source)
    copy = labs.make_copy(topology, source, Path(source).read_text(), "vxlan", labs.lab_name("beef", "vxlan"),
                          ("same-node", "cross-node"), tmp_path)
    assert copy.lab == "xbeef-vxlan" and copy.topology.name == "xbeef-vxlan"
    pods = {p.key: p for p in copy.topology.pods}
    assert pods["default/xp-a"].node == pods["default/xp-b"].node != pods["default/xp-c"].node
    assert {p.key for p in topology.pods} < set(pods)                     # the topology's own pods stay
    assert copy.pair_text("cross-node") == "default/xp-a->default/xp-c"


def test_results_directories_never_overwrite(tmp_path):
    now = time.time()
    first = recorder.new_directory(tmp_path, "units", now)
    second = recorder.new_directory(tmp_path, "units", now)
    assert first.name == time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    assert second.name == first.name + "-2"


def test_percentile_by_hand():
    values = [10.0, 20.0, 30.0, 40.0]
    assert proc.percentile(values, 50) == 25.0        # halfway between 20 and 30
    assert proc.percentile(values, 90) == pytest.approx(37.0)   # rank 2.7: 30 + 0.7 * 10
    assert proc.percentile(values, 0) == 10.0 and proc.percentile(values, 100) == 40.0


def pcap(frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for frame in frames:
        out += struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame
    return out


def ethernet_ip(total_length: int) -> bytes:
    return b"\x00" * 12 + b"\x08\x00" + bytes([0x45, 0]) + struct.pack("!H", total_length) + b"\x00" * 16


def test_pcap_ip_lengths(tmp_path):
    arp = b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28
    path = tmp_path / "c.pcap"
    path.write_bytes(pcap([ethernet_ip(1078), arp, ethernet_ip(1028)]))
    assert mtu.ip_lengths(str(path)) == [1078, 1028]


@pytest.fixture
def echo_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "lab.experiment.pingpong", "server", "--proto", "tcp",
                               "--port", str(port)])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    server.terminate()
    server.wait()


def test_builtin_tcp_rr_and_crr_on_loopback(echo_server):
    result = pingpong.rr("tcp", "127.0.0.1", echo_server, 0.3, 64)
    assert len(result["rtt_us"]) > 10 and all(v > 0 for v in result["rtt_us"])
    crr = pingpong.crr("127.0.0.1", echo_server, 0.3)
    assert crr["connections"] > 10 and crr["failures"] == 0
    assert json.loads(json.dumps(crr))["seconds"] >= 0.3


# ---- experiment.schema.json: per-kind parameters for editors ------------------------------------------

def _editor_errors(data: dict) -> list[str]:
    """What an editor's JSON-schema validator says about `data`, given the shipped schema file."""
    import jsonschema
    schema = json.loads((Path(spec.__file__).parent / "experiment.schema.json").read_text())
    return [error.message for error in jsonschema.Draft202012Validator(schema).iter_errors(data)]


def test_schema_file_is_generated_from_the_registry():
    from lab.experiment import schema
    assert (Path(spec.__file__).parent / "experiment.schema.json").read_text() == schema.render(schema.generated()), \
        "experiment.schema.json is stale: run python -m lab.experiment.schema --write"


def test_schema_file_checks_each_kinds_parameters():
    base = {"name": "x", "modes": [{"topology": "flannel-hostgw"}]}
    for path in sorted(Path(spec.__file__).parents[2].joinpath("experiments").glob("*.yaml")):
        import yaml
        assert _editor_errors(yaml.safe_load(path.read_text())) == [], path
    # parameters that belong to another kind, a value outside a kind's enum, an unknown kind
    assert _editor_errors({**base, "measurements": [{"kind": "latency", "streams": 4}]})
    assert _editor_errors({**base, "measurements": [{"kind": "rr-migration", "order": "fast"}]})
    assert _editor_errors({**base, "measurements": [{"kind": "latenzy"}]})
    assert _editor_errors({**base, "measurements": [{"kind": "throughput", "streams": 4, "name": "t",
                                                     "placements": ["cross-node"]}]}) == []


def test_loader_still_names_file_line_for_unknown_parameter(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("name: x\nmodes: [{topology: flannel-hostgw}]\nmeasurements:\n  - {kind: latency, streams: 4}\n")
    with pytest.raises(Exception) as info:
        spec.load(str(path))
    assert f"{path}:4" in str(info.value) and "streams" in str(info.value)


def test_raw_rtts_are_capped_keeping_the_distribution():
    from lab.experiment.kinds import latency
    values = [float(i) for i in range(10001)]
    kept = latency.capped(values, 2000)
    assert len(kept) == 2000 and kept[0] == 0.0 and kept[-1] == 10000.0
    assert abs(proc.percentile(kept, 50) - 5000.0) <= 5 and abs(proc.percentile(kept, 99) - 9900.0) <= 5
    assert latency.capped(values[:10], 2000) == values[:10]


def test_peer_sessions_up_needs_a_bgppeer_session_and_all_established():
    from lab.experiment.kinds import rr_migration
    assert not rr_migration.peer_sessions_up({"Mesh_10_0_0_2": "Established"})
    assert not rr_migration.peer_sessions_up({"Mesh_10_0_0_2": "Established", "Node_10_0_0_3": "Active"})
    assert rr_migration.peer_sessions_up({"Mesh_10_0_0_2": "Established", "Node_10_0_0_3": "Established"})
