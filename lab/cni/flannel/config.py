"""flannel's net-conf.json: parsed from the kube-flannel-cfg ConfigMap or its JSON map."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

from lab.cni.flannel.devices import vxlan_device
from lab.errors import TopologyError
from lab.topology import cidr as cidrs
from lab.topology.model import Cluster, FlannelBackend, FlannelConfig, Topology, config_of, find_config
from lab.topology.yamlsource import Path

BACKEND_TYPES = ("vxlan", "host-gw", "ipip")
NET_CONF_KEYS = {"Network", "SubnetLen", "SubnetMin", "SubnetMax", "Backend", "EnableNFTables",
                 "EnableIPv4", "EnableIPv6"}
BACKEND_KEYS = {"vxlan": {"Type", "VNI", "Port", "DirectRouting", "Learning", "GBP", "MTU"},
                "host-gw": {"Type"},
                "ipip": {"Type", "DirectRouting"}}   # pkg/backend/ipip: cfg struct{ DirectRouting bool }
MAX_JSON_DEPTH = 100
DEFAULT_NET_CONF = {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}

Fail = Callable[[Path, str, str | None], TopologyError]

def find(where: Topology | Cluster) -> FlannelConfig | None:
    """The flannel config of a topology or cluster, or None when its CNI is another."""
    return find_config(where, FlannelConfig)


def of(where: Topology | Cluster) -> FlannelConfig:
    """The flannel config of a topology or cluster whose CNI is flannel (anything else is the caller's bug)."""
    return config_of(where, FlannelConfig, "flannel")



def is_net_conf(item: Any) -> bool:
    """A bare net-conf.json map (as opposed to a Kubernetes manifest)."""
    return isinstance(item, dict) and "Network" in item and "kind" not in item


def is_flannel_config_map(item: Any) -> bool:
    return (isinstance(item, dict) and item.get("kind") == "ConfigMap"
            and isinstance(item.get("data"), dict) and "net-conf.json" in item["data"])


def from_config_map(item: dict[str, Any], path: Path, fail: Fail, ip_masq: bool, source: str) -> FlannelConfig:
    """Parse the `net-conf.json` key of a kube-flannel-cfg ConfigMap."""
    text = item["data"]["net-conf.json"]
    field = path + ("data", "net-conf.json")
    if not isinstance(text, str):
        raise fail(field, "must be a JSON string (use `net-conf.json: |` and the JSON below it)", None)
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise fail(field, f"net-conf.json nests {depth} levels deep; flannel's needs 2",
                   "write net-conf.json as in kube-flannel.yml: {\"Network\": ..., \"Backend\": {...}}")
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(field, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} of the JSON",
                   "check commas and quotes in net-conf.json") from None
    except ValueError:   # the one other refusal: an integer of more digits than Python converts
        raise fail(field, "a number in net-conf.json has thousands of digits; flannel's numbers (SubnetLen, "
                   "VNI, Port) are small", "check the numbers in net-conf.json") from None
    return from_map(conf, field, fail, ip_masq, source)


def _json_depth(text: str) -> int:
    """The deepest nesting of [ and { in JSON text, outside strings (json.loads recurses per level)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def from_map(conf: Any, path: Path, fail: Fail, ip_masq: bool, source: str) -> FlannelConfig:
    """Validate a net-conf.json map and fill in flanneld's defaults."""
    if not isinstance(conf, dict):
        raise fail(path, "net-conf.json must be a JSON object", None)
    unknown = sorted(set(conf) - NET_CONF_KEYS)
    if unknown:
        raise fail(path + (unknown[0],), f"unknown net-conf.json key '{unknown[0]}'",
                   f"flannel understands: {', '.join(sorted(NET_CONF_KEYS))}")
    if conf.get("EnableIPv6"):
        raise fail(path + ("EnableIPv6",), "IPv6 is not supported by the lab yet", "set EnableIPv6 to false")
    if conf.get("EnableIPv4") is False:
        raise fail(path + ("EnableIPv4",), "the lab builds IPv4 clusters", "remove EnableIPv4 or set it to true")
    if conf.get("EnableNFTables"):
        raise fail(path + ("EnableNFTables",), "flannel's nftables mode is not modelled by the lab yet",
                   "set EnableNFTables to false: the lab installs flanneld's iptables rules")
    network = _network(conf.get("Network"), path + ("Network",), fail)
    subnet_len = conf.get("SubnetLen", 24)
    if not isinstance(subnet_len, int) or isinstance(subnet_len, bool) or not network.prefixlen < subnet_len <= 30:
        raise fail(path + ("SubnetLen",),
                   f"SubnetLen {subnet_len!r} must be an integer longer than the Network prefix "
                   f"/{network.prefixlen} and at most 30", None)
    if "Backend" not in conf:
        raise fail(path, "net-conf.json has no Backend, so flannel would use its udp backend, which the lab "
                   "does not model", 'add "Backend": {"Type": "vxlan"} (or host-gw, or ipip)')
    backend = _backend(conf["Backend"], path + ("Backend",), fail)
    return FlannelConfig(network=network, subnet_len=subnet_len, backend=backend, ip_masq=ip_masq, source=source)


def _network(value: Any, path: Path, fail: Fail) -> ipaddress.IPv4Network:
    if value is None:
        raise fail(path, "net-conf.json needs a Network", 'e.g. "Network": "10.244.0.0/16"')
    try:
        network = cidrs.network(value)
    except cidrs.CidrError as exc:
        raise fail(path, exc.message, exc.hint) from None
    special = cidrs.martian(network)
    if special:
        raise fail(path, f"{network} overlaps the {special} range, which the kernel does not route as unicast, "
                   "so it cannot be the pod network", 'use private space, e.g. "Network": "10.244.0.0/16"')
    return network


def _backend(value: Any, path: Path, fail: Fail) -> FlannelBackend:
    if not isinstance(value, dict):
        raise fail(path, "Backend must be an object", '"Backend": {"Type": "vxlan"}')
    kind = value.get("Type")
    if kind not in BACKEND_TYPES:
        raise fail(path + ("Type",), f"backend type {kind!r} is not supported by the lab",
                   f"use one of: {', '.join(BACKEND_TYPES)}")
    unknown = sorted(set(value) - BACKEND_KEYS[kind])
    if unknown:
        raise fail(path + (unknown[0],), f"unknown {kind} backend key '{unknown[0]}'",
                   f"the {kind} backend understands: {', '.join(sorted(BACKEND_KEYS[kind]))}")
    if value.get("Learning") or value.get("GBP"):
        key = "Learning" if value.get("Learning") else "GBP"
        raise fail(path + (key,), f"{key}=true is not supported by the lab", f"remove {key}")
    vni = _int(value, "VNI", 1, 1, 16777215, path, fail)
    if len(vxlan_device(vni)) > 15:
        raise fail(path + ("VNI",), f"VNI {vni} makes the device name '{vxlan_device(vni)}' longer than the "
                   "15-character interface name limit", "use a VNI below 10000000")
    port = _int(value, "Port", 0, 0, 65535, path, fail)
    mtu = _int(value, "MTU", 0, 0, 65535, path, fail)
    if mtu and mtu < 1280 + 50:
        raise fail(path + ("MTU",), f"MTU {mtu} leaves less than 1280 bytes for pods after the 50-byte "
                   "VXLAN overhead", "use at least 1330, or leave MTU out to use the node's eth0 MTU")
    direct = value.get("DirectRouting", False)
    if not isinstance(direct, bool):
        raise fail(path + ("DirectRouting",), "DirectRouting must be true or false", None)
    return FlannelBackend(type=kind, vni=vni, port=port, direct_routing=direct, mtu=mtu)


def _int(conf: dict[str, Any], key: str, default: int, low: int, high: int, path: Path, fail: Fail) -> int:
    value = conf.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise fail(path + (key,), f"{key} {value!r} must be an integer from {low} to {high}", None)
    return value
