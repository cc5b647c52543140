"""`routers:`: external BGP routers (ToRs, edge routers), each an ExaBGP speaker in its own namespace.

    routers:
      - name: tor-a
        network: rack-a            # eth0, with the default route via the network's gateway
        ip: 192.168.10.2
        asNumber: 65001
        links: [{network: spine, ip: 10.255.0.11}]   # eth1, eth2, ... on further networks
        announce: [203.0.113.0/24]                    # prefixes it originates (next hop self)
        peers: [k8s-node1, tor-b, {ip: 192.0.2.9, asNumber: 65100}]
        holdTime: 180                                 # ExaBGP's default

A peer is a node (its AS is the Calico Node's, else the BGPConfiguration's), another router (its
address on a network both share, else its eth0), or a bare address with an AS. Everything is
checked here, before anything is built: unknown peer names, AS numbers out of range, missing
networks, announcements that are not CIDRs. The parser is pure: `fail(path, message, hint)` makes the
`file:line: field:` error.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from lab.errors import TopologyError
from lab.topology import cidr as cidrs
from lab.topology.model import External, Network, Node, Router, RouterLink, RouterPeer
from lab.topology.yamlsource import Path

Fail = Callable[..., TopologyError]
MAX_AS = 4294967295
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 13          # the switch ports of eth1.. are `<name>.<n>` (15 characters at most)
MAX_LINKS = 9


def as_number(value: Any, path: Path, fail: Fail) -> int:
    """An AS number from 1 to 4294967295 (4-byte ASNs, as ExaBGP and BIRD take them)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_AS:
        raise fail(path, f"AS number {value!r} is out of range: it must be an integer from 1 to {MAX_AS}",
                   "private ASNs are 64512-65534 and 4200000000-4294967294")
    return value


def _host(value: Any, network: Network, path: Path, fail: Fail) -> ipaddress.IPv4Address:
    try:
        ip = ipaddress.IPv4Address(str(value))
    except ValueError:
        raise fail(path, f"{value!r} is not an IPv4 address", None) from None
    if ip not in network.cidr or ip in (network.cidr.network_address, network.cidr.broadcast_address):
        raise fail(path, f"{ip} is not a host address of network {network.name!r} ({network.cidr})",
                   "give an address inside the segment's CIDR")
    if ip == network.gateway:
        raise fail(path, f"{ip} is the gateway of network {network.name!r}", "give the router another address")
    return ip


def _network(name: Any, networks: dict[str, Network], path: Path, fail: Fail) -> Network:
    if name not in networks:
        raise fail(path, f"no network named {name!r}: a router must sit on one of the topology's networks",
                   f"networks are: {', '.join(networks)}")
    return networks[name]


def _announce(values: Any, path: Path, fail: Fail) -> tuple[ipaddress.IPv4Network, ...]:
    found = []
    for index, value in enumerate(values or []):
        try:
            found.append(cidrs.network(value))
        except cidrs.CidrError as exc:
            raise fail(path + (index,), f"announcement {value!r} is not a CIDR: {exc.message}",
                       exc.hint or "write a prefix such as 203.0.113.0/24 (0.0.0.0/0 for a default route)") from None
    return tuple(found)


class _Draft:
    """A router before its peers are resolved (they may name routers declared after it)."""

    def __init__(self, entry: dict[str, Any], path: Path, network: Network, ip: ipaddress.IPv4Address, asn: int,
                 links: tuple[RouterLink, ...]) -> None:
        self.entry, self.path, self.network, self.ip, self.asn, self.links = entry, path, network, ip, asn, links
        self.cidrs: list[tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]] = []

    def addresses(self) -> list[tuple[str, ipaddress.IPv4Address]]:
        return [(self.network.name, self.ip)] + [(link.network, link.ip) for link in self.links]

    def address_on(self, network: str) -> ipaddress.IPv4Address | None:
        return next((ip for name, ip in self.addresses() if name == network), None)


def parse(data: list[Any], networks: tuple[Network, ...], nodes: tuple[Node, ...], externals: tuple[External, ...],
          node_as: Callable[[str], int] | None, fail: Fail) -> tuple[Router, ...]:
    """The `routers:` list as the model; `node_as(name)` gives a node's AS (None: the cluster runs no BGP)."""
    by_network = {n.name: n for n in networks}
    taken = {n.name: "node" for n in nodes} | {e.name: "external host" for e in externals} | \
        {n.name: "network" for n in networks}
    used = {n.ip: f"node {n.name}" for n in nodes} | {e.ip: f"external host {e.name}" for e in externals}
    drafts: dict[str, _Draft] = {}
    for index, entry in enumerate(data or []):
        path = ("routers", index)
        name = entry["name"]
        if not NAME.match(name) or len(name) > NAME_MAX:
            raise fail(path + ("name",), f"router name {name!r} must be a DNS label of at most {NAME_MAX} "
                       "characters", "it names the router's ports on the switches")
        if name in taken or name in drafts:
            raise fail(path + ("name",), f"name {name!r} is taken by a {taken.get(name, 'router')}",
                       "pick another name")
        network = _network(entry["network"], by_network, path + ("network",), fail)
        ip = _host(entry["ip"], network, path + ("ip",), fail)
        asn = as_number(entry["asNumber"], path + ("asNumber",), fail)
        links = []
        seen = {network.name}
        for number, link in enumerate(entry.get("links") or []):
            where = path + ("links", number)
            if number >= MAX_LINKS:
                raise fail(where, f"a router has at most {MAX_LINKS} links besides eth0", None)
            other = _network(link["network"], by_network, where + ("network",), fail)
            if other.name in seen:
                raise fail(where + ("network",), f"router {name} is already on network {other.name!r}",
                           "one interface per network")
            seen.add(other.name)
            links.append(RouterLink(network=other.name, ip=_host(link["ip"], other, where + ("ip",), fail)))
        draft = _Draft(entry, path, network, ip, asn, tuple(links))
        draft.cidrs = [(by_network[net].cidr, address) for net, address in draft.addresses()]
        fields: list[Path] = [path + ("ip",)] + [path + ("links", i, "ip") for i in range(len(links))]
        for (_, address), field in zip(draft.addresses(), fields, strict=True):
            if address in used:
                raise fail(field, f"{address} is taken by {used[address]}", "give the router another address")
            used[address] = f"router {name}"
        drafts[name] = draft
    routers = []
    for name, draft in drafts.items():
        peers = _peers(draft, drafts, nodes, node_as, fail)
        hold = draft.entry.get("holdTime", 180)
        if isinstance(hold, bool) or not isinstance(hold, int) or not (hold == 0 or 3 <= hold <= 65535):
            raise fail(draft.path + ("holdTime",), f"holdTime {hold!r} must be 0 or from 3 to 65535 seconds",
                       "BGP's hold time (RFC 4271 4.2); ExaBGP's default is 180")
        routers.append(Router(name=name, network=draft.network.name, ip=draft.ip, as_number=draft.asn,
                              announce=_announce(draft.entry.get("announce"), draft.path + ("announce",), fail),
                              peers=peers, links=draft.links, hold_time=hold,
                              monitor_ip=_monitor_ip(draft.network, used)))
    return tuple(routers)


def _peers(draft: _Draft, drafts: dict[str, _Draft], nodes: tuple[Node, ...],
           node_as: Callable[[str], int] | None, fail: Fail) -> tuple[RouterPeer, ...]:
    by_node = {n.name: n for n in nodes}
    found: list[RouterPeer] = []
    for index, entry in enumerate(draft.entry.get("peers") or []):
        where = draft.path + ("peers", index)
        if isinstance(entry, dict) and "ip" in entry:
            ip = _address(entry["ip"], where + ("ip",), fail)
            if "asNumber" not in entry:
                raise fail(where, "a peer given by address needs asNumber", "e.g. {ip: 192.0.2.9, asNumber: 65100}")
            peer = RouterPeer(ip=ip, as_number=as_number(entry["asNumber"], where + ("asNumber",), fail),
                              local_ip=_local(draft, ip))
        else:
            name = entry.get("name") if isinstance(entry, dict) else entry
            if isinstance(entry, dict):
                where = where + ("name",)
            if name == draft.entry["name"]:
                raise fail(where, f"router {name} cannot peer with itself", None)
            if name in by_node:
                if node_as is None:
                    raise fail(where, f"node {name} runs no BGP speaker (only Calico's BIRD backend peers)",
                               "use cni: calico with calico_backend bird, or peer with routers only")
                node = by_node[name]
                peer = RouterPeer(ip=node.ip, as_number=node_as(name), local_ip=_local(draft, node.ip),
                                  name=name, kind="node")
            elif name in drafts:
                other = drafts[name]
                shared = [(net, ip) for net, ip in other.addresses() if draft.address_on(net) is not None]
                net, ip = shared[0] if shared else (other.network.name, other.ip)
                peer = RouterPeer(ip=ip, as_number=other.asn, local_ip=draft.address_on(net) or draft.ip,
                                  name=name, kind="router")
            else:
                known = sorted(by_node) + sorted(n for n in drafts if n != draft.entry["name"])
                raise fail(where, f"unknown router peer {name!r}: no node or router has that name",
                           f"name one of: {', '.join(known)}; or give {{ip: ..., asNumber: ...}}")
        if any(p.ip == peer.ip for p in found):
            raise fail(where, f"router {draft.entry['name']} already peers with {peer.ip}", None)
        found.append(peer)
    return tuple(found)


def _address(value: Any, path: Path, fail: Fail) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise fail(path, f"{value!r} is not an IPv4 address", None) from None


def _local(draft: _Draft, peer_ip: ipaddress.IPv4Address) -> ipaddress.IPv4Address:
    """The router's address on the peer's network (a direct session), else its eth0 address (multihop)."""
    return next((ip for cidr, ip in draft.cidrs if peer_ip in cidr), draft.ip)


def _monitor_ip(network: Network, used: dict[ipaddress.IPv4Address, str]) -> ipaddress.IPv4Address | None:
    """The highest free host address of the router's network: where `lab bgp monitor` peers from."""
    for candidate in range(int(network.cidr.broadcast_address) - 1, int(network.cidr.network_address), -1):
        ip = ipaddress.IPv4Address(candidate)
        if ip != network.gateway and ip not in used:
            used[ip] = "the BGP monitor"
            return ip
    return None
