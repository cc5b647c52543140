"""Calico: the CNI plugin, Felix (iptables, vxlan) and calico/node's BIRD, as v3.28 programs them.

The folder: config.py (projectcalico.org/v3 resources), ipam.py (Calico IPAM), loader.py (the cluster's
Calico config), plan.py and workload.py (what the CNI plugin and Felix program), peers.py, birdcfg.py and
propagation.py (confd's peerings, BIRD's configuration, which blocks each node learns), runtime.py (BIRD and
the route agent; live changes), mirror.py (the route agent's table-201 mirror), ready.py (what `lab up`
waits for), status.py, calicoctl.py and views.py (`lab status`, `lab calicoctl`). Its one registration is
below (lab/topology/dataplanes.py)."""

from __future__ import annotations

from typing import Any

from lab.cni.calico import config, devices, live, loader
from lab.topology.dataplanes import DataPlane
from lab.topology.model import CalicoConfig


def _resource(item: Any, cni: str) -> bool:
    data = item.data
    if not config.is_calico(data):
        return False
    if cni != "calico":
        raise item.document.error(item.path + ("kind",), f"a Calico {data['kind']} needs `cluster: {{cni: calico}}`",
                                  "this topology's CNI is " + str(cni))
    return True


def _ipip_unused(calico: CalicoConfig) -> str | None:
    if any(p.ipip_mode != "Never" and not p.disabled for p in calico.pools):
        return None
    return ("no IPPool has ipipMode Always or CrossSubnet, so there is no tunl0 (it applies if `lab apply` "
            "turns ipipMode on in a pool)")


DATAPLANE = DataPlane(
    name="calico", package=__name__, builder=loader.CalicoBuilder,
    enforcers=("calico",),
    enforcer_hint="Calico enforces policy itself (Felix): leave networkPolicy out or set it to calico",
    schema=config.SCHEMA,
    resource=_resource,
    resource_help="Calico's IPPool, BGPConfiguration, BGPPeer and Node (apiVersion projectcalico.org/v3)",
    live=config.is_calico, live_kinds=frozenset(config.KINDS),
    live_help="projectcalico.org/v3 IPPool, BGPConfiguration, BGPPeer and Node",
    api_group=live.API_GROUP, implicit_kinds=live.IMPLICIT_KINDS, live_held=live.held, live_view=live.view,
    ipip_unused=_ipip_unused, ipip_devices=(devices.IPIP_DEVICE,),
    node_daemons=lambda calico: 1 if calico.backend == "bird" else 0,
    ready="ready", explain="explain", graph="graph", caption="caption")
