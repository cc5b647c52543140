"""Walk a packet through a running lab, namespace by namespace, asking the kernel at every step.

At each namespace: the route lookup (`ip route get ... [iif X]`, and the matching FIB entry), then by
the output device: a VXLAN device (neighbour entry of the next hop, FDB entry giving the remote VTEP,
encapsulation, and the outer packet's own route), tunl0 (IPIP towards the route's gateway), a bridge
(its FDB picks the port), or a veth (the packet appears at the far end, in another namespace). A
packet addressed to the namespace itself is delivered, or decapsulated by the VXLAN device listening
on its UDP port / by tunl0 for IP protocol 4. Policy verdicts and masquerading are read from the
node's iptables. Nothing here comes from the topology file except which namespace is which.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any

from lab.policy import evaluator
from lab.topology.model import Topology
from lab.trace import nat, policy
from lab.trace.kernel import Kernel, Link, Netns, RouteAnswer
from lab.trace.model import Endpoint, Hop, Packet, Trace

MAX_HOPS = 24
IPIP = "IPIP"


@dataclass
class LabView:
    """What the lab's state says about its namespaces: who is who, by namespace and by IP."""

    lab: str
    summary: dict[str, Any]
    namespaces: list[str]
    by_netns: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)   # netns -> (kind, name, row)
    by_ip: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, rows in (("node", self.summary.get("nodes", [])), ("external", self.summary.get("externals", [])),
                           ("pod", self.summary.get("pods", []))):
            for row in rows:
                name = row.get("key", row["name"])
                self.by_netns[row["netns"]] = (kind, name, row)
                self.by_ip[row["ip"]] = (kind, name, row)
        self.underlay = self.summary["underlay"]["netns"]
        self.by_netns[self.underlay] = ("underlay", "underlay", {})

    def endpoint(self, text: str, role: str) -> Endpoint:
        from lab.errors import LabError
        for kind, name, row in list(self.by_netns.values()):
            if kind != "underlay" and text in (name, row.get("name") if kind == "pod" else None, row["ip"]):
                if kind == "pod" and text == row["name"] and sum(
                        1 for k, _, r in self.by_netns.values() if k == "pod" and r["name"] == text) > 1:
                    raise LabError(f"pod name {text!r} is ambiguous", "write it as namespace/pod")
                return Endpoint(kind, name, row["ip"], row["netns"], row.get("node"))
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            raise LabError(f"{role} {text!r}: no pod, node or external host of that name in lab {self.lab}",
                           "`lab status` lists them (pods as namespace/pod); an IP address works too") from None
        if role == "source":
            raise LabError(f"source {text}: not an address of a pod, node or external host of lab {self.lab}",
                           "a trace starts inside the lab; give a pod, node or external host")
        return Endpoint("ip", text, text, None)

    def target(self, netns: str) -> str:
        """What `lab exec` takes for a namespace."""
        kind, name, _ = self.by_netns.get(netns, ("", netns, {}))
        return netns if kind in ("underlay", "") else name

    def where(self, netns: str) -> str:
        kind, name, _ = self.by_netns.get(netns, ("namespace", netns, {}))
        return {"underlay": "underlay"}.get(kind, f"{kind} {name}")

    def hints(self, netns: str, link: Link) -> list[str]:
        """Namespaces most likely to hold a veth's far end, first; then every other namespace of the lab."""
        kind, name, row = self.by_netns.get(netns, ("", "", {}))
        first: list[str] = []
        if kind == "pod":
            first = [n for n, (k, nm, _) in self.by_netns.items() if k == "node" and nm == row.get("node")]
        elif kind in ("node", "external") and link.name == "eth0":
            first = [self.underlay]
        elif kind == "node":
            first = [p["netns"] for p in self.summary.get("pods", []) if p["node"] == name]
        elif kind == "underlay":
            first = [r["netns"] for r in self.summary.get("nodes", []) + self.summary.get("externals", [])
                     if r["name"] == link.name]
        return first + [n for n in self.namespaces if n not in first]


class Walker:
    """One trace: the packet's way through the lab's namespaces, from live kernel state."""

    def __init__(self, view: LabView, topology: Topology, kernel: Kernel, src: Endpoint, dst: Endpoint,
                 packet: Packet) -> None:
        self.view, self.topology, self.kernel = view, topology, kernel
        self.trace = Trace(src, dst, packet)
        self.stack: list[Packet] = []
        self.packet = packet
        self.policy_done: set[str] = set()
        self.verdict = self._verdict()

    # -- helpers -------------------------------------------------------------------------------------
    def _cmd(self, netns: str, *words: str) -> str:
        return f"lab exec {self.view.target(netns)} -- {' '.join(words)}"

    def _form(self) -> str:
        """What a capture shows on an interface crossed now: the plain packet, or its VXLAN / IPIP envelope."""
        if not self.stack:
            return "plain"
        return "ipip" if self.packet.protocol == IPIP else "vxlan"

    def _hop(self, netns: str, iif: str | None) -> Hop:
        where = self.view.where(netns)
        hop = Hop(netns, where, self.view.target(netns), iif)
        if iif:
            hop.cross(iif, self._form())
        self.trace.hops.append(hop)
        return hop

    def _fail(self, hop: Hop, reason: str, explanation: list[str]) -> Trace:
        hop.add("drop", reason)
        self.trace.outcome, self.trace.reason = "dropped", reason
        self.trace.explanation += explanation
        return self.trace

    def _verdict(self) -> evaluator.Verdict | None:
        src, dst = self.trace.src, self.trace.dst
        if self.topology.cluster.enforcer == "none" or "pod" not in (src.kind, dst.kind):
            return None
        pods = {p.key: p for p in self.topology.pods}
        a = pods.get(src.name) if src.kind == "pod" else ipaddress.IPv4Address(src.ip)
        b = pods.get(dst.name) if dst.kind == "pod" else ipaddress.IPv4Address(dst.ip)
        if a is None or b is None:
            return None
        packet = self.trace.packet
        found = evaluator.verdict(self.topology, a, b, packet.dport, packet.protocol)
        self.trace.verdict = {"allowed": found.allowed, "egress": found.egress, "ingress": found.ingress,
                              "evaluator": "lab/policy/evaluator.py"}
        return found

    # -- the walk ------------------------------------------------------------------------------------
    def run(self) -> Trace:
        src = self.trace.src
        assert src.netns is not None
        netns, iif = src.netns, None
        packet = self.trace.packet
        hop = self._hop(netns, None)
        hop.packet = packet.text()
        for _ in range(MAX_HOPS):
            self.packet = packet
            ns = self.kernel.ns(netns)
            iif_link = ns.link(iif)
            choose = iif is None and not self.stack and len(self.trace.hops) == 1 and src.kind != "pod"
            answer = ns.route_get(packet.dst, None if choose else packet.src, iif)
            if choose and answer.prefsrc and answer.prefsrc != packet.src:
                hop.add("source", f"the kernel picks source {answer.prefsrc} (the route's preferred source), "
                        f"not {packet.src}", self._cmd(netns, "ip", "route", "get", packet.dst), src=answer.prefsrc)
                packet = replace(packet, src=answer.prefsrc)
                self.trace.packet = packet
                hop.packet = packet.text()
            words = ["ip", "route", "get", "fibmatch", packet.dst] + (["from", packet.src, "iif", iif_link.name] if iif_link
                                                          else [])
            if answer.error:
                hop.add("route", f"no route to {packet.dst}: {answer.error}", self._cmd(netns, *words))
                return self._fail(hop, f"{hop.where} has no route to {packet.dst}",
                                  self._why_no_route(netns, packet))
            out_link = ns.link(answer.oif)
            hop.add("route", f"{answer.entry or answer.type}" + (f"  (table {answer.table})"
                                                                  if answer.table not in (254, 255) else ""),
                    self._cmd(netns, *words), route=answer.entry, type=answer.type, table=answer.table,
                    gateway=answer.gateway, oif=out_link.name if out_link else None)
            if answer.type == "local":
                if self.stack:
                    iif = self._decap(ns, hop, packet)
                    if iif is None:
                        return self._fail(hop, f"{packet.text()} reached {self.view.where(netns)} but no tunnel "
                                          "device takes it", ["no VXLAN device on that UDP port, no tunl0"])
                    packet = self.stack.pop()
                    continue
                hop.add("deliver", f"{packet.dst} is an address of this namespace: delivered to its socket "
                        f"({packet.protocol}" + (f" port {packet.dport})" if packet.dport else ")"),
                        self._cmd(netns, "ip", "-br", "addr"))
                return self.trace
            if answer.type != "unicast":
                return self._fail(hop, f"the route is {answer.type}: the kernel discards the packet",
                                  self._why_no_route(netns, packet, answer))
            oif = ns.link(answer.oif)
            assert oif is not None
            if iif is not None and self._policy(ns, hop, packet, oif) is False:
                return self.trace
            if not (oif.up and oif.carrier):
                state = "administratively down" if not oif.up else "up but without carrier (its peer is down)"
                hop.add("link", f"{oif.name} is {state}", self._cmd(netns, "ip", "link", "show", oif.name))
                return self._fail(hop, f"link {oif.name} on {self.view.where(netns)} is down",
                                  [f"{oif.name} is {state}: the kernel drops what it sends there",
                                   f"bring it up: lab exec {self.view.target(netns)} -- ip link set {oif.name} up"])
            nexthop = answer.gateway or packet.dst
            if oif.kind == "vxlan":
                outer = self._vxlan(ns, hop, packet, oif, nexthop)
                if outer is None:
                    return self.trace
                packet, iif = outer, None
                continue
            if oif.name == "tunl0":
                packet = self._ipip(ns, hop, packet, oif, nexthop)
                iif = None
                continue
            if not self.stack and self.view.by_netns.get(netns, ("",))[0] == "node" and oif.name == "eth0":
                packet = self._nat(ns, hop, packet, oif, answer)
            moved = self._leave(ns, hop, oif, nexthop)
            if moved is None:
                return self.trace
            netns, iif, hop = moved
            hop.packet = packet.text() if not self.stack else f"{packet.text()} | {self.stack[-1].text()}"
        return self._fail(hop, f"more than {MAX_HOPS} hops: a routing loop?", ["the route lookups never reached "
                                                                                "the destination"])

    # -- leaving a namespace ---------------------------------------------------------------------------
    def _leave(self, ns: Netns, hop: Hop, oif: Link, nexthop: str) -> tuple[str, int, Hop] | None:
        """Send the frame out of `oif` towards `nexthop`: through a bridge's port or a veth, into the next namespace."""
        neighbour = ns.neighbour(oif.index, nexthop)
        mac = neighbour.mac if neighbour else None
        hop.add("neighbour", f"{nexthop} dev {oif.name} lladdr {mac} {neighbour.state}" if neighbour and mac else
                f"{nexthop} dev {oif.name}: no entry yet, the kernel ARPs for it on {oif.name}",
                self._cmd(ns.name, "ip", "neigh", "show", nexthop, "dev", oif.name), mac=mac)
        port: Link | None = oif
        if oif.kind == "bridge":
            port = self._bridge_port(ns, hop, oif, mac, nexthop)
            if port is None:
                self._fail(hop, f"{oif.name} has no port towards {nexthop}", [
                    f"neither the bridge's FDB nor any port's far end holds {nexthop}"])
                return None
        assert port is not None
        hop.oif = port.name
        hop.cross(oif.name, self._form())
        hop.cross(port.name, self._form())
        return self._cross(ns, port, mac, nexthop)

    def _cross(self, ns: Netns, port: Link, mac: str | None, nexthop: str) -> tuple[str, int, Hop] | None:
        far = self.kernel.peer(ns, port, self.view.hints(ns.name, port))
        if far is None:
            hop = self.trace.hops[-1]
            self._fail(hop, f"cannot follow {port.name} ({port.kind}) out of {ns.name}",
                       ["only veth pairs, bridges, VXLAN and tunl0 are followed"])
            return None
        far_ns, far_link = far
        if far_link.master is None:
            return far_ns.name, far_link.index, self._hop(far_ns.name, far_link.name)
        bridge = far_ns.link(far_link.master)
        assert bridge is not None
        if mac == bridge.mac or far_ns.owns(nexthop):
            hop = self._hop(far_ns.name, far_link.name)
            if self.view.by_netns.get(far_ns.name, ("",))[0] == "underlay":
                hop.where = "router (underlay)"
            hop.add("bridge", f"{far_link.name} is a port of {bridge.name}; the frame is addressed to {bridge.name} "
                    f"itself ({bridge.mac}), so it goes up to this namespace's IP layer on {bridge.name}",
                    self._cmd(far_ns.name, "ip", "link", "show", bridge.name))
            hop.cross(bridge.name, self._form())
            return far_ns.name, bridge.index, hop
        hop = self._hop(far_ns.name, far_link.name)
        hop.where = f"switch {bridge.name} ({self.view.where(far_ns.name)})"
        hop.packet = self.packet.text()
        out = self._bridge_port(far_ns, hop, bridge, mac, nexthop)
        if out is None:
            self._fail(hop, f"switch {bridge.name} has no port towards {nexthop}", [])
            return None
        if self._policy(far_ns, hop, self.packet, out) is False:    # bridged traffic crosses FORWARD (br_netfilter)
            return None
        hop.oif = out.name
        hop.cross(out.name, self._form())
        return self._cross(far_ns, out, mac, nexthop)

    def _bridge_port(self, ns: Netns, hop: Hop, bridge: Link, mac: str | None, nexthop: str) -> Link | None:
        """The bridge port a frame for `mac` leaves by: the FDB's entry, else the port whose far end owns `nexthop`."""
        if mac:
            for entry_mac, _dst, port_index in ns.fdb(master=bridge.index):
                port = ns.link(port_index)
                if entry_mac == mac and port is not None and port.index != bridge.index:
                    hop.add("fdb", f"{mac} dev {port.name} master {bridge.name}", self._cmd(
                        ns.name, "bridge", "fdb", "show", "br", bridge.name), port=port.name, mac=mac)
                    return port
        owner = self.view.by_ip.get(nexthop)
        if owner is not None:
            nsid = ns.nsid_of(owner[2]["netns"])
            for port in ns.links().values():
                if port.master == bridge.index and port.peer_nsid is not None and port.peer_nsid == nsid:
                    hop.add("fdb", f"no FDB entry for {mac or nexthop} yet: {bridge.name} floods the frame; "
                            f"{nexthop} answers behind port {port.name}",
                            self._cmd(ns.name, "bridge", "fdb", "show", "br", bridge.name), port=port.name)
                    return port
        return None

    # -- tunnels -----------------------------------------------------------------------------------------
    def _vxlan(self, ns: Netns, hop: Hop, packet: Packet, dev: Link, nexthop: str) -> Packet | None:
        neighbour = ns.neighbour(dev.index, nexthop)
        cmd_neigh = self._cmd(ns.name, "ip", "neigh", "show", "dev", dev.name)
        if neighbour is None or not neighbour.mac:
            hop.add("neighbour", f"no ARP entry for the VTEP {nexthop} on {dev.name}", cmd_neigh)
            self._fail(hop, f"no neighbour entry for {nexthop} on {dev.name}",
                       [f"flanneld/Felix program a PERMANENT entry per remote VTEP; {dev.name} does no ARP "
                        "(nolearning), so without it the packet is dropped"])
            return None
        hop.add("neighbour", f"{nexthop} dev {dev.name} lladdr {neighbour.mac} {neighbour.state}", cmd_neigh,
                mac=neighbour.mac)
        remote = next((d for m, d, _ in ns.fdb(ifindex=dev.index) if m == neighbour.mac and d), None)
        cmd_fdb = self._cmd(ns.name, "bridge", "fdb", "show", "dev", dev.name)
        if remote is None:
            hop.add("fdb", f"no FDB entry for {neighbour.mac} on {dev.name}", cmd_fdb)
            self._fail(hop, f"no FDB entry for the VTEP MAC {neighbour.mac}", [
                "without it the kernel does not know which node's IP to send the UDP packet to"])
            return None
        hop.add("fdb", f"{neighbour.mac} dst {remote} self permanent", cmd_fdb, mac=neighbour.mac, dst=remote)
        vx = dev.vxlan or {}
        lower = ns.link(vx.get("link"))
        outer = Packet(vx.get("local") or "", remote, "UDP", 0, vx.get("port") or 8472)
        hop.add("encap", f"VXLAN VNI {vx.get('vni')}: the inner frame ({packet.src} > {packet.dst}, to "
                f"{neighbour.mac}) goes inside UDP {outer.src} > {remote} port {outer.dport}; inner MTU "
                f"{dev.mtu} ({dev.name}), outer MTU {lower.mtu if lower else '?'} ({lower.name if lower else '?'})",
                self._cmd(ns.name, "ip", "-d", "link", "show", dev.name), vni=vx.get("vni"), port=outer.dport,
                outer_src=outer.src, outer_dst=remote, inner_mtu=dev.mtu, outer_mtu=lower.mtu if lower else None)
        hop.cross(dev.name)
        self.stack.append(packet)
        return outer

    def _ipip(self, ns: Netns, hop: Hop, packet: Packet, dev: Link, nexthop: str) -> Packet:
        route = ns.route_get(nexthop)
        outer = Packet(route.prefsrc or "", nexthop, IPIP, ttl=packet.ttl)
        how = ("the kernel's ipip device" if dev.kind == "ipip" else
               "a TUN device: the lab's route agent reads the inner packet and sends IP protocol 4 through a raw "
               "socket (this kernel has no ipip module)")
        lower = ns.link(route.oif)
        hop.add("encap", f"IPIP: {packet.src} > {packet.dst} goes inside IP protocol 4 {outer.src} > {nexthop} "
                f"(outer destination = the route's gateway); tunl0 is {how}; inner MTU {dev.mtu}, outer MTU "
                f"{lower.mtu if lower else '?'}", self._cmd(ns.name, "ip", "-d", "link", "show", "tunl0"),
                outer_src=outer.src, outer_dst=nexthop, implementation=dev.kind or "tun", inner_mtu=dev.mtu)
        hop.cross(dev.name)
        self.stack.append(packet)
        return outer

    def _decap(self, ns: Netns, hop: Hop, packet: Packet) -> int | None:
        if packet.protocol == "UDP":
            for link in ns.links().values():
                vx = link.vxlan
                if link.kind == "vxlan" and vx and (vx.get("port") or 8472) == packet.dport:
                    hop.add("decap", f"UDP port {packet.dport} belongs to {link.name} (VXLAN VNI {vx.get('vni')}): "
                            f"decapsulated; the inner frame is addressed to {link.name}'s MAC {link.mac}, so it is "
                            f"received on {link.name}", self._cmd(ns.name, "ip", "-d", "link", "show", link.name),
                            device=link.name, vni=vx.get("vni"))
                    hop.cross(link.name)
                    return link.index
        if packet.protocol == IPIP:
            tunl = ns.link_named("tunl0")
            if tunl is not None:
                how = ("the kernel's ipip module decapsulates it" if tunl.kind == "ipip" else
                       "the lab's route agent (userspace IPIP: this kernel has no ipip module) receives it on a raw "
                       "socket and writes the inner packet into the TUN device")
                hop.add("decap", f"IP protocol 4 for a local address: {how}; the inner packet is received on tunl0",
                        self._cmd(ns.name, "ip", "-d", "link", "show", "tunl0"), device="tunl0")
                hop.cross("tunl0")
                return tunl.index
        return None

    # -- iptables --------------------------------------------------------------------------------------
    def _nat(self, ns: Netns, hop: Hop, packet: Packet, oif: Link, answer: RouteAnswer) -> Packet:
        result = nat.postrouting(ns.iptables("nat"), packet.src, packet.dst, oif.name, packet.protocol,
                                 nat.ipset_members(ns.name))
        cmd = self._cmd(ns.name, "iptables-save", "-t", "nat")
        if result.action in ("MASQUERADE", "SNAT"):
            new_src = answer.prefsrc or next((a for a, _, i in ns.addresses() if i == oif.index), packet.src)
            hop.add("nat", f"{result.action}: the source {packet.src} is rewritten to {oif.name}'s address {new_src} "
                    f"by `{result.rule}`", cmd, action=result.action, rule=result.rule, new_src=new_src)
            return replace(packet, src=new_src)
        if result.rule:
            hop.add("nat", f"no masquerade: `{result.rule}` returns first", cmd, action="none", rule=result.rule)
        return packet

    def _policy(self, ns: Netns, hop: Hop, packet: Packet, oif: Link) -> bool | None:
        """The policy decision at this node, when it is the source's (egress) or destination's (ingress) node."""
        verdict = self.verdict
        kind, node, _ = self.view.by_netns.get(ns.name, ("", "", {}))
        if verdict is None or kind != "node" or self.stack:
            return None
        src, dst = self.trace.src, self.trace.dst
        decided = None
        for direction, pod, side in (("Egress", src, verdict.egress), ("Ingress", dst, verdict.ingress)):
            if pod.kind != "pod" or pod.node != node or direction in self.policy_done:
                continue
            if direction == "Ingress" and oif.kind == "vxlan":
                continue
            self.policy_done.add(direction)
            located = self._locate(ns, pod, direction, side, oif)
            denied = side.startswith("denied")
            rule = located.deciding_rule or "(no rule found in iptables-save: is the enforcer's sync done?)"
            hop.add("policy", f"{direction.lower()} of {pod.name}: {side} -> {located.action}; chain "
                    f"{located.pod_chain or '?'}" + (f", policy chain {located.policy_chain}"
                                                      if located.policy_chain else "") + f"; rule: {rule}",
                    self._cmd(ns.name, "iptables-save", "-t", "filter") + (f" | grep {located.pod_chain}"
                                                                           if located.pod_chain else ""),
                    direction=direction, verdict=side, chain=located.pod_chain, policy_chain=located.policy_chain,
                    rule=located.deciding_rule, action=located.action)
            if denied:
                decided = False
                self.trace.beyond.append((ns.name, oif.name))
                self._fail(hop, f"denied by NetworkPolicy ({direction.lower()} of {pod.name}): {located.action} in "
                           f"{located.pod_chain}", [
                               f"{pod.name} is isolated for {direction.lower()} by "
                               f"{side.split('isolated by ', 1)[-1]} and no rule of those policies admits "
                               f"{packet.protocol}" + (f" port {packet.dport}" if packet.dport else "")
                               + f" from {src.name}",
                               f"the reference evaluator agrees: {direction.lower()} {side}",
                               f"see the chain: {self._cmd(ns.name, 'iptables-save', '-t', 'filter')}"])
                break
        return decided

    def _locate(self, ns: Netns, pod: Endpoint, direction: str, side: str, oif: Link) -> policy.Located:
        save = ns.iptables("filter")
        enforcer = self.topology.cluster.enforcer
        name, namespace = pod.name.split("/", 1)[1], pod.name.split("/", 1)[0]
        if enforcer == "kube-router":
            return policy.kube_router(save, name, namespace, pod.ip, direction, side)
        iface = oif.name if direction == "Ingress" else self._host_iface(ns, pod.ip)
        return policy.felix(save, iface or "?", direction, side)

    def _host_iface(self, ns: Netns, pod_ip: str) -> str | None:
        link = ns.link(ns.route_get(pod_ip).oif)
        return link.name if link else None

    # -- explanations ----------------------------------------------------------------------------------
    def _why_no_route(self, netns: str, packet: Packet, answer: RouteAnswer | None = None) -> list[str]:
        lines: list[str] = []
        dst_owner = self.view.by_ip.get(packet.dst) or self.view.by_ip.get(self.trace.dst.ip)
        node_hops = [h for h in self.trace.hops if h.where.startswith("node ")]
        last_node = node_hops[-1] if node_hops else None
        summary = self.view.summary
        if answer is not None and answer.type == "blackhole":
            lines.append(f"{answer.entry}: Calico's blackhole for this node's own block; the destination IP "
                         "is in the block but no workload has it here")
        if last_node is not None and dst_owner is not None and dst_owner[0] == "pod":
            pod_node = dst_owner[2]["node"]
            used = next((s.data.get("route") for s in last_node.steps if s.kind == "route"), "")
            lines.append(f"{last_node.where} sent {packet.dst} (a pod on {pod_node}) by `{used}`, not by a "
                         f"route for {pod_node}'s pod subnet, so it left towards the underlay router, which "
                         "knows no pod subnets")
            for node in summary.get("nodes", []):
                if f"node {node['name']}" == last_node.where:
                    refused = [n for n in node.get("notes", []) if "NOT installed" in n and f"node {pod_node})" in n]
                    lines += refused
            if summary.get("cni") == "calico" and summary.get("runtime", {}).get("bird"):
                lines.append(f"Calico learns that block over BGP: check the sessions with `lab calicoctl node status "
                             f"{last_node.where[5:]}` and the route with `lab birdc {last_node.where[5:]} show route`")
        if not lines and self.view.by_netns.get(netns, ("",))[0] == "underlay":
            lines.append(f"the lab's underlay router knows only the lab's segments (and, with external hosts, the pod "
                         f"subnets): {packet.dst} is outside the lab, which has no uplink")
        if not lines:
            lines.append(f"{self.view.where(netns)} has no route for {packet.dst}")
        return lines


def trace(view: LabView, topology: Topology, src: Endpoint, dst: Endpoint, packet: Packet) -> Trace:
    kernel = Kernel()
    try:
        return Walker(view, topology, kernel, src, dst, packet).run()
    finally:
        kernel.close()
