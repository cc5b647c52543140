"""NetworkPolicy load for measurements: generated policies, the enforcer's rules counted per node.

Shared by the policy-scale measurement kind (lab/experiment/kinds/policy_scale.py) and
scripts/bench_policy.py.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable

from lab import live
from lab.lifecycle import Lab
from lab.netns import names
from lab.topology.model import Topology


def count_rules(topology: Topology, lab: str | None = None) -> tuple[list[int], list[int]]:
    """iptables rules (`-A` lines of iptables-save) and ipsets in each node namespace of the lab."""
    rules, sets = [], []
    for node in topology.nodes:
        netns = names.node_netns(lab or topology.name, node.name)
        saved = subprocess.run(["ip", "netns", "exec", netns, "iptables-save"], capture_output=True, text=True).stdout
        rules.append(sum(1 for line in saved.splitlines() if line.startswith("-A")))
        listed = subprocess.run(["ip", "netns", "exec", netns, "ipset", "list", "-n"], capture_output=True,
                                text=True).stdout
        sets.append(len(listed.split()))
    return rules, sets


def clear_policies(lab: Lab, name: str) -> None:
    """Remove every live change of the lab (applied policies among them)."""
    lab.change(name, lambda state, _old: {**state, "files": [], "deleted": []})


def apply_text(lab: Lab, name: str, text: str) -> float:
    """`lab apply -f` of `text` (through a temporary file, as the CLI reads one); seconds the apply took."""
    with tempfile.TemporaryDirectory(prefix="lab-policies-") as tmp:
        path = os.path.join(tmp, "policies.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        manifests = live.read_manifests(path)
        started = time.monotonic()
        lab.change(name, lambda state, _old: live.with_file(state, manifests))
        return time.monotonic() - started


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.005) -> float | None:
    """Seconds until `check()` holds (polled every `interval`), or None after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(interval)
    return time.monotonic() - started


def bench_policies(count: int, spaces: int, per_space: int) -> str:
    """bench_policy's load: policy i in ns-(i mod k) selects pod=p<(i div k) mod m>, admits TCP 80 from
    namespace ns-(i+1 mod k)."""
    docs = []
    for i in range(count):
        docs.append(f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: np-{i}, namespace: ns-{i % spaces}}}
spec:
  podSelector: {{matchLabels: {{pod: p{(i // spaces) % per_space}}}}}
  policyTypes: [Ingress]
  ingress:
  - from: [{{namespaceSelector: {{matchLabels: {{ns: ns-{(i + 1) % spaces}}}}}}}]
    ports: [{{protocol: TCP, port: 80}}]
""")
    return "---\n".join(docs)


def experiment_policies(count: int, namespace: str = "default") -> str:
    """The experiment's load on its own pods: policy 0 isolates xp-c and admits everything from xp-a
    (the measured flow, allowed); policies 1..count-1 also select xp-c and admit one TCP port each
    (10000+i) from pods that do not exist, so the flow is checked against every one of them."""
    docs = [f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: xp-allow-a, namespace: {namespace}}}
spec:
  podSelector: {{matchLabels: {{xp: c}}}}
  policyTypes: [Ingress]
  ingress:
  - from: [{{podSelector: {{matchLabels: {{xp: a}}}}}}]
"""]
    for i in range(1, count):
        docs.append(f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: xp-load-{i}, namespace: {namespace}}}
spec:
  podSelector: {{matchLabels: {{xp: c}}}}
  policyTypes: [Ingress]
  ingress:
  - from: [{{podSelector: {{matchLabels: {{xp-client: c{i}}}}}}}]
    ports: [{{protocol: TCP, port: {10000 + i}}}]
""")
    return "---\n".join(docs)
