"""What `lab status` prints about a Terway lab (from the status `plan.describe` recorded): mode, datapath,
quotas and each node's ENIs."""

from __future__ import annotations

from typing import Any


def lines(status: dict[str, Any]) -> list[str]:
    """The `lab status` lines about the data plane, from the recorded status."""
    settings = status["terway"]
    envs = {node["name"]: node.get("terway", {}) for node in status["nodes"]}
    if status["mode"] == "vpc":
        return [f"cni: terway vpc (deprecated mode), pod CIDR {settings['podCIDR']}, a /{settings['nodeCIDRMask']} "
                "per node; VPC route table: " + ", ".join(env.get("vpc_route", "?") for env in envs.values())]
    found = [f"cni: terway eniip, datapath {status['datapath']} + policy routing, maxENIs {settings['maxENIs']}, "
             f"ipsPerENI {settings['ipsPerENI']}"]
    for node, env in envs.items():
        for eni in env.get("enis", []):
            found.append(f"  {node} {eni['device']} ({eni['mac']}, vSwitch port {eni['port']}): primary IP "
                         f"{eni['primary_ip']}, table {eni['table']}, secondary IPs "
                         f"{', '.join(eni['secondary_ips']) or 'none'}")
    return found
