"""The NetworkPolicy verdict of one hop: the reference evaluator's decision, located in the node's live iptables.

The evaluator (lab/policy/evaluator.py) says whether the connection is allowed and which policy decides
each direction; this module finds the chain and rule that carry that decision in the node's
`iptables-save -t filter` (kube-router's KUBE-POD-FW-* / KUBE-NWPLCY-*, Felix's cali-tw-/cali-fw-* and
cali-pi-/cali-po-*), so the learner sees the rule that accepts or rejects their packet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WORDS = {"Ingress": ("destined to", "-d", "ingress", "cali-tw-", "cali-pi-"),
         "Egress": ("from", "-s", "egress", "cali-fw-", "cali-po-")}


@dataclass(frozen=True)
class Located:
    """Where the decision lives in iptables: the chain, the deciding rule, the policy chain."""

    pod_chain: str | None
    deciding_rule: str | None
    policy_chain: str | None
    action: str              # ACCEPT | REJECT | DROP | (none found)


def _rules(save: str, chain: str) -> list[str]:
    return [line for line in save.splitlines() if line.startswith(f"-A {chain} ")]


def _target(rule: str) -> str | None:
    found = re.search(r" -[jg] (\S+)", rule)
    return found.group(1) if found else None


def kube_router(save: str, pod_name: str, pod_namespace: str, pod_ip: str, direction: str, side: str) -> Located:
    """kube-router: KUBE-ROUTER-FORWARD jumps to the pod's KUBE-POD-FW chain, which runs the policy chains."""
    words, flag, default, _, _ = WORDS[direction]
    comment = f"{words} POD name:{pod_name} namespace: {pod_namespace}"
    jump = next((r for r in _rules(save, "KUBE-ROUTER-FORWARD") if f"{flag} {pod_ip}/32" in r and comment in r), None)
    if jump is None:
        return Located(None, None, None, "(none found)")
    chain = _target(jump)
    rules = _rules(save, chain or "")
    if side.startswith("denied"):
        reject = next((r for r in rules if "-j REJECT" in r), None)
        return Located(chain, reject, None, "REJECT")
    if side.startswith("allowed by "):
        name = side.rsplit("/", 1)[-1]
        run = next((r for r in rules if f'"run through nw policy {name}"' in r), None)
        return Located(chain, run, _target(run) if run else None, "ACCEPT")
    run = next((r for r in rules if f"run through default {default} network policy chain" in r), None)
    return Located(chain, run, "KUBE-NWPLCY-DEFAULT" if run else None, "ACCEPT")


def felix(save: str, host_iface: str, direction: str, side: str) -> Located:
    """Felix: cali-tw-<iface> (to the workload) / cali-fw-<iface> (from it) run the cali-pi-/cali-po- chains."""
    _, _, word, endpoint_prefix, policy_prefix = WORDS[direction]
    chain = endpoint_prefix + host_iface
    rules = _rules(save, chain)
    if not rules:
        return Located(None, None, None, "(none found)")
    if side.startswith("denied"):
        drop = next((r for r in rules if "Drop if no policies passed packet" in r), None)
        return Located(chain, drop, None, "DROP")
    if side.startswith("allowed by "):
        namespace, name = side[len("allowed by "):].split("/", 1)
        marker = f"Policy {namespace}/knp.default.{name} {word}"
        for rule in rules:
            target = _target(rule)
            if target and target.startswith(policy_prefix) and any(marker in r for r in _rules(save, target)):
                return Located(chain, rule, target, "ACCEPT")
        return Located(chain, None, None, "ACCEPT")
    profile = next((r for r in rules if re.search(r"-j cali-pr[io]-kns\.", r)), None)
    return Located(chain, profile, _target(profile) if profile else None, "ACCEPT")
