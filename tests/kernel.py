"""Read a namespace's kernel state back through pyroute2 (independently of the lab's own code)."""

from __future__ import annotations

import platform
import socket
import subprocess
from dataclasses import dataclass

from pyroute2 import IPRoute

NUD_PERMANENT = 0x80
IFF_NOARP_FLAG = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x4
PROTO = {2: "kernel", 3: "boot", 4: "static"}
SCOPE = {0: "global", 253: "link", 254: "host"}


@dataclass(frozen=True)
class RouteRow:
    dst: str
    gateway: str | None
    dev: str
    proto: str
    scope: str
    onlink: bool
    src: str | None = None


def _attr(msg, name):
    return msg.get_attr(name)


def _as_dict(nla) -> dict:
    return {key: value for key, value in nla["attrs"]}


class Snapshot:
    """Links, addresses, routes, neighbours and fdb entries of one namespace."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        with IPRoute(netns=netns) as ipr:
            self.links = {_attr(link, "IFLA_IFNAME"): link for link in ipr.get_links()}
            self.names = {link["index"]: n for n, link in self.links.items()}
            self.addresses = [(self.names[a["index"]], f"{_attr(a, 'IFA_ADDRESS')}/{a['prefixlen']}",
                               _attr(a, "IFA_BROADCAST")) for a in ipr.get_addr(family=socket.AF_INET)]
            self.routes = [self._route(r) for r in ipr.get_routes(family=socket.AF_INET, table=254)]
            self.neighbours = [n for n in ipr.get_neighbours(family=socket.AF_INET)]
            self.fdb = [n for n in ipr.get_neighbours(family=socket.AF_BRIDGE)]

    def _route(self, r) -> RouteRow:
        dst = _attr(r, "RTA_DST")
        return RouteRow(dst=f"{dst}/{r['dst_len']}" if dst else "default", gateway=_attr(r, "RTA_GATEWAY"),
                        dev=self.names.get(_attr(r, "RTA_OIF"), "?"), proto=PROTO.get(r["proto"], str(r["proto"])),
                        scope=SCOPE.get(r["scope"], str(r["scope"])), onlink=bool(r["flags"] & RTNH_F_ONLINK),
                        src=_attr(r, "RTA_PREFSRC"))

    def link(self, name: str):
        return self.links[name]

    def kind(self, name: str) -> str | None:
        info = _attr(self.links[name], "IFLA_LINKINFO")
        return info.get_attr("IFLA_INFO_KIND") if info else None

    def info_data(self, name: str) -> dict:
        return _as_dict(_attr(self.links[name], "IFLA_LINKINFO").get_attr("IFLA_INFO_DATA"))

    def slave_data(self, name: str) -> dict:
        return _as_dict(_attr(self.links[name], "IFLA_LINKINFO").get_attr("IFLA_INFO_SLAVE_DATA"))

    def mtu(self, name: str) -> int:
        return _attr(self.links[name], "IFLA_MTU")

    def mac(self, name: str) -> str:
        return _attr(self.links[name], "IFLA_ADDRESS")

    def is_up(self, name: str) -> bool:
        return bool(self.links[name]["flags"] & 1)

    def master(self, name: str) -> str | None:
        index = _attr(self.links[name], "IFLA_MASTER")
        return self.names.get(index) if index else None

    def addresses_of(self, name: str) -> set[str]:
        return {cidr for dev, cidr, _ in self.addresses if dev == name}

    def permanent_neighbours(self, dev: str) -> set[tuple[str, str]]:
        index = self.links[dev]["index"]
        return {(_attr(n, "NDA_DST"), _attr(n, "NDA_LLADDR")) for n in self.neighbours
                if n["ifindex"] == index and n["state"] & NUD_PERMANENT}

    def fdb_entries(self, dev: str) -> set[tuple[str, str, bool, bool]]:
        """(mac, dst, self flag, permanent) of the entries with a destination (the VXLAN ones)."""
        index = self.links[dev]["index"]
        return {(_attr(n, "NDA_LLADDR"), _attr(n, "NDA_DST"), bool(n["flags"] & NTF_SELF),
                 bool(n["state"] & NUD_PERMANENT))
                for n in self.fdb if n["ifindex"] == index and _attr(n, "NDA_DST")}


def sysctl(netns: str, key: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-n", key], capture_output=True, text=True,
                          check=True).stdout.strip()


REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
IPIP_OBJECT = REPO_ROOT / "build" / "bpf" / "ipip.o"


def kernel_has_ipip() -> bool:
    """Whether this kernel can make an ipip device (tried in a throw-away namespace)."""
    return subprocess.run(["unshare", "--net", "ip", "link", "add", "t0", "type", "ipip"],
                          capture_output=True).returncode == 0


EBPF_IPIP_MIN_KERNEL = (6, 8)      # BPF_FIB_LOOKUP_SRC, which the encapsulation needs, is in Linux 6.8


def kernel_release() -> tuple[int, int]:
    major, minor = (platform.release().split("-")[0].split(".") + ["0"])[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def kernel_runs_ebpf_ipip() -> bool:
    """Whether the built IPIP programs attach to a TUN device's clsact hook here (a throw-away namespace) on a
    kernel whose helpers take the flags they use at run time (the lab's own probe sends a packet through)."""
    if not IPIP_OBJECT.exists() or kernel_release() < EBPF_IPIP_MIN_KERNEL:
        return False
    script = ("ip tuntap add dev t0 mode tun && tc qdisc add dev t0 clsact && "
              f"tc filter add dev t0 egress bpf da obj {IPIP_OBJECT} sec tc/encap && "
              f"tc filter add dev t0 ingress bpf da obj {IPIP_OBJECT} sec tc/decap")
    return subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script], capture_output=True).returncode == 0


def expected_ipip_implementation() -> str:
    """What `options.ipipImplementation: auto` must pick on this kernel: the module, then eBPF, then TUN."""
    if kernel_has_ipip():
        return "kernel-ipip"
    return "ebpf" if kernel_runs_ebpf_ipip() else "userspace-tun"


def tc_filters(netns: str, dev: str, direction: str) -> list[str]:
    """`tc filter show` lines naming a BPF program on one hook of a device (empty without clsact)."""
    result = subprocess.run(["tc", "-n", netns, "filter", "show", "dev", dev, direction], capture_output=True,
                            text=True)
    return [line for line in result.stdout.splitlines() if " bpf " in line and "name " in line]
