"""`calicoctl get ...` tables, from what `lab status` records about a Calico lab.

calicoctl prints with Go's tabwriter (minimum cell width 0, padding 3, trailing padding kept).
"""

from __future__ import annotations

from typing import Any

from lab.errors import LabError

ALIASES = {"ippool": "ippools", "ippools": "ippools", "ipp": "ippools", "nodes": "nodes", "node": "nodes",
           "bgppeer": "bgppeers", "bgppeers": "bgppeers", "bgpconfig": "bgpconfigs",
           "bgpconfiguration": "bgpconfigs", "bgpconfigs": "bgpconfigs"}


def tabwriter(rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=False)]
    return "".join("".join(cell.ljust(width + 3) for cell, width in zip(row, widths, strict=True)) + "\n"
                   for row in rows)


def get(status: dict[str, Any], resource: str, output: str = "") -> str:
    """The table `calicoctl get <resource> [-o wide]` prints for this lab."""
    if status.get("cni") != "calico":
        raise LabError(f"lab {status.get('lab')} does not run Calico", "calicoctl works on Calico labs")
    kind = ALIASES.get(resource.lower())
    if kind is None:
        raise LabError(f"unknown resource type {resource!r}", "use ippool, nodes, bgppeer or bgpconfig")
    wide = output == "wide"
    return tabwriter(_ROWS[kind](status, wide))


def _ippools(status: dict[str, Any], wide: bool) -> list[list[str]]:
    if wide:
        rows = [["NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED", "SELECTOR"]]
        rows += [[p["name"], p["cidr"], _bool(p["natOutgoing"]), p["ipipMode"], p["vxlanMode"], _bool(p["disabled"]),
                  p["nodeSelector"]] for p in status["pools"]]
        return rows
    return [["NAME", "CIDR", "SELECTOR"]] + [[p["name"], p["cidr"], p["nodeSelector"]] for p in status["pools"]]


def _nodes(status: dict[str, Any], wide: bool) -> list[list[str]]:
    if not wide:
        return [["NAME"]] + [[n["name"]] for n in status["nodes"]]
    return [["NAME", "ASN", "IPV4", "IPV6"]] + [
        [n["name"], f"({n['calico']['as_number']})", n["calico"]["bgp_address"], ""] for n in status["nodes"]]


def _bgppeers(status: dict[str, Any], wide: bool) -> list[list[str]]:
    rows = [["NAME", "PEERIP", "NODE", "ASN"]]
    for peer in status.get("bgp_peers", []):
        rows.append([peer["name"], peer.get("peerIP") or "", peer.get("node") or peer.get("nodeSelector") or "(global)",
                     str(peer.get("asNumber") or 0)])
    return rows


def _bgpconfigs(status: dict[str, Any], wide: bool) -> list[list[str]]:
    bgp = status.get("bgp") or {}
    return [["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
            ["default", bgp.get("logSeverityScreen", "Info"), _bool(bgp.get("nodeToNodeMeshEnabled", True)),
             str(bgp.get("asNumber", 64512))]]


def _bool(value: bool) -> str:
    return "true" if value else "false"


_ROWS = {"ippools": _ippools, "nodes": _nodes, "bgppeers": _bgppeers, "bgpconfigs": _bgpconfigs}
