"""Terway (Alibaba Cloud ACK): ENI multi-IP with veth + policy routing, and VPC-route mode (reference §8).

The folder: config.py (`cluster.terway`, pure), ipam.py (ENIs and vSwitch secondary IPs, pure), load.py
(the loader's Terway part, pure), plan.py (plan data, the emulated VPC, `describe`), status.py (`lab status`
lines). NetworkPolicy is Calico Felix's (the existing enforcer: Terway's host veths are `cali` + the hash
Calico uses). Readiness: every route is in the plan, so there is nothing more to wait for; no daemon runs.
Its one registration is below (lab/topology/dataplanes.py)."""

from __future__ import annotations

from lab.cni.terway import config, load
from lab.topology.dataplanes import DataPlane

DATAPLANE = DataPlane(
    name=config.NAME, package=__name__, builder=load.TerwayBuilder,
    enforcers=config.ENFORCERS,
    enforcer_hint="Terway's veth modes enforce policy with Calico's Felix: leave networkPolicy out or set it to "
                  "calico",
    schema=config.SCHEMA,
    ipip_unused=lambda terway: "Terway uses no IPIP (pods are routed in the VPC)",
    runtime="plan", graph="graph")  # no daemon: the plan module has no tools/start, so the runtime defaults apply
