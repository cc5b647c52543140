"""Bad topologies: `lab up` must refuse each one with exit 2 and an error that points at the
file, line and field at fault - and must create nothing while doing so.

Every case is a small topology written to tmp_path/topo.yaml. The error format is
`lab: error: <file>:<line>: <field path>: <message>` (no `<line>: ` when the file has no line to
blame, no `<field path>: ` when the problem is the whole document). Line numbers in the table are
counted by hand from the YAML text: line 1 is the line right after the opening `\\`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from textwrap import dedent

import pytest
from conftest import run_lab_unprivileged

LAB_NAME = "bad-input"  # every topology below that has a name uses this one
NETNS_DIR = "/run/netns"
STATE_DIR = "/run/lab"


def case(id, text, line, field, message, marks=()):
    """One row: the topology text, the line and field the error must name, and a piece of its message."""
    return pytest.param(dedent(text), line, field, message, id=id, marks=marks)


# The lines most cases start with; line numbers in the table count them.
HEAD = """\
name: bad-input
cluster:
  cni: flannel
"""
ONE_NODE = HEAD + """\
networks:
  - {name: lan, cidr: 192.168.10.0/24}
nodes:
  - {name: n1, ip: 192.168.10.11}
"""

CASES = [
    # -- YAML syntax and document shape --------------------------------------------------------------
    case("yaml-bad-indentation", HEAD + dedent("""\
        networks:
          - name: lan
            cidr: 192.168.10.0/24
           gateway: 192.168.10.1
        nodes:
          - {name: n1, ip: 192.168.10.11}
        """), 7, None, "not valid YAML"),
    case("yaml-unclosed-bracket", HEAD + dedent("""\
        networks:
          - {name: lan, cidr: 192.168.10.0/24
        nodes:
          - {name: n1, ip: 192.168.10.11}
        """), 5, None, "not valid YAML"),
    case("yaml-duplicate-key", HEAD + dedent("""\
        networks:
          - {name: lan, cidr: 192.168.10.0/24}
        nodes:
          - name: n1
            ip: 192.168.10.11
            ip: 192.168.10.12
        """), 9, "nodes[0].ip", "duplicate key"),
    case("not-a-mapping", """\
        # a list of keys instead of a mapping
        - name: bad-input
        - cluster: {cni: flannel}
        """, 2, None, "must be a YAML mapping"),
    case("empty-file", "", None, None, "the file is empty"),
    case("only-comments", """\
        # name: bad-input
        # cluster: {cni: flannel}
        """, None, None, "the file is empty"),

    # -- schema ------------------------------------------------------------------------------------
    case("unknown-top-level-key", ONE_NODE + dedent("""\
        xyz: 1
        """), 8, "xyz", "unknown key 'xyz'"),
    case("unknown-node-key", HEAD + dedent("""\
        networks:
          - {name: lan, cidr: 192.168.10.0/24}
        nodes:
          - name: n1
            ip: 192.168.10.11
          - name: n2
            ip: 192.168.10.12
            xyz: true
        """), 11, "nodes[1].xyz", "unknown key 'xyz'"),
    case("missing-node-ip", HEAD + dedent("""\
        networks:
          - {name: lan, cidr: 192.168.10.0/24}
        nodes:
          - name: n1
            ip: 192.168.10.11
          - name: n2
            labels: {tier: web}
        """), 9, "nodes[1]", "missing required key 'ip'"),
    case("container-port-out-of-range", ONE_NODE + dedent("""\
        pods:
          - name: web
            node: n1
            containerPorts:
              - containerPort: 70000
        """), 12, "pods[0].containerPorts[0].containerPort", "70000 is out of range"),

    # -- networks ----------------------------------------------------------------------------------
    case("network-cidr-prefix-33", HEAD + dedent("""\
        networks:
          - name: lan
            cidr: 192.168.10.0/33
        nodes:
          - {name: n1, ip: 192.168.10.11}
        """), 6, "networks[0].cidr", "'192.168.10.0/33' is not a valid IPv4 CIDR"),
    case("network-cidr-host-bits", HEAD + dedent("""\
        networks:
          - name: lan
            cidr: 192.168.10.5/24
        nodes:
          - {name: n1, ip: 192.168.10.11}
        """), 6, "networks[0].cidr", "has host bits set"),
    case("network-name-too-long", HEAD + dedent("""\
        networks:
          - name: underlay-segment-a
            cidr: 192.168.10.0/24
        nodes:
          - {name: n1, ip: 192.168.10.11}
        """), 5, "networks[0].name", "is 18 characters"),
    case("networks-overlap", HEAD + dedent("""\
        networks:
          - name: lan
            cidr: 192.168.10.0/24
          - name: wan
            cidr: 192.168.0.0/16
        nodes:
          - {name: n1, network: lan, ip: 192.168.10.11}
        """), 8, "networks[1].cidr", "overlaps network 'lan'"),

    # -- nodes -------------------------------------------------------------------------------------
    case("duplicate-node-ip", HEAD + dedent("""\
        networks:
          - {name: lan, cidr: 192.168.10.0/24}
        nodes:
          - name: n1
            ip: 192.168.10.11
          - name: n2
            ip: 192.168.10.11
        """), 10, "nodes[1].ip", "duplicate IP 192.168.10.11"),
    case("duplicate-node-name", HEAD + dedent("""\
        networks:
          - {name: lan, cidr: 192.168.10.0/24}
        nodes:
          - name: n1
            ip: 192.168.10.11
          - name: n1
            ip: 192.168.10.12
        """), 9, "nodes[1].name", "duplicate node name 'n1'"),
    case("node-ip-outside-network", HEAD + dedent("""\
        networks:
          - {name: lan, cidr: 192.168.10.0/24}
        nodes:
          - name: n1
            ip: 192.168.10.11
          - name: n2
            ip: 192.168.20.5
        """), 10, "nodes[1].ip", "192.168.20.5 is outside its network 192.168.10.0/24"),
    case("node-ip-is-gateway", HEAD + dedent("""\
        networks:
          - name: lan
            cidr: 192.168.10.0/24
            gateway: 192.168.10.2
        nodes:
          - name: n1
            ip: 192.168.10.2
        """), 10, "nodes[0].ip", "192.168.10.2 is the gateway of network 'lan'"),
    case("node-name-too-long", HEAD + dedent("""\
        networks:
          - {name: lan, cidr: 192.168.10.0/24}
        nodes:
          - name: kubernetes-worker-01
            ip: 192.168.10.11
        """), 7, "nodes[0].name", "interface names hold at most 15"),
    case("node-unknown-network", HEAD + dedent("""\
        networks:
          - {name: lan, cidr: 192.168.10.0/24}
        nodes:
          - name: n1
            network: wan
            ip: 192.168.10.11
        """), 8, "nodes[0].network", "no network named 'wan'"),
    case("bad-label-value", HEAD + dedent("""\
        networks:
          - {name: lan, cidr: 192.168.10.0/24}
        nodes:
          - name: n1
            ip: 192.168.10.11
            labels:
              tier: "not ok!"
        """), 10, "nodes[0].labels.tier", "label value 'not ok!'"),

    # -- flannel net-conf.json ---------------------------------------------------------------------
    case("pod-network-overlaps-underlay", HEAD + dedent("""\
        networks:
          - name: lan
            cidr: 192.168.10.0/24
        nodes:
          - {name: n1, ip: 192.168.10.11}
        resources:
          - apiVersion: v1
            kind: ConfigMap
            metadata: {name: kube-flannel-cfg, namespace: kube-system}
            data:
              net-conf.json: |
                {"Network": "192.168.0.0/16", "Backend": {"Type": "vxlan"}}
        """), 14, "resources[0].data.net-conf.json", "overlaps the underlay"),
    case("pod-network-overlaps-underlay-bare-map", HEAD + dedent("""\
        networks:
          - name: lan
            cidr: 192.168.10.0/24
        nodes:
          - {name: n1, ip: 192.168.10.11}
        resources:
          - Network: 192.168.0.0/16
            Backend: {Type: vxlan}
        """), 10, "resources[0].Network", "overlaps the underlay"),
    case("subnet-pool-too-small", ONE_NODE + dedent("""\
          - {name: n2, ip: 192.168.10.12}
          - {name: n3, ip: 192.168.10.13}
        resources:
          - {Network: 10.244.0.0/23, SubnetLen: 24, Backend: {Type: vxlan}}
        """), 6, "nodes", "holds only 2 subnet"),
    case("backend-udp-not-supported", ONE_NODE + dedent("""\
        resources:
          - apiVersion: v1
            kind: ConfigMap
            metadata: {name: kube-flannel-cfg, namespace: kube-system}
            data:
              net-conf.json: |
                {"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}
        """), 13, "resources[0].data.net-conf.json.Backend.Type", "backend type 'udp' is not supported"),
    case("backend-ipsec-not-supported", ONE_NODE + dedent("""\
        resources:
          - Network: 10.244.0.0/16
            Backend:
              Type: ipsec
        """), 11, "resources[0].Backend.Type", "backend type 'ipsec' is not supported"),
    case("net-conf-invalid-json", ONE_NODE + dedent("""\
        resources:
          - apiVersion: v1
            kind: ConfigMap
            metadata: {name: kube-flannel-cfg, namespace: kube-system}
            data:
              net-conf.json: |
                {
                  "Network": "10.244.0.0/16"
                  "Backend": {"Type": "vxlan"}
                }
        """), 13, "resources[0].data.net-conf.json", "not valid JSON: Expecting ',' delimiter at line 3"),
    case("net-conf-unknown-key", ONE_NODE + dedent("""\
        resources:
          - apiVersion: v1
            kind: ConfigMap
            metadata: {name: kube-flannel-cfg, namespace: kube-system}
            data:
              net-conf.json: |
                {"Network": "10.244.0.0/16", "SubnetLength": 24, "Backend": {"Type": "vxlan"}}
        """), 13, "resources[0].data.net-conf.json.SubnetLength", "unknown net-conf.json key 'SubnetLength'"),
    case("vni-device-name-too-long", ONE_NODE + dedent("""\
        resources:
          - Network: 10.244.0.0/16
            Backend:
              Type: vxlan
              VNI: 16777215
        """), 12, "resources[0].Backend.VNI", "15-character"),
    case("missing-resource-file", ONE_NODE + dedent("""\
        resources:
          - file: kube-flannel.yml
        """), 9, "resources[0].file", "cannot read"),

    # -- namespaces and pods -----------------------------------------------------------------------
    case("duplicate-pod", ONE_NODE + dedent("""\
        pods:
          - name: web
            namespace: default
            node: n1
          - name: web
            node: n1
        """), 12, "pods[1].name", "duplicate pod default/web"),
    case("pod-on-missing-node", ONE_NODE + dedent("""\
        pods:
          - name: web
            node: n9
        """), 10, "pods[0].node", "which does not exist"),
    case("pod-namespace-undeclared", ONE_NODE + dedent("""\
        namespaces:
          - name: staging
        pods:
          - name: web
            namespace: prod
            node: n1
        """), 12, "pods[0].namespace", "namespace 'prod' is not declared"),
    case("duplicate-pod-ip", ONE_NODE + dedent("""\
        pods:
          - name: web
            node: n1
            ip: 10.244.0.5
          - name: db
            node: n1
            ip: 10.244.0.5
        """), 14, "pods[1].ip", "duplicate pod IP 10.244.0.5"),
    case("pod-ip-outside-pod-subnet", HEAD + dedent("""\
        networks:
          - {name: lan, cidr: 192.168.10.0/24}
        nodes:
          - {name: n1, ip: 192.168.10.11, podCIDR: 10.244.0.0/24}
        pods:
          - name: web
            node: n1
            ip: 10.244.1.5
        """), 11, "pods[0].ip", "10.244.1.5 is outside its node's pod subnet 10.244.0.0/24"),
    case("pod-bad-label-key", ONE_NODE + dedent("""\
        pods:
          - name: web
            node: n1
            labels:
              app: web
              -tier: front
        """), 13, "pods[0].labels.-tier", "label key '-tier'"),
    case("pod-manifest-without-node-name", ONE_NODE + dedent("""\
        resources:
          - apiVersion: v1
            kind: Pod
            metadata: {name: web}
            spec:
              containers: [{name: web, image: nginx}]
        """), 12, "resources[0].spec", "has no spec.nodeName"),
    case("pod-manifest-namespace-undeclared", ONE_NODE + dedent("""\
        resources:
          - apiVersion: v1
            kind: Pod
            metadata:
              name: web
              namespace: prod
            spec: {nodeName: n1}
        """), 13, "resources[0].metadata.namespace", "namespace 'prod' is not declared"),
    case("pod-manifest-container-port-out-of-range", ONE_NODE + dedent("""\
        resources:
          - apiVersion: v1
            kind: Pod
            metadata: {name: web}
            spec:
              nodeName: n1
              containers:
                - name: web
                  image: nginx
                  ports:
                    - containerPort: 99999
        """), 18, "resources[0].spec.containers[0].ports[0].containerPort", "must be from 1 to 65535"),
    case("pod-manifest-labels-not-a-map", ONE_NODE + dedent("""\
        resources:
          - apiVersion: v1
            kind: Pod
            metadata:
              name: web
              labels: [app, web]
            spec: {nodeName: n1}
        """), 13, "resources[0].metadata.labels", "labels"),
    case("pod-manifest-invalid-name", ONE_NODE + dedent("""\
        resources:
          - apiVersion: v1
            kind: Pod
            metadata:
              name: Web_1
            spec: {nodeName: n1}
        """), 12, "resources[0].metadata.name", "not a valid pod name"),
    case("namespace-manifest-name-with-dot", ONE_NODE + dedent("""\
        resources:
          - apiVersion: v1
            kind: Namespace
            metadata: {name: a.b}
        """), 11, "resources[0].metadata.name", "not a valid namespace name"),
]


def _listdir(path: str) -> set[str]:
    try:
        return set(os.listdir(path))
    except FileNotFoundError:
        return set()


def _ours(entries: set[str]) -> set[str]:
    """The entries that belong to this test's lab: `bad-input.*` namespaces, /run/lab/bad-input(.lock).

    Other labs (other test files, other shells) may come and go in /run/netns while these tests run,
    so the before/after comparison is limited to what `lab up` of these topologies could create.
    """
    return {e for e in entries if e == LAB_NAME or e.startswith(f"{LAB_NAME}.")}


def _lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=60)


def assert_precise(up: subprocess.CompletedProcess, dry: subprocess.CompletedProcess, path: str, line: int | None,
                   field: str | None, message: str) -> None:
    shown = f"\n--- stderr ---\n{up.stderr}--- stdout ---\n{up.stdout}"
    assert up.returncode == 2, f"exit {up.returncode}, expected 2{shown}"
    assert "Traceback" not in up.stderr, shown
    assert up.stderr.startswith("lab: error: "), shown
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    header = f"{where}{field}: " if field else where
    assert where in up.stderr, f"error does not name {where!r}{shown}"
    assert header in up.stderr, f"error does not name the field as {header!r}{shown}"
    assert message in up.stderr, f"error does not say {message!r}{shown}"
    assert up.stdout == "", shown

    assert dry.returncode == 2, f"--dry-run exit {dry.returncode}, expected 2\n{dry.stderr}{dry.stdout}"
    assert dry.stderr == up.stderr, "--dry-run fails differently from up"
    assert dry.stdout == "", "--dry-run printed a plan for a bad topology"


@pytest.mark.parametrize("text, line, field, message", CASES)
def test_bad_topology_is_refused_precisely_without_root(tmp_path, monkeypatch, text, line, field, message):
    """The table without root (in this process): `lab up` reads and checks the topology before it asks
    for root, so the loader's error comes first, and `lab up --dry-run` gives the same."""
    path = str(tmp_path / "topo.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    up = run_lab_unprivileged(monkeypatch, "up", path)
    dry = run_lab_unprivileged(monkeypatch, "up", "--dry-run", path)
    assert_precise(up, dry, path, line, field, message)


@pytest.mark.needs_root
@pytest.mark.parametrize("text, line, field, message", CASES)
def test_bad_topology_is_refused_precisely_and_creates_nothing(tmp_path, text, line, field, message):
    path = str(tmp_path / "topo.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    netns_before, state_before = _listdir(NETNS_DIR), _listdir(STATE_DIR)

    up = _lab("up", path)
    dry = _lab("up", "--dry-run", path)

    # nothing was created, whatever the messages say
    assert _ours(_listdir(NETNS_DIR) ^ netns_before) == set(), "lab up created or removed network namespaces"
    assert _ours(_listdir(STATE_DIR) ^ state_before) == set(), "lab up left state behind under /run/lab"
    assert not os.path.exists(os.path.join(STATE_DIR, LAB_NAME))

    assert_precise(up, dry, path, line, field, message)
