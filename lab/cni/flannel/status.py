"""flannel's lines in `lab status`."""

from __future__ import annotations

from typing import Any


def node_lines(node: dict[str, Any]) -> list[str]:
    """A node's line: its /run/flannel/subnet.env."""
    env = " ".join(f"{k}={v}" for k, v in node["subnet_env"].items())
    return [f"{node['name']} /run/flannel/subnet.env: {env}"]


def lines(status: dict[str, Any]) -> list[str]:
    port = f", VNI {status['vni']}, UDP port {status['port']}" if status.get("vni") else ""
    ipip_impl = f", IPIP implementation: {status['ipip_implementation']}" if status.get("ipip_implementation") else ""
    return [f"cni: flannel {status['mode']}, pod network {status['network']}, SubnetLen {status['subnet_len']}{port}"
            f"{ipip_impl}"]
