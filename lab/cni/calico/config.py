"""Calico's resources (projectcalico.org/v3 IPPool, BGPConfiguration, BGPPeer, Node): parse and validate.

Each parser takes the manifest, the path of the manifest in its document and `fail(path, message,
hint)`, and returns a model object with Calico's API defaults filled in. Selectors are checked with
the same parser the BGP peering uses, so a bad selector is refused before anything is built.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from lab.errors import TopologyError
from lab.model import calico_selector
from lab.topology import cidr as cidrs
from lab.topology.model import (
    BGPConfiguration,
    BGPPeer,
    CalicoConfig,
    CalicoNode,
    Cluster,
    IPPool,
    Topology,
    config_of,
    find_config,
)
from lab.topology.yamlsource import Path

API_VERSION = "projectcalico.org/v3"
KINDS = ("IPPool", "BGPConfiguration", "BGPPeer", "Node")
ENCAP_MODES = ("Always", "CrossSubnet", "Never")
LOG_SEVERITIES = ("Debug", "Info", "Warning", "Error", "Fatal")
POOL_KEYS = {"cidr", "blockSize", "ipipMode", "vxlanMode", "natOutgoing", "nodeSelector", "disabled",
             "allowedUses", "disableBGPExport"}
BGP_CONFIG_KEYS = {"nodeToNodeMeshEnabled", "asNumber", "logSeverityScreen"}
PEER_KEYS = {"peerIP", "asNumber", "node", "nodeSelector", "peerSelector"}
NODE_SPEC_KEYS = {"bgp", "orchRefs", "addresses", "ipv4VXLANTunnelAddr"}
NODE_BGP_KEYS = {"ipv4Address", "asNumber", "routeReflectorClusterID"}
MAX_AS = 4294967295
LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")

Fail = Callable[[Path, str, str | None], TopologyError]

# The topology's `cluster.calico` settings (JSON schema; lab/topology/schema.py adds it to the topology's).
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "backend": {"enum": ["bird", "vxlan"],
                    "description": "calico_backend: bird runs BGP; vxlan is calico-vxlan.yaml (Felix only)"},
        "env": {
            "type": "object",
            "additionalProperties": False,
            "description": "calico/node's CALICO_IPV4POOL_* settings for the pool it creates when no IPPool is given",
            "properties": {
                "CALICO_IPV4POOL_CIDR": {"type": "string"},
                "CALICO_IPV4POOL_IPIP": {"enum": ["Always", "CrossSubnet", "Never"]},
                "CALICO_IPV4POOL_VXLAN": {"enum": ["Always", "CrossSubnet", "Never"]},
                "CALICO_IPV4POOL_BLOCK_SIZE": {"type": ["integer", "string"]},
                "CALICO_IPV4POOL_NAT_OUTGOING": {"type": ["boolean", "string"]},
                "CALICO_IPV4POOL_NODE_SELECTOR": {"type": "string"},
            },
        },
    },
}

def find(where: Topology | Cluster) -> CalicoConfig | None:
    """The calico config of a topology or cluster, or None when its CNI is another."""
    return find_config(where, CalicoConfig)


def of(where: Topology | Cluster) -> CalicoConfig:
    """The calico config of a topology or cluster whose CNI is calico (anything else is the caller's bug)."""
    return config_of(where, CalicoConfig, "calico")



def is_calico(item: Any) -> bool:
    """A projectcalico.org/v3 manifest of a kind the lab models."""
    return isinstance(item, dict) and item.get("apiVersion") == API_VERSION and item.get("kind") in KINDS


def name_of(item: dict[str, Any], path: Path, fail: Fail) -> str:
    name = (item.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise fail(path + ("metadata",), f"a {item.get('kind')} needs metadata.name", None)
    return name


def ip_pool(item: dict[str, Any], path: Path, fail: Fail) -> IPPool:
    spec = _spec(item, path, fail, POOL_KEYS)
    where = path + ("spec",)
    if "cidr" not in spec:
        raise fail(where, "an IPPool needs spec.cidr", "e.g. cidr: 10.244.0.0/16")
    cidr = _network(spec["cidr"], where + ("cidr",), fail)
    block = spec.get("blockSize", 26)
    if not isinstance(block, int) or isinstance(block, bool) or not 20 <= block <= 32:
        raise fail(where + ("blockSize",), f"blockSize {block!r} must be an integer from 20 to 32", None)
    if block < cidr.prefixlen:
        raise fail(where + ("blockSize",), f"blockSize /{block} is larger than the pool {cidr}",
                   f"use a blockSize of at least {cidr.prefixlen}")
    ipip = _mode(spec, "ipipMode", where, fail)
    vxlan = _mode(spec, "vxlanMode", where, fail)
    if ipip != "Never" and vxlan != "Never":
        raise fail(where + ("vxlanMode",), "ipipMode and vxlanMode cannot both be enabled on one pool",
                   "set one of them to Never (Calico's validation refuses both)")
    node_selector = _selector(spec.get("nodeSelector", "all()"), where + ("nodeSelector",), fail)
    return IPPool(name=name_of(item, path, fail), cidr=cidr, block_size=block, ipip_mode=ipip, vxlan_mode=vxlan,
                  nat_outgoing=_bool(spec, "natOutgoing", False, where, fail), node_selector=node_selector,
                  disabled=_bool(spec, "disabled", False, where, fail))


def bgp_configuration(item: dict[str, Any], path: Path, fail: Fail) -> BGPConfiguration:
    name = name_of(item, path, fail)
    if name != "default":
        raise fail(path + ("metadata", "name"), f"BGPConfiguration {name!r}: the lab models only the "
                   "cluster-wide `default` (per-node node.<name> configurations are not supported)", None)
    spec = _spec(item, path, fail, BGP_CONFIG_KEYS)
    where = path + ("spec",)
    severity = spec.get("logSeverityScreen", "Info")
    if severity not in LOG_SEVERITIES:
        raise fail(where + ("logSeverityScreen",), f"{severity!r} is not a log severity",
                   f"use one of {', '.join(LOG_SEVERITIES)}")
    return BGPConfiguration(node_to_node_mesh=_bool(spec, "nodeToNodeMeshEnabled", True, where, fail),
                            as_number=_as_number(spec.get("asNumber", 64512), where + ("asNumber",), fail),
                            log_severity=severity)


def bgp_peer(item: dict[str, Any], path: Path, fail: Fail) -> BGPPeer:
    spec = _spec(item, path, fail, PEER_KEYS)
    where = path + ("spec",)
    peer_ip = None
    if "peerIP" in spec:
        text = str(spec["peerIP"])
        address, colon, port = text.partition(":")
        try:
            peer_ip = ipaddress.IPv4Address(address)
        except ValueError:
            raise fail(where + ("peerIP",), f"{text!r} is not an IPv4 address (or address:port)",
                       "IPv6 peers are not modelled by the lab" if text.count(":") > 1 else None) from None
        if colon and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise fail(where + ("peerIP",), f"{text!r}: the port after ':' must be a number from 1 to 65535",
                       "write peerIP as 192.168.10.1 or 192.168.10.1:179")
        if colon and int(port) != 179:
            raise fail(where + ("peerIP",), f"{text!r}: the lab's BIRD peers on BGP's port 179 only",
                       "leave the port out, or write :179")
        if "asNumber" not in spec:
            raise fail(where, "a BGPPeer with peerIP needs asNumber", "e.g. asNumber: 64512")
    if peer_ip is None and "peerSelector" not in spec:
        raise fail(where, "a BGPPeer needs peerIP (with asNumber) or peerSelector", None)
    if peer_ip is not None and "peerSelector" in spec:
        raise fail(where + ("peerSelector",), "peerIP and peerSelector cannot both be set", None)
    if "node" in spec and "nodeSelector" in spec:
        raise fail(where + ("nodeSelector",), "node and nodeSelector cannot both be set", None)
    return BGPPeer(name=name_of(item, path, fail), peer_ip=peer_ip,
                   as_number=_as_number(spec["asNumber"], where + ("asNumber",), fail) if "asNumber" in spec else None,
                   node=spec.get("node"),
                   node_selector=_selector(spec["nodeSelector"], where + ("nodeSelector",), fail)
                   if "nodeSelector" in spec else None,
                   peer_selector=_selector(spec["peerSelector"], where + ("peerSelector",), fail)
                   if "peerSelector" in spec else None)


def calico_node(item: dict[str, Any], path: Path, fail: Fail, node_ip: ipaddress.IPv4Address,
                default_prefix: int) -> CalicoNode:
    """A Node resource; its spec.bgp.ipv4Address must be the node's own address (any prefix length)."""
    spec = _spec(item, path, fail, NODE_SPEC_KEYS)
    where = path + ("spec",)
    bgp = spec.get("bgp") or {}
    unknown = sorted(set(bgp) - NODE_BGP_KEYS)
    if unknown:
        raise fail(where + ("bgp", unknown[0]), f"unknown field {unknown[0]!r}",
                   f"spec.bgp takes {', '.join(sorted(NODE_BGP_KEYS))}")
    address = ipaddress.IPv4Interface(f"{node_ip}/{default_prefix}")
    if "ipv4Address" in bgp:
        try:
            address = cidrs.interface(bgp["ipv4Address"])
        except cidrs.CidrError as exc:
            raise fail(where + ("bgp", "ipv4Address"), exc.message, exc.hint) from None
        if address.ip != node_ip:
            raise fail(where + ("bgp", "ipv4Address"), f"{address.ip} is not this node's address ({node_ip})",
                       "calico/node autodetects the address of eth0; give the node's own IP")
    cluster_id = bgp.get("routeReflectorClusterID")
    if cluster_id is not None:
        try:
            ipaddress.IPv4Address(str(cluster_id))
        except ValueError:
            raise fail(where + ("bgp", "routeReflectorClusterID"), f"{cluster_id!r} is not a cluster ID",
                       "a cluster ID is written like an IPv4 address, e.g. 244.0.0.1") from None
        cluster_id = str(cluster_id)
    as_number = _as_number(bgp["asNumber"], where + ("bgp", "asNumber"), fail) if "asNumber" in bgp else None
    return CalicoNode(name=name_of(item, path, fail), ipv4_address=address, as_number=as_number,
                      rr_cluster_id=cluster_id)


# -- small checks ------------------------------------------------------------------------------------
def _spec(item: dict[str, Any], path: Path, fail: Fail, allowed: set[str]) -> dict[str, Any]:
    spec = item.get("spec") or {}
    if not isinstance(spec, dict):
        raise fail(path + ("spec",), "spec must be a mapping", None)
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise fail(path + ("spec", unknown[0]),
                   f"unknown field {unknown[0]!r} in {_article(str(item.get('kind')))} {item.get('kind')}",
                   f"{item.get('kind')} spec takes {', '.join(sorted(allowed))}")
    return spec


def _network(value: Any, path: Path, fail: Fail) -> ipaddress.IPv4Network:
    """An IPPool cidr: strictly masked and outside link-local space, as Calico's validation wants it."""
    try:
        network = cidrs.network(value)
    except cidrs.CidrError as exc:
        raise fail(path, exc.message, exc.hint) from None
    if network.overlaps(LINK_LOCAL):
        raise fail(path, f"{network} overlaps the IPv4 link-local range {LINK_LOCAL}, which Calico refuses for "
                   "an IPPool", "pick a pool in private space (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16) "
                   "that no node segment uses")
    special = cidrs.martian(network)
    if special:
        raise fail(path, f"{network} overlaps the {special} range, which the kernel does not route as unicast, "
                   "so it cannot be a pool", "pick a pool in private space (10.0.0.0/8, 172.16.0.0/12 or "
                   "192.168.0.0/16) that no node segment uses")
    return network


def _mode(spec: dict[str, Any], key: str, where: Path, fail: Fail) -> str:
    mode: str = spec.get(key, "Never")
    if mode not in ENCAP_MODES:
        raise fail(where + (key,), f"{key} {mode!r} must be Always, CrossSubnet or Never", None)
    return mode


def _bool(spec: dict[str, Any], key: str, default: bool, where: Path, fail: Fail) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise fail(where + (key,), f"{key} must be true or false, not {value!r}", None)
    return value


def _as_number(value: Any, path: Path, fail: Fail) -> int:
    """An AS number: an integer, its decimal text, or asdot text `high.low` (numorstring.ASNumber)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    elif (isinstance(value, str) and value.count(".") == 1 and value.isascii()
          and all(p.isdigit() for p in value.split("."))):
        high, low = (int(p) for p in value.split("."))
        if high > 65535 or low > 65535:
            raise fail(path, f"asdot AS number {value!r} needs two parts from 0 to 65535", None)
        value = high * 65536 + low
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_AS:
        raise fail(path, f"AS number {value!r} must be an integer from 1 to {MAX_AS}", None)
    return value


def _selector(text: Any, path: Path, fail: Fail) -> str:
    if not isinstance(text, str):
        raise fail(path, f"a selector must be a string, not {text!r}", "e.g. route-reflector == 'true'")
    try:
        calico_selector.parse(text)
    except calico_selector.SelectorError as exc:
        raise fail(path, exc.message, exc.hint) from None
    return text


def _article(word: str) -> str:
    return "an" if word[:1].upper() in "AEIOU" else "a"


# -- live changes -----------------------------------------------------------------------------------
IMMUTABLE_POOL_FIELDS = (("cidr", "cidr", "IPPool CIDR cannot be modified"),
                         ("block_size", "blockSize", "IPPool BlockSize cannot be modified"))


def check_pool_unchanged(pool: IPPool, previous: IPPool, path: Path, fail: Fail) -> None:
    """Refuse a live change of a running pool's cidr or blockSize, as libcalico-go's validateAndSetDefaults
    refuses it on update (`previous` is the pool of that name in the running lab)."""
    for attribute, key, words in IMMUTABLE_POOL_FIELDS:
        if getattr(pool, attribute) != getattr(previous, attribute):
            raise fail(path + ("spec", key), f"{words}: IPPool {pool.name} has {key} "
                       f"{getattr(previous, attribute)} in the running lab, not {getattr(pool, attribute)}",
                       f"create a new IPPool with the new {key}, set the old one's spec.disabled: true, and "
                       "delete it once its addresses are released (Calico's pool migration)")
