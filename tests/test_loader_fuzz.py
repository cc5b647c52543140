"""Property-based fuzzing of the pure topology loader (no root, no kernel).

The loader's contract: any byte string in, either a Topology or a LabError out, the error naming
the file and the line at fault, within bounded time (lab/topology/yamlsource.py). Inputs:
  * structural mutations (a key deleted, a value replaced by another JSON-like value, a value
    wrapped in a list, a key added) of every shipped topology, and of every example NetworkPolicy
    and Calico resource placed in a topology that can take it;
  * text mutations of the same files: bytes inserted, deleted or replaced, including YAML's own
    syntax (anchors, aliases, merge keys, tags, brackets), control characters and non-UTF-8 bytes;
  * random byte strings;
  * text mutations of the example manifests applied to a running lab's model, as `lab apply -f`
    reads them (lab.live.read_manifests, then the loader with the lab's overlay).

`make test` runs the fixed-seed profile (`ci`: derandomized, a few hundred examples); `make fuzz`
runs `LAB_FUZZ_PROFILE=long` for thousands. Each example has a generous deadline, so a slow input
fails the test as a finding, while wall-clock noise on a shared machine does not.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lab import live
from lab.errors import LabError
from lab.topology import entries, loader
from lab.topology.model import Topology

REPO = Path(__file__).resolve().parents[1]
TOPOLOGIES = sorted((REPO / "topologies").glob("*.yaml"))
POLICIES = sorted((REPO / "examples" / "policies").glob("*.yaml"))
CALICO = sorted((REPO / "examples" / "calico").glob("*.yaml"))

settings.register_profile("ci", max_examples=300, derandomize=True, database=None,
                          deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=3000, deadline=timedelta(seconds=10),
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("LAB_FUZZ_PROFILE", "ci"))

# Errors about the whole file, which has no line to blame.
WHOLE_FILE = ("the file is empty", "is not a regular file", "bytes or more", "cannot read", "holds no manifest")


def _host(kind: str) -> dict[str, Any]:
    """A topology that every example of `kind` (policy or calico) fits into."""
    if kind == "policy":
        base = yaml.safe_load((REPO / "topologies" / "netpol-xyz-kuberouter.yaml").read_text())
        base["namespaces"] = base.get("namespaces", []) + [{"name": n} for n in ("nsa", "nsb", "data")
                                                           if n not in {x["name"] for x in base.get("namespaces", [])}]
        return base
    return yaml.safe_load((REPO / "topologies" / "calico-rr.yaml").read_text())


def _impaired() -> dict[str, Any]:
    """flannel-vxlan with link impairments on its network and a node (no shipped topology has them)."""
    data = yaml.safe_load((REPO / "topologies" / "flannel-vxlan.yaml").read_text())
    data["networks"][0]["impair"] = {"rate": "100mbit", "delay": "20ms", "jitter": "5ms", "loss": "1%"}
    data["nodes"][0]["impair"] = {"delay": "1ms"}
    return data


def _seeds() -> list[tuple[str, dict[str, Any]]]:
    """(name, topology data) for every shipped topology, one with impairments, and every example
    placed in a host."""
    seeds = [(path.name, yaml.safe_load(path.read_text())) for path in TOPOLOGIES]
    seeds.append(("impaired", _impaired()))
    for kind, paths in (("policy", POLICIES), ("calico", CALICO)):
        for path in paths:
            host = _host(kind)
            added = [d for d in yaml.safe_load_all(path.read_text()) if d]
            names = {(d.get("kind"), d.get("metadata", {}).get("name")) for d in added}
            kept = [r for r in host.get("resources", [])
                    if (r.get("kind"), (r.get("metadata") or {}).get("name")) not in names]
            host["resources"] = kept + added
            seeds.append((path.name, host))
    return seeds


SEEDS = _seeds()
SEED_TEXTS = [path.read_bytes() for path in TOPOLOGIES] + [
    yaml.safe_dump(data, sort_keys=False).encode() for name, data in SEEDS[len(TOPOLOGIES):]]

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True), st.text(max_size=30),
                    st.sampled_from(["", "default", "10.0.0.1", "10.0.0.0/255.0.0.0", "10.244.1.2/4", "/0.255.255.255",
                                     "all()", "((((a == 'b'", "x" * 300, "off", "1.10", "017", "TCP", "k8s-node01",
                                     "projectcalico.org/v3", "networking.k8s.io/v1", "List", "Pod", "IPPool",
                                     "169.254.0.0/16", "127.0.0.0/8", "64512.10", "192.168.10.1:x"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, prefix + (index,))
    return found


def _mutate(data: Any, path: tuple, how: str, value: Any) -> Any:
    """`data` with the node at `path` deleted, replaced, wrapped in a list, or given an extra key."""
    if not path:
        return value if how == "replace" else [data] if how == "wrap" else data
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if how == "delete":
        del parent[last]
    elif how == "replace":
        parent[last] = value
    elif how == "wrap":
        parent[last] = [parent[last]]
    elif how == "add" and isinstance(parent[last], dict):
        parent[last]["x-" + str(value)[:10]] = value
    return data


@st.composite
def structural(draw) -> bytes:
    """A seed with one to three structural mutations, as YAML."""
    name, seed = draw(st.sampled_from(SEEDS))
    data = yaml.safe_load(yaml.safe_dump(seed))        # a fresh copy
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["delete", "replace", "replace", "wrap", "add"]))
        data = _mutate(data, path, how, draw(values))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()


YAML_BITS = [b"&a ", b"*a", b"<<: *a\n", b"!!int ", b"!!float ", b"!!set ", b"!!binary ", b"!!timestamp ", b"[", b"]",
             b"{", b"}", b": ", b"- ", b"\n  ", b"'", b'"', b"\x00", b"\x01", b"\x1b", b"\xff", b"\xc3",
             b"\xef\xbb\xbf",
             b"---\n", b"#", b"~", b"on", b"1.10", b"&b [*a, *a, *a, *a, *a, *a, *a, *a]", b"\t", b"%YAML 1.1\n"]


@st.composite
def textual(draw) -> bytes:
    """A seed's text with up to six byte-level edits."""
    data = bytearray(draw(st.sampled_from(SEED_TEXTS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.one_of(st.sampled_from(YAML_BITS), st.binary(min_size=1, max_size=4)))
        if how == "insert":
            data[at:at] = piece
        elif how == "delete":
            data[at:at + draw(st.integers(1, 40))] = b""
        else:
            data[at:at + len(piece)] = piece
    return bytes(data)


def _check(content: bytes, host: dict | None = None) -> None:
    """Only a Topology or a LabError naming the file (and a line, unless it is about the whole file).
    With `host`, `content` is a manifest file applied to a lab of that topology."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "topo.yaml")
        with open(path, "wb") as handle:
            handle.write(content)
        try:
            if host is None:
                result = loader.load(path)
            else:
                lab = os.path.join(tmp, "lab.yaml")
                Path(lab).write_text(yaml.safe_dump(host, sort_keys=False))
                documents = tuple(live.read_manifests(path).documents)
                result = loader.load(lab, entries.Overlay(documents=documents))
        except LabError as exc:
            text = str(exc)
            if any(part in text for part in WHOLE_FILE):
                assert text.startswith(path), text
            else:
                assert re.match(rf"{re.escape(tmp)}/[^:]+:\d+: ", text), f"no file:line in {text!r}"
            assert len(text) < 2000, "errors must cut huge values"
            event("refused with a LabError")
            return
        assert isinstance(result, Topology)
        event("loaded")


@given(structural())
def test_structural_mutations_give_a_model_or_a_precise_error(content: bytes) -> None:
    _check(content)


@given(textual())
def test_text_mutations_give_a_model_or_a_precise_error(content: bytes) -> None:
    _check(content)


@given(st.binary(max_size=400))
def test_random_bytes_give_a_model_or_a_precise_error(content: bytes) -> None:
    _check(content)


@st.composite
def applied(draw) -> tuple[bytes, dict]:
    """An example manifest's text with up to four byte-level edits, and the topology it is applied to."""
    kind, path = draw(st.sampled_from([("policy", p) for p in POLICIES] + [("calico", p) for p in CALICO]))
    data = bytearray(path.read_bytes())
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        piece = draw(st.one_of(st.sampled_from(YAML_BITS), st.binary(min_size=1, max_size=4)))
        data[at:at + draw(st.sampled_from([0, len(piece)]))] = piece
    return bytes(data), HOSTS[kind]


HOSTS = {"policy": _host("policy"), "calico": _host("calico")}


@given(applied())
def test_applied_manifests_give_a_model_or_a_precise_error(case: tuple[bytes, dict]) -> None:
    _check(*case)


@pytest.mark.parametrize("name,data", SEEDS, ids=[name for name, _ in SEEDS])
def test_every_seed_loads_unmutated(name: str, data: dict) -> None:
    """The fuzzer's seeds are valid: each mutation starts from a topology that loads."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "topo.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        assert isinstance(loader.load(str(path)), Topology)
