"""Walk a packet through a running lab, namespace by namespace, asking the kernel at every step.

At each namespace: the route lookup (`ip route get ... [iif X]`, and the matching FIB entry), then by
the output device: a VXLAN device (neighbour entry of the next hop, FDB entry giving the remote VTEP,
encapsulation, and the outer packet's own route), tunl0 (IPIP towards the route's gateway), a bridge
(its FDB picks the port), or a veth (the packet appears at the far end, in another namespace). A
packet addressed to the namespace itself is delivered (to a listening socket, or answered by the
kernel), or decapsulated by the VXLAN device listening on its UDP port / by tunl0 for IP protocol 4.
Policy verdicts are the reference evaluator's, located in the node's iptables; masquerading is read from
the node's nat table. Nothing here comes from the topology file except which namespace is which.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from lab.policy import evaluator
from lab.topology import dataplanes
from lab.topology.model import Topology
from lab.trace import explain, nat, policy
from lab.trace.kernel import Kernel, Link, Netns, RouteAnswer
from lab.trace.model import Endpoint, Hop, Packet, Trace
from lab.trace.view import LabView

MAX_HOPS = 24
IPIP = "IPIP"
IPIP_DEVICES = dataplanes.ipip_devices()   # Calico's tunl0 and flannel's flannel.ipip


@dataclass
class At:
    """Where the walk stands: the namespace, the interface the packet came in by, its hop, the packet."""

    netns: str
    iif: int | None
    hop: Hop
    packet: Packet


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
    def cmd(self, netns: str, *words: str) -> str:
        """The command a learner types to see a fact of `netns` (always naming the lab)."""
        return f"lab exec {self.view.target(netns)} --lab {self.view.lab} -- {' '.join(words)}"

    def lab_cmd(self, *words: str) -> str:
        return f"lab {' '.join(words)} --lab {self.view.lab}"

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

    def fail(self, hop: Hop, reason: str, explanation: list[str]) -> None:
        hop.add("drop", reason)
        self.trace.outcome, self.trace.reason = "dropped", reason
        self.trace.explanation += explanation

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
        at: At | None = self._start()
        for _ in range(MAX_HOPS):
            assert at is not None
            at = self._step(at)
            if at is None:
                return self.trace
        hop = self.trace.hops[-1]
        self.fail(hop, f"more than {MAX_HOPS} hops: a routing loop?", ["the route lookups never reached the "
                                                                       "destination"])
        return self.trace

    def _start(self) -> At:
        src = self.trace.src
        assert src.netns is not None
        hop = self._hop(src.netns, None)
        hop.packet = self.trace.packet.text()
        return At(src.netns, None, hop, self.trace.packet)

    def _step(self, at: At) -> At | None:
        """One route lookup in `at.netns` and what follows from it; None once the walk ends."""
        self.packet = at.packet
        ns = self.kernel.ns(at.netns)
        answer = self._route(ns, at)
        if answer is None:
            return None
        if answer.type == "local":
            return self._arrive(ns, at)
        if answer.type != "unicast":
            self.fail(at.hop, f"the route is {answer.type}: the kernel discards the packet",
                      explain.no_route(self, at.netns, at.packet, answer))
            return None
        oif = ns.link(answer.oif)
        assert oif is not None
        nexthop = answer.gateway or at.packet.dst
        if at.iif is not None and self._policy(ns, at.hop, at.packet, oif) is False:
            return None
        if self._down(ns, at.hop, oif, nexthop):
            return None
        return self._forward(ns, at, answer, oif, nexthop)

    def _route(self, ns: Netns, at: At) -> RouteAnswer | None:
        """The route lookup (choosing the source address for a node or host that sends), as a step."""
        iif_link = ns.link(at.iif)
        choose = at.iif is None and not self.stack and len(self.trace.hops) == 1 and self.trace.src.kind != "pod"
        answer = ns.route_get(at.packet.dst, None if choose else at.packet.src, at.iif)
        if choose and answer.prefsrc and answer.prefsrc != at.packet.src:
            at.hop.add("source", f"the kernel picks source {answer.prefsrc} (the route's preferred source), "
                       f"not {at.packet.src}", self.cmd(ns.name, "ip", "route", "get", at.packet.dst),
                       src=answer.prefsrc)
            at.packet = self.packet = self.trace.packet = replace(at.packet, src=answer.prefsrc)
            at.hop.packet = at.packet.text()
        packet = at.packet
        words = ["ip", "route", "get", "fibmatch", packet.dst] + (
            ["from", packet.src, "iif", iif_link.name] if iif_link else [])
        if answer.error:
            at.hop.add("route", f"no route to {packet.dst}: {answer.error}", self.cmd(ns.name, *words))
            self.trace.beyond += explain.exits(ns, iif_link)
            self.fail(at.hop, f"{at.hop.where} has no route to {packet.dst}", explain.no_route(self, ns.name, packet))
            return None
        out_link = ns.link(answer.oif)
        table = f"  (table {answer.table})" if answer.table not in (254, 255) else ""
        at.hop.add("route", f"{answer.entry or answer.type}{table}", self.cmd(ns.name, *words), route=answer.entry,
                   type=answer.type, table=answer.table, gateway=answer.gateway,
                   oif=out_link.name if out_link else None)
        return answer

    def _arrive(self, ns: Netns, at: At) -> At | None:
        """The packet is for this namespace: decapsulate an envelope, or deliver the packet."""
        if not self.stack:
            self._deliver(ns, at.hop, at.packet)
            return None
        iif = self._decap(ns, at.hop, at.packet)
        if iif is None:
            self.fail(at.hop, f"{at.packet.text()} reached {self.view.where(ns.name)} but no tunnel device takes it",
                      ["no VXLAN device on that UDP port, no tunl0"])
            return None
        return At(at.netns, iif, at.hop, self.stack.pop())

    def _forward(self, ns: Netns, at: At, answer: RouteAnswer, oif: Link, nexthop: str) -> At | None:
        """Send the packet out of `oif`: into a tunnel (same namespace, outer packet), or to the next namespace."""
        if oif.kind == "vxlan":
            outer = self._vxlan(ns, at.hop, at.packet, oif, nexthop)
            return None if outer is None else At(at.netns, None, at.hop, outer)
        if oif.name in IPIP_DEVICES and oif.kind in ("ipip", "tun"):
            return At(at.netns, None, at.hop, self._ipip(ns, at.hop, at.packet, oif, nexthop))
        packet = at.packet
        if not self.stack and self.view.kind(ns.name) == "node" and oif.name == "eth0":
            packet = self.packet = self._nat(ns, at.hop, packet, oif, answer)
        moved = self._leave(ns, at.hop, oif, nexthop)
        if moved is None:
            return None
        netns, iif, hop = moved
        hop.packet = packet.text() if not self.stack else f"{packet.text()} | {self.stack[-1].text()}"
        return At(netns, iif, hop, packet)

    # -- arriving --------------------------------------------------------------------------------------
    def _deliver(self, ns: Netns, hop: Hop, packet: Packet) -> None:
        """Delivered: to a socket when one listens, else what the kernel answers (RST, port unreachable)."""
        if packet.protocol == "ICMP":
            ignored = ns.sysctl("net.ipv4.icmp_echo_ignore_all") == "1"
            text = (f"{packet.dst} is an address of this namespace; " + (
                "net.ipv4.icmp_echo_ignore_all=1: the kernel ignores the echo request" if ignored else
                "the kernel answers the echo request itself (echo reply)"))
            hop.add("deliver", text, self.cmd(ns.name, "sysctl", "net.ipv4.icmp_echo_ignore_all"), listening=None)
            return
        listening = ns.listening(packet.protocol, packet.dst, packet.dport)
        flag = "-ltn" if packet.protocol == "TCP" else "-lun"
        command = self.cmd(ns.name, "ss", flag, f"'sport = :{packet.dport}'")
        if listening:
            hop.add("deliver", f"{packet.dst} is an address of this namespace: delivered to the socket listening on "
                    f"{packet.protocol} port {packet.dport}", command, listening=True)
            return
        answer = ("the kernel answers the SYN with a RST (connection refused)" if packet.protocol == "TCP" else
                  "the kernel answers with ICMP port unreachable")
        hop.add("deliver", f"{packet.dst} is an address of this namespace, but no socket listens on "
                f"{packet.protocol} port {packet.dport}: {answer}", command, listening=False, answer=answer)
        self.trace.reason = f"no socket on {packet.protocol} port {packet.dport}: {answer}"

    # -- links ----------------------------------------------------------------------------------------
    def _down(self, ns: Netns, hop: Hop, link: Link, nexthop: str, bridge: Link | None = None) -> bool:
        """When `link` cannot carry the packet, explain why (naming the device to bring up) and end the walk."""
        if link.kind == "bridge" and link.up and not link.carrier:
            found = self._find_port(ns, link, self._neighbour_mac(ns, link, nexthop), nexthop)
            if found is not None and not (found[0].up and found[0].carrier):
                return self._down(ns, hop, found[0], nexthop, bridge=link)
        if link.up and link.carrier:
            return False
        far = self.kernel.peer(ns, link, self.view.hints(ns.name, link)) if link.peer_index is not None else None
        if not link.up:
            state, fix = "administratively down", self.cmd(ns.name, "ip", "link", "set", link.name, "up")
        elif far is not None and not far[1].up:
            state = f"up but without carrier: its peer {far[1].name} in {self.view.where(far[0].name)} is down"
            fix = self.cmd(far[0].name, "ip", "link", "set", far[1].name, "up")
        elif link.kind == "bridge":
            state = "up but without carrier: none of its ports is up"
            fix = f"bring up its port towards {nexthop} ({self.cmd(ns.name, 'bridge', 'link', 'show')} lists them)"
        else:
            state, fix = "up but without carrier", f"bring up what {link.name} connects to"
        role = f" (a port of bridge {bridge.name})" if bridge is not None else ""
        text = f"{link.name}{role} is {state}"
        hop.add("link", text, self.cmd(ns.name, "ip", "link", "show", link.name), device=link.name, up=link.up,
                carrier=link.carrier, fix=fix)
        if far is not None and far[1].up:
            self.trace.beyond.append((far[0].name, far[1].name))
        self.fail(hop, f"link {link.name}{role} on {self.view.where(ns.name)} is down",
                  [f"{text}: the kernel drops what it sends there", f"bring it up: {fix}"])
        return True

    # -- leaving a namespace ---------------------------------------------------------------------------
    def _neighbour_mac(self, ns: Netns, oif: Link, nexthop: str) -> str | None:
        neighbour = ns.neighbour(oif.index, nexthop)
        return neighbour.mac if neighbour else None

    def _leave(self, ns: Netns, hop: Hop, oif: Link, nexthop: str) -> tuple[str, int, Hop] | None:
        """Send the frame out of `oif` towards `nexthop`: through a bridge's port or a veth, into the next namespace."""
        neighbour = ns.neighbour(oif.index, nexthop)
        mac = neighbour.mac if neighbour else None
        hop.add("neighbour", f"{nexthop} dev {oif.name} lladdr {mac} {neighbour.state}" if neighbour and mac else
                f"{nexthop} dev {oif.name}: no entry yet, the kernel ARPs for it on {oif.name}",
                self.cmd(ns.name, "ip", "neigh", "show", nexthop, "dev", oif.name), mac=mac)
        port: Link | None = oif
        if oif.kind == "bridge":
            port = self._bridge_port(ns, hop, oif, mac, nexthop)
            if port is None:
                self.fail(hop, f"{oif.name} has no port towards {nexthop}", [
                    f"neither the bridge's FDB nor any port's far end holds {nexthop}"])
                return None
            if self._down(ns, hop, port, nexthop, bridge=oif):
                return None
        assert port is not None
        hop.oif = port.name
        hop.cross(oif.name, self._form())
        hop.cross(port.name, self._form())
        return self._cross(ns, port, mac, nexthop)

    def _cross(self, ns: Netns, port: Link, mac: str | None, nexthop: str) -> tuple[str, int, Hop] | None:
        far = self.kernel.peer(ns, port, self.view.hints(ns.name, port))
        if far is None:
            self.fail(self.trace.hops[-1], f"cannot follow {port.name} ({port.kind}) out of {ns.name}",
                      ["only veth pairs, bridges, VXLAN and tunl0 are followed"])
            return None
        far_ns, far_link = far
        if far_link.master is None:
            return far_ns.name, far_link.index, self._hop(far_ns.name, far_link.name)
        bridge = far_ns.link(far_link.master)
        assert bridge is not None
        if mac == bridge.mac or far_ns.owns(nexthop):
            return self._up_to_bridge(far_ns, far_link, bridge)
        return self._switch(far_ns, far_link, bridge, mac, nexthop)

    def _up_to_bridge(self, ns: Netns, port: Link, bridge: Link) -> tuple[str, int, Hop]:
        """A frame for the bridge's own MAC goes up to the namespace's IP layer on the bridge."""
        hop = self._hop(ns.name, port.name)
        if self.view.kind(ns.name) == "underlay":
            hop.where = "router (underlay)"
        hop.add("bridge", f"{port.name} is a port of {bridge.name}; the frame is addressed to {bridge.name} "
                f"itself ({bridge.mac}), so it goes up to this namespace's IP layer on {bridge.name}",
                self.cmd(ns.name, "ip", "link", "show", bridge.name))
        hop.cross(bridge.name, self._form())
        return ns.name, bridge.index, hop

    def _switch(self, ns: Netns, port: Link, bridge: Link, mac: str | None,
                nexthop: str) -> tuple[str, int, Hop] | None:
        """A bridge that only switches the frame (an underlay segment): its FDB picks the port out."""
        hop = self._hop(ns.name, port.name)
        hop.where = f"switch {bridge.name} ({self.view.where(ns.name)})"
        hop.packet = self.packet.text()
        out = self._bridge_port(ns, hop, bridge, mac, nexthop)
        if out is None:
            self.fail(hop, f"switch {bridge.name} has no port towards {nexthop}", [])
            return None
        if self._policy(ns, hop, self.packet, out) is False:    # bridged traffic crosses FORWARD (br_netfilter)
            return None
        if self._down(ns, hop, out, nexthop, bridge=bridge):
            return None
        hop.oif = out.name
        hop.cross(out.name, self._form())
        return self._cross(ns, out, mac, nexthop)

    def _find_port(self, ns: Netns, bridge: Link, mac: str | None, nexthop: str) -> tuple[Link, bool] | None:
        """The bridge port towards `mac` / `nexthop`, and whether the FDB said so (else: the port whose far end
        owns `nexthop`, where a flooded frame is answered)."""
        if mac:
            for entry_mac, _dst, port_index in ns.fdb(master=bridge.index):
                port = ns.link(port_index)
                if entry_mac == mac and port is not None and port.index != bridge.index:
                    return port, True
        owner = self.view.by_ip.get(nexthop)
        if owner is not None:
            nsid = ns.nsid_of(owner[2]["netns"])
            for port in ns.links().values():
                if port.master == bridge.index and port.peer_nsid is not None and port.peer_nsid == nsid:
                    return port, False
        return None

    def _bridge_port(self, ns: Netns, hop: Hop, bridge: Link, mac: str | None, nexthop: str) -> Link | None:
        """The bridge port a frame for `mac` leaves by, as a step."""
        found = self._find_port(ns, bridge, mac, nexthop)
        if found is None:
            return None
        port, learned = found
        command = self.cmd(ns.name, "bridge", "fdb", "show", "br", bridge.name)
        if learned:
            hop.add("fdb", f"{mac} dev {port.name} master {bridge.name}", command, port=port.name, mac=mac)
        else:
            hop.add("fdb", f"no FDB entry for {mac or nexthop} yet: {bridge.name} floods the frame; "
                    f"{nexthop} answers behind port {port.name}", command, port=port.name)
        return port

    # -- tunnels -----------------------------------------------------------------------------------------
    def _vxlan(self, ns: Netns, hop: Hop, packet: Packet, dev: Link, nexthop: str) -> Packet | None:
        vx = dev.vxlan or {}
        lower = ns.link(vx.get("link"))
        neighbour = ns.neighbour(dev.index, nexthop)
        cmd_neigh = self.cmd(ns.name, "ip", "neigh", "show", "dev", dev.name)
        if neighbour is None or not neighbour.mac:
            hop.add("neighbour", f"no ARP entry for the VTEP {nexthop} on {dev.name}", cmd_neigh)
            self.trace.beyond += [(ns.name, lower.name)] if lower is not None and lower.up else []
            self.fail(hop, f"no neighbour entry for {nexthop} on {dev.name}",
                      [f"flanneld/Felix program a PERMANENT entry per remote VTEP; {dev.name} does no ARP "
                       "(nolearning), so without it the packet is dropped"])
            return None
        hop.add("neighbour", f"{nexthop} dev {dev.name} lladdr {neighbour.mac} {neighbour.state}", cmd_neigh,
                mac=neighbour.mac)
        remote = next((d for m, d, _ in ns.fdb(ifindex=dev.index) if m == neighbour.mac and d), None)
        cmd_fdb = self.cmd(ns.name, "bridge", "fdb", "show", "dev", dev.name)
        if remote is None:
            hop.add("fdb", f"no FDB entry for {neighbour.mac} on {dev.name}", cmd_fdb)
            self.trace.beyond += [(ns.name, lower.name)] if lower is not None and lower.up else []
            self.fail(hop, f"no FDB entry for the VTEP MAC {neighbour.mac}", [
                "without it the kernel does not know which node's IP to send the UDP packet to"])
            return None
        hop.add("fdb", f"{neighbour.mac} dst {remote} self permanent", cmd_fdb, mac=neighbour.mac, dst=remote)
        outer = Packet(vx.get("local") or "", remote, "UDP", 0, vx.get("port") or 8472)
        hop.add("encap", f"VXLAN VNI {vx.get('vni')}: the inner frame ({packet.src} > {packet.dst}, to "
                f"{neighbour.mac}) goes inside UDP {outer.src} > {remote} port {outer.dport}; inner MTU "
                f"{dev.mtu} ({dev.name}), outer MTU {lower.mtu if lower else '?'} ({lower.name if lower else '?'})",
                self.cmd(ns.name, "ip", "-d", "link", "show", dev.name), vni=vx.get("vni"), port=outer.dport,
                outer_src=outer.src, outer_dst=remote, inner_mtu=dev.mtu, outer_mtu=lower.mtu if lower else None)
        hop.cross(dev.name)
        self.stack.append(packet)
        return outer

    def _ipip(self, ns: Netns, hop: Hop, packet: Packet, dev: Link, nexthop: str) -> Packet:
        route = ns.route_get(nexthop)
        outer = Packet(route.prefsrc or "", nexthop, IPIP, ttl=packet.ttl)
        ebpf = dev.kind == "tun" and any("encap" in name for name in ns.bpf_programs(dev.index, "egress"))
        how = ("the kernel's ipip device" if dev.kind == "ipip" else
               "a TUN device whose tc egress runs the lab's eBPF program (ipip_encap): it adds the outer header "
               "and redirects the packet out of the underlay device (this kernel has no ipip module)" if ebpf else
               "a TUN device: the lab's route agent reads the inner packet and sends IP protocol 4 through a raw "
               "socket (this kernel has no ipip module)")
        lower = ns.link(route.oif)
        command = (self.cmd(ns.name, "tc", "filter", "show", "dev", dev.name, "egress") if ebpf else
                   self.cmd(ns.name, "ip", "-d", "link", "show", dev.name))
        hop.add("encap", f"IPIP: {packet.src} > {packet.dst} goes inside IP protocol 4 {outer.src} > {nexthop} "
                f"(outer destination = the route's gateway); {dev.name} is {how}; inner MTU {dev.mtu}, outer MTU "
                f"{lower.mtu if lower else '?'}", command, outer_src=outer.src, outer_dst=nexthop,
                implementation="ebpf" if ebpf else dev.kind or "tun", inner_mtu=dev.mtu)
        if ebpf:   # redirected at tc egress, before the device's packet taps: a capture there sees nothing
            hop.add("note", f"tcpdump -i {dev.name} does not show this packet: the eBPF program redirects it at "
                    f"tc egress, before {dev.name}'s packet taps (the kernel's ipip device would show it)")
        else:
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
                            f"received on {link.name}", self.cmd(ns.name, "ip", "-d", "link", "show", link.name),
                            device=link.name, vni=vx.get("vni"))
                    hop.cross(link.name)
                    return link.index
        if packet.protocol == IPIP:
            tunl = next((found for name in IPIP_DEVICES if (found := ns.link_named(name)) is not None), None)
            if tunl is not None:
                eth0 = ns.link_named("eth0")
                ebpf = tunl.kind == "tun" and eth0 is not None and any(
                    "decap" in name for name in ns.bpf_programs(eth0.index, "ingress"))
                how = ("the kernel's ipip module decapsulates it" if tunl.kind == "ipip" else
                       "the lab's eBPF program on eth0's tc ingress (ipip_decap) strips the outer header and "
                       f"redirects the inner packet to {tunl.name}'s ingress (this kernel has no ipip module)" if ebpf
                       else "the lab's route agent (userspace IPIP: this kernel has no ipip module) receives it on "
                       "a raw socket and writes the inner packet into the TUN device")
                command = (self.cmd(ns.name, "tc", "filter", "show", "dev", "eth0", "ingress") if ebpf else
                           self.cmd(ns.name, "ip", "-d", "link", "show", tunl.name))
                hop.add("decap", f"IP protocol 4 for a local address: {how}; the inner packet is received on "
                        f"{tunl.name}", command, device=tunl.name)
                hop.cross(tunl.name)
                return tunl.index
        return None

    # -- iptables --------------------------------------------------------------------------------------
    def _nat(self, ns: Netns, hop: Hop, packet: Packet, oif: Link, answer: RouteAnswer) -> Packet:
        result = nat.postrouting(ns.iptables("nat"), packet.src, packet.dst, oif.name, packet.protocol,
                                 nat.ipset_members(ns.name))
        cmd = self.cmd(ns.name, "iptables-save", "-t", "nat")
        if result.action in ("MASQUERADE", "SNAT"):
            new_src = answer.prefsrc or next((a for a, _, i in ns.addresses() if i == oif.index), packet.src)
            hop.add("nat", f"{result.action}: the source {packet.src} is rewritten to {oif.name}'s address {new_src} "
                    f"by `{result.rule}`", cmd, action=result.action, rule=result.rule, new_src=new_src)
            return replace(packet, src=new_src)
        if result.rule:
            hop.add("nat", f"no masquerade: `{result.rule}` returns first", cmd, action="none", rule=result.rule)
        return packet

    def _policy(self, ns: Netns, hop: Hop, packet: Packet, oif: Link) -> bool | None:
        """The policy decision at this node, when it is the source's (egress) or destination's (ingress) node:
        the reference evaluator's verdict, located in the node's iptables-save."""
        verdict = self.verdict
        kind, node, _ = self.view.by_netns.get(ns.name, ("", "", {}))
        if verdict is None or kind != "node" or self.stack:
            return None
        src, dst = self.trace.src, self.trace.dst
        for direction, pod, side in (("Egress", src, verdict.egress), ("Ingress", dst, verdict.ingress)):
            if pod.kind != "pod" or pod.node != node or direction in self.policy_done:
                continue
            if direction == "Ingress" and oif.kind == "vxlan":
                continue
            self.policy_done.add(direction)
            located = self._locate(ns, pod, direction, side, oif)
            self._policy_step(ns, hop, pod, direction, side, located)
            if side.startswith("denied"):
                self._denied(ns, hop, packet, oif, pod, direction, side, located)
                return False
        return None

    def _policy_step(self, ns: Netns, hop: Hop, pod: Endpoint, direction: str, side: str,
                     located: policy.Located) -> None:
        rule = located.deciding_rule or "(no rule found in iptables-save: is the enforcer's sync done?)"
        chain = f", policy chain {located.policy_chain}" if located.policy_chain else ""
        grep = f" | grep {located.pod_chain}" if located.pod_chain else ""
        hop.add("policy", f"{direction.lower()} of {pod.name}: {side} (reference evaluator) -> {located.action}; "
                f"chain {located.pod_chain or '?'}{chain}; rule: {rule}",
                self.cmd(ns.name, "iptables-save", "-t", "filter") + grep,
                direction=direction, verdict=side, chain=located.pod_chain, policy_chain=located.policy_chain,
                rule=located.deciding_rule, action=located.action)

    def _denied(self, ns: Netns, hop: Hop, packet: Packet, oif: Link, pod: Endpoint, direction: str, side: str,
                located: policy.Located) -> None:
        self.trace.beyond.append((ns.name, oif.name))
        port = f" port {packet.dport}" if packet.dport else ""
        self.fail(hop, f"denied by NetworkPolicy ({direction.lower()} of {pod.name}): {located.action} in "
                  f"{located.pod_chain}", [
                      f"{pod.name} is isolated for {direction.lower()} by {side.split('isolated by ', 1)[-1]} and no "
                      f"rule of those policies admits {packet.protocol}{port} from {self.trace.src.name}",
                      f"the reference evaluator decides it ({direction.lower()} {side}); the rule above is where "
                      "the node's iptables carries that decision (`--capture` shows the packet stop there)",
                      f"see the chain: {self.cmd(ns.name, 'iptables-save', '-t', 'filter')}"])

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


def trace(view: LabView, topology: Topology, src: Endpoint, dst: Endpoint, packet: Packet) -> Trace:
    kernel = Kernel()
    try:
        return Walker(view, topology, kernel, src, dst, packet).run()
    finally:
        kernel.close()
