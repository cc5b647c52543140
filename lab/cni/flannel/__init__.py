"""flannel: flanneld's vxlan, host-gw and ipip backends over the CNI bridge plugin.

The folder: config.py (net-conf.json), loader.py (leases and host-local IPAM), plan.py (what flanneld and
the bridge plugin program), runtime.py (the route agent for ipip without the kernel module), status.py
(`lab status`). Its one registration is below (lab/topology/dataplanes.py)."""

from __future__ import annotations

from typing import Any

from lab.cni.flannel import config, devices, loader
from lab.topology.dataplanes import DataPlane
from lab.topology.model import FlannelConfig


def _resource(item: Any, cni: str) -> bool:
    data = item.data
    if config.is_flannel_config_map(data):
        return True
    if data.get("kind") == "ConfigMap" and (data.get("metadata") or {}).get("name") == "kube-flannel-cfg":
        raise item.document.error(item.path + ("data",), "the kube-flannel-cfg ConfigMap has no "
                                  "net-conf.json key", "put flannel's net-conf.json under data:")
    return False


def _ipip_unused(flannel: FlannelConfig) -> str | None:
    if flannel.backend.type == "ipip":
        return None
    return f"flannel's {flannel.backend.type} backend uses no IPIP (only Backend.Type ipip does)"


DATAPLANE = DataPlane(
    name="flannel", package=__name__, builder=loader.FlannelBuilder,
    enforcers=("none", "kube-router"),
    enforcer_hint="flannel enforces nothing; add kube-router's firewall with networkPolicy: kube-router (as seed "
                  "001 does), or use cni: calico",
    kindless=config.is_net_conf, resource=_resource,
    resource_help="the kube-flannel-cfg ConfigMap, flannel's net-conf.json map",
    ipip_unused=_ipip_unused, ipip_devices=(devices.IPIP_DEVICE,), explain="explain",
    graph="graph", caption="caption")
