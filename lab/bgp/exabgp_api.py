"""The API helper of a lab router: makes an ExaBGP speaker behave as a router.

ExaBGP speaks BGP but keeps no RIB and programs no kernel; this helper, run by ExaBGP's `process`
API with the JSON encoder, does the rest, inside the router's namespace:

* announces the router's own prefixes (`announce:`) to every peer, next hop self;
* keeps what each peer announces (Adj-RIB-In), picks a best path per prefix (own prefix; highest
  local preference; shortest AS path; eBGP over iBGP; lowest peer address) and installs it into
  the namespace's kernel with pyroute2 (`proto bgp`), so traffic really flows through the router;
* re-advertises best paths as a router does: to eBGP peers with next hop self (ExaBGP prepends the
  router's AS), to iBGP peers with next hop self when learned over eBGP, and reflected unchanged
  (ORIGINATOR_ID, CLUSTER_LIST) when learned over iBGP: the ToR is its rack's route reflector;
* forgets a peer's routes when its session goes down (as a withdrawal of each);
* tells the monitor peer (`lab bgp monitor`) every best path with its original next hop and AS path;
* re-reads its spec when the file changes (`lab apply` of the router's announce list).

    python -m lab.bgp.exabgp_api <api.json>      (started by ExaBGP; commands go to stdout)
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, TextIO

RTPROT_BGP = 186          # iproute2's rt_protos: "bgp"
SPEC_POLL = 0.2


@dataclass(frozen=True)
class Path:
    """One route a peer announced."""

    peer: str
    next_hop: str
    as_path: tuple[int, ...]
    origin: str = "igp"
    local_pref: int | None = None
    med: int | None = None
    communities: tuple[str, ...] = ()
    originator: str | None = None


def as_path_of(attribute: dict[str, Any]) -> tuple[int, ...]:
    """ExaBGP's JSON AS path (5.x: segments keyed "0", "1"...; 4.x: a list) as a flat sequence."""
    value = attribute.get("as-path", [])
    if isinstance(value, dict):
        flat: list[int] = []
        for key in sorted(value, key=int):
            flat += [int(a) for a in value[key].get("value", [])]
        return tuple(flat)
    return tuple(int(a) for a in value)


def communities_of(attribute: dict[str, Any]) -> tuple[str, ...]:
    return tuple(f"{high}:{low}" for high, low in attribute.get("community", []))


def parse(line: str) -> dict[str, Any] | None:
    """One ExaBGP JSON message, reduced to what the router needs; None for anything else."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    neighbor = message.get("neighbor", {})
    peer = neighbor.get("address", {}).get("peer")
    if message.get("type") == "state":
        return {"kind": "state", "peer": peer, "state": neighbor.get("state"), "time": message.get("time")}
    if message.get("type") != "update":
        return None
    update = neighbor.get("message", {}).get("update")
    if not update:
        return None
    attribute = update.get("attribute", {})
    announced = []
    for next_hop, nlris in update.get("announce", {}).get("ipv4 unicast", {}).items():
        for nlri in nlris:
            announced.append((nlri["nlri"], Path(peer=peer, next_hop=next_hop, as_path=as_path_of(attribute),
                                                 origin=attribute.get("origin", "igp"),
                                                 local_pref=attribute.get("local-preference"),
                                                 med=attribute.get("med"), communities=communities_of(attribute),
                                                 originator=attribute.get("originator-id"))))
    withdrawn = [w["nlri"] for w in update.get("withdraw", {}).get("ipv4 unicast", [])]
    return {"kind": "update", "peer": peer, "announce": announced, "withdraw": withdrawn,
            "time": message.get("time")}


class Router:
    """The RIBs and the decisions; `out` receives ExaBGP commands, `kernel` the installs."""

    def __init__(self, spec: dict[str, Any], out: TextIO, kernel: Any) -> None:
        self.out = out
        self.kernel = kernel
        self.lock = threading.RLock()
        self.rib_in: dict[str, dict[str, Path]] = {}       # prefix -> peer -> path
        self.advertised: dict[str, dict[str, str]] = {}    # peer -> prefix -> announcement text
        self.installed: dict[str, str] = {}                # prefix -> next hop in the kernel
        self.sessions: dict[str, str] = {}
        self.load(spec)

    def load(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.asn = int(spec["as_number"])
        self.router_id = spec["router_id"]
        self.peers = {p["ip"]: p for p in spec["peers"]}
        self.monitor = spec.get("monitor")
        self.local = {str(ipaddress.IPv4Network(p)) for p in spec["announce"]}
        self.own_ips = {self.router_id} | {p["local_ip"] for p in spec["peers"]}

    # -- decisions ------------------------------------------------------------------------------
    def _ibgp(self, peer: str) -> bool:
        return peer == self.monitor or int(self.peers[peer]["as_number"]) == self.asn

    def best(self, prefix: str) -> Path | None:
        paths = [p for p in self.rib_in.get(prefix, {}).values() if self.asn not in p.as_path or self._ibgp(p.peer)]
        if not paths:
            return None

        def rank(path: Path) -> tuple[int, int, int, ipaddress.IPv4Address]:
            return (-(path.local_pref if path.local_pref is not None else 100), len(path.as_path),
                    1 if self._ibgp(path.peer) else 0, ipaddress.IPv4Address(path.peer))
        return min(paths, key=rank)

    def wanted(self, peer: str, prefix: str) -> str | None:
        """What `peer` should hear for `prefix` (ExaBGP route text), or None."""
        ibgp = self._ibgp(peer)
        pref = " local-preference 100" if ibgp else ""
        if prefix in self.local:
            return f"{prefix} next-hop self origin igp{pref}"
        path = self.best(prefix)
        if path is None or path.peer == peer:
            return None
        tail = _attributes(path)
        if peer == self.monitor:
            return f"{prefix} next-hop {path.next_hop}{tail}{pref}"
        if not ibgp:
            if int(self.peers[peer]["as_number"]) in path.as_path:
                return None                    # the peer would drop it (AS loop): do not send
            return f"{prefix} next-hop self{tail}"
        if self._ibgp(path.peer):              # reflect: clients' routes to the other clients
            originator = path.originator or path.peer
            return (f"{prefix} next-hop {path.next_hop}{tail} local-preference {path.local_pref or 100} "
                    f"originator-id {originator} cluster-list [ {self.router_id} ]")
        return f"{prefix} next-hop self{tail}{pref}"

    # -- events ---------------------------------------------------------------------------------
    def start(self) -> None:
        with self.lock:
            self.sync(self.local)

    def reload(self, spec: dict[str, Any]) -> None:
        with self.lock:
            before = set(self.local)
            self.load(spec)
            self.sync(before ^ self.local)

    def handle(self, event: dict[str, Any]) -> None:
        with self.lock:
            peer = event["peer"]
            touched: set[str] = set()
            if event["kind"] == "state":
                self.sessions[peer] = event["state"]
                if event["state"] == "down":
                    for prefix, paths in self.rib_in.items():
                        if paths.pop(peer, None) is not None:
                            touched.add(prefix)
                    self.advertised.pop(peer, None)     # ExaBGP resends its Adj-RIB-Out on reconnect
                elif event["state"] == "up":
                    touched = set(self.rib_in) | self.local
            else:
                for prefix in event["withdraw"]:
                    if self.rib_in.get(prefix, {}).pop(peer, None) is not None:
                        touched.add(prefix)
                for prefix, path in event["announce"]:
                    self.rib_in.setdefault(prefix, {})[peer] = path
                    touched.add(prefix)
            self.sync(touched)

    def sync(self, prefixes: set[str]) -> None:
        """Bring the kernel and every peer's advertisements in line for `prefixes`."""
        for prefix in sorted(prefixes):
            self._program(prefix)
            for peer in list(self.peers) + ([self.monitor] if self.monitor else []):
                self._advertise(peer, prefix)
        self.out.flush()

    def _program(self, prefix: str) -> None:
        path = None if prefix in self.local else self.best(prefix)
        hop = path.next_hop if path is not None and path.next_hop not in self.own_ips else None
        if self.installed.get(prefix) == hop:
            return
        try:
            if hop is None:
                self.kernel.route("del", dst=prefix, proto=RTPROT_BGP)
                self.installed.pop(prefix, None)
            else:
                self.kernel.route("replace", dst=prefix, gateway=hop, proto=RTPROT_BGP)
                self.installed[prefix] = hop
        except Exception as exc:  # noqa: BLE001 - one route the kernel refuses must not stop the router
            log(f"kernel {'del' if hop is None else 'replace'} {prefix} via {hop}: {exc}")
            if hop is None:
                self.installed.pop(prefix, None)

    def _advertise(self, peer: str, prefix: str) -> None:
        text = self.wanted(peer, prefix)
        sent = self.advertised.setdefault(peer, {})
        if sent.get(prefix) == text:
            return
        if text is None:
            self.out.write(f"neighbor {peer} withdraw route {prefix}\n")
            sent.pop(prefix, None)
        else:
            self.out.write(f"neighbor {peer} announce route {text}\n")
            sent[prefix] = text

    def view(self) -> dict[str, Any]:
        """What ribs.json holds: sessions, Adj-RIB-In, the kernel's routes, the announcements."""
        with self.lock:
            return {"router": self.spec["router"], "as_number": self.asn, "sessions": dict(self.sessions),
                    "rib_in": {prefix: {peer: {"next_hop": p.next_hop, "as_path": list(p.as_path)}
                                        for peer, p in paths.items()}
                               for prefix, paths in self.rib_in.items() if paths},
                    "installed": dict(self.installed), "announce": sorted(self.local)}


def _attributes(path: Path) -> str:
    text = f" origin {path.origin}"
    if path.as_path:
        text += f" as-path [ {' '.join(map(str, path.as_path))} ]"
    if path.med is not None:
        text += f" med {path.med}"
    if path.communities:
        text += f" community [ {' '.join(path.communities)} ]"
    return text


_LOG: TextIO = sys.stderr


def log(text: str) -> None:
    _LOG.write(f"{time.strftime('%H:%M:%S')} {text}\n")
    _LOG.flush()


def _read_spec(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        spec: dict[str, Any] = json.load(handle)
    return spec


def _write_view(router: Router, path: str) -> None:
    temporary = path + ".new"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(router.view(), handle, indent=1)
    os.replace(temporary, path)


def _watch(router: Router, spec_path: str, ribs: str, stop: threading.Event) -> None:
    """Re-read the spec when it changes; write ribs.json when the state changed."""
    seen = os.stat(spec_path).st_mtime_ns
    last = ""
    while not stop.wait(SPEC_POLL):
        try:
            mtime = os.stat(spec_path).st_mtime_ns
            if mtime != seen:
                seen = mtime
                router.reload(_read_spec(spec_path))
                log("spec reloaded: announces " + ", ".join(sorted(router.local)))
            text = json.dumps(router.view(), sort_keys=True)
            if text != last:
                last = text
                _write_view(router, ribs)
        except Exception:  # noqa: BLE001 - keep routing; the log says what went wrong
            log(traceback.format_exc())


def _flush(kernel: Any) -> int:
    """Remove the routes an earlier helper installed (a restarted router starts with an empty RIB, as a
    router without graceful restart does); returns how many."""
    stale = [r for r in kernel.get_routes(family=2, table=254) if r["proto"] == RTPROT_BGP]
    for route in stale:
        kernel.route("del", dst=f"{route.get_attr('RTA_DST')}/{route['dst_len']}", proto=RTPROT_BGP)
    return len(stale)


def main(argv: list[str]) -> int:
    global _LOG
    from pyroute2 import IPRoute
    spec_path = argv[1]
    spec = _read_spec(spec_path)
    _LOG = open(spec["log"], "a", encoding="utf-8")
    stop = threading.Event()
    with IPRoute() as kernel:
        flushed = _flush(kernel)
        if flushed:
            log(f"removed {flushed} proto bgp routes an earlier instance installed (they are learned again)")
        router = Router(spec, sys.stdout, kernel)
        router.start()
        _write_view(router, spec["ribs"])
        watcher = threading.Thread(target=_watch, args=(router, spec_path, spec["ribs"], stop), daemon=True)
        watcher.start()
        with open(spec["ready"], "w", encoding="utf-8") as handle:
            handle.write(str(os.getpid()))
        log(f"router {spec['router']} AS {spec['as_number']}: ready")
        for line in sys.stdin:
            event = parse(line)
            if event is None:
                continue
            try:
                router.handle(event)
            except Exception:  # noqa: BLE001
                log(traceback.format_exc())
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
