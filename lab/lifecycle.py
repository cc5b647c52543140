"""The lab lifecycle: up, down, status, list, cleanup. The CLI is a thin layer over these.

Only the state store and the model are imported here at start-up; the data planes, BGP, the policy
enforcers, the probe servers and pyroute2 are imported by the methods that use them, so a command
that reads a running lab (`lab trace`, `lab status`) does not pay for building one.
"""

from __future__ import annotations

import builtins
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lab.bgp.daemons import AGENT_MODULE, BirdPaths
from lab.errors import LabError
from lab.netns import capabilities, names, namespace
from lab.netns.state import LabState, StateStore
from lab.topology.model import Topology

if TYPE_CHECKING:
    from lab import live, readiness
    from lab.netns import apply, memory, neighbours, render, workers
    from lab.netns.plan import LabPlan
    from lab.probe.sourceports import SourcePorts
    from lab.topology.impair import Impairment


@dataclass(frozen=True)
class UpResult:
    lab: str
    created: bool
    namespaces: int
    plan: LabPlan | None = None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass
class Lab:
    """Operations on labs, over one state store."""

    store: StateStore = field(default_factory=StateStore)
    meminfo: str = "/proc/meminfo"   # where MemAvailable is read (tests give a file of their own)

    # -- up --------------------------------------------------------------------------------------
    def load(self, name_or_path: str) -> Topology:
        from lab.topology import loader, registry
        return loader.load(registry.resolve(name_or_path))

    def plan(self, topology: Topology, caps: capabilities.Capabilities | None = None, netem: bool | None = None
             ) -> tuple[LabPlan, neighbours.Decision]:
        """The CNI's plan with the topology's link impairments, plus static neighbours when the host's shared
        ARP table is too small for it."""
        from lab.netns import workers
        with workers.collector_paused():
            return self._plan(topology, caps, netem)

    def _plan(self, topology: Topology, caps: capabilities.Capabilities | None, netem: bool | None
              ) -> tuple[LabPlan, neighbours.Decision]:
        from lab import cni
        from lab.cni import impairment_plan
        from lab.netns import impairments, neighbours
        from lab.policy import enforce
        enforce.check_size(topology)
        plan = impairment_plan.with_impairments(cni.plan(topology, caps), topology,
                                                impairments.netem_assumed() if netem is None else netem)
        where = neighbours.Where(
            file=topology.source, option=topology.sources.get("options.staticNeighbours", ""),
            networks={n.name: topology.sources.get(f"networks.{n.name}", "") for n in topology.networks},
            nodes={n.name: topology.sources.get(f"nodes.{n.name}", "") for n in topology.nodes})
        decision = neighbours.decide(plan, topology.static_neighbours, neighbours.host_limit(),
                                     neighbours.available_memory(self.meminfo), where)
        if decision.mode == "static":
            plan = neighbours.with_static_neighbours(plan)
        return replace(plan, notes=plan.notes + (f"neighbours: {decision.mode}: {decision.reason}",)), decision

    def dry_run(self, name_or_path: str | Topology, out: render.TextSink | None = None) -> str:
        """The plan as commands; touches nothing (and needs no root). Written to `out` as it is made
        (and "" returned) when given, so that memory does not grow with the text; else returned."""
        from lab.netns import render
        from lab.policy import enforce
        topology = name_or_path if isinstance(name_or_path, Topology) else self.load(name_or_path)
        plan = self.plan(topology)[0]
        if out is None:
            return render.script(plan) + enforce.script(topology)
        render.write(plan, out)
        enforce.write_script(topology, out)
        return ""

    def up(self, name_or_path: str, fail_after: int | None = None,
           parallelism: workers.Parallelism | None = None) -> UpResult:
        """Build the lab; idempotent when the same topology is already up; rolls back on failure.
        `fail_after` and `parallelism` are seams for tests (lab.netns.apply.apply_plan)."""
        from lab import cni, supervision
        from lab.bgp import exabgp
        from lab.cni import impairment_plan
        from lab.netns import apply, impairments, workers
        from lab.netns.plan import with_fresh_links
        from lab.probe import servers
        topology = self.load(name_or_path)  # the loader is pure: bad input is reported without root
        if not capabilities.has_root():
            self.plan(topology)  # the plan's own refusals (sizes, static neighbours) too, then "needs root"
            capabilities.require_root()
        exabgp.require(topology)    # before the lab's lock, state or probe namespace exist
        fingerprint = _fingerprint(topology)
        with self.store.locked(topology.name):
            existing = self.store.load(topology.name)
            if existing is not None and existing.status == "up":
                return self._already_up(existing, topology, fingerprint, self.plan(topology)[0])
            if existing is not None:  # an `up` that was killed: replace what it left
                self._teardown(topology.name, existing)
            caps = capabilities.detect(names.probe_netns(topology.name))
            netem = bool(topology.impairments) and impairments.netem_available(names.probe_netns(topology.name))
            plan, decision = self.plan(topology, caps, netem)
            needed = self._preflight(topology, plan, caps)
            state = LabState(lab=topology.name, topology=topology.source, fingerprint=fingerprint,
                             namespaces=[ns.name for ns in plan.namespaces])
            self.store.save(state)  # before anything exists, so a killed `up` can be cleaned up
            try:
                apply.apply_plan(with_fresh_links(plan, caps.fresh_links), fail_after=fail_after,
                                 parallelism=parallelism or workers.Parallelism())
                impairments.apply(plan)
                self.store.write_files(topology.name, plan.files)
                runtime = cni.start(topology, caps, self.store)
                runtime["routers"] = exabgp.start(topology, self.store.files_dir(topology.name))
                runtime["policy"] = start_policy(topology)
                runtime["probe_servers"] = servers.start(topology, self.store.lab_dir(topology.name))
                runtime["supervisor"] = supervision.start(topology, self.store, runtime)
                state.status = "up"
                state.summary = (summarize(topology, plan, caps) | {"neighbours": decision.as_dict()}
                                 | {"runtime": runtime, "netem": netem,
                                    "impairments": impairment_plan.describe(topology, netem)})
                self.store.save(state)
            except BaseException:
                self._teardown(topology.name, state)
                raise
        return UpResult(lab=topology.name, created=True, namespaces=len(plan.namespaces), plan=plan,
                        notes=tuple(plan.notes) + topology.notes + (f"memory: estimated {needed.describe()}",),
                        warnings=topology.warnings)

    def _preflight(self, topology: Topology, plan: LabPlan, caps: capabilities.Capabilities) -> memory.Estimate:
        """Everything checked before the kernel is touched: memory, free names, link kinds, tools."""
        from lab import cni
        needed = self.check_memory(topology, plan)
        self._check_free(plan)
        capabilities.require(caps, _needed_kinds(plan), topology.source)
        if any(ns.iptables for ns in plan.namespaces):
            capabilities.require_tools(caps, ["iptables-restore"], topology.source)
        capabilities.require_tools(caps, cni.dataplane(topology).tools(topology), topology.source)
        if topology.cluster.enforcer != "none":
            capabilities.require_tools(caps, ["ipset", "iptables-restore"], topology.source)
        return needed

    def check_memory(self, topology: Topology, plan: LabPlan) -> memory.Estimate:
        """Refuse a lab that would not fit in this machine's available memory (lab/netns/memory.py)."""
        from lab.netns import memory, neighbours, workers
        from lab.topology import dataplanes
        per_node = dataplanes.get(topology.cluster.cni).node_daemons(topology.cluster.config)
        birds = per_node * len(topology.nodes)
        # each routing daemon (BIRD) learns, and the route agent installs, a block of every other node; and it
        # holds at most a session with every other node (a full mesh: reflectors need fewer)
        others = birds * max(0, len(topology.nodes) - 1)
        found = memory.estimate(plan, daemons=birds, workers=workers.cpus(), learned_routes=others,
                                routers=len(topology.routers), bgp_sockets=others)
        first = topology.sources.get(f"nodes.{topology.nodes[0].name}", "") if topology.nodes else ""
        line = first.rpartition(":")[2]
        memory.check(found, neighbours.available_memory(self.meminfo), topology.source, "nodes",
                     int(line) if line.isdigit() else None)
        return found

    def _already_up(self, existing: LabState, topology: Topology, fingerprint: str, plan: LabPlan) -> UpResult:
        if existing.fingerprint != fingerprint or existing.topology != topology.source:
            raise LabError(f"a lab named {topology.name!r} is already up (from {existing.topology})",
                           f"run `lab down {topology.name}` first, or give this topology another name")
        missing = [n for n in existing.namespaces if not namespace.exists(n)]
        if missing:
            raise LabError(f"lab {topology.name!r} is recorded as up but {len(missing)} of its namespaces are "
                           f"gone (e.g. {missing[0]})", f"run `lab down {topology.name}` and bring it up again")
        return UpResult(lab=topology.name, created=False, namespaces=len(existing.namespaces), plan=plan)

    def _check_free(self, plan: LabPlan) -> None:
        taken = set(namespace.list_all())
        clash = [ns.name for ns in plan.namespaces if ns.name in taken]
        if clash:
            raise LabError(f"network namespace {clash[0]} already exists and does not belong to a lab that is up",
                           "run `lab cleanup` if an earlier lab left it, or `ip netns del "
                           f"{clash[0]}` if you made it yourself")

    # -- readiness -------------------------------------------------------------------------------
    def wait(self, lab: str | None, timeout: float,
             on_progress: Callable[[builtins.list[readiness.Check]], None] | None = None) -> readiness.Readiness:
        """Wait until the lab is usable (BGP converged, probe servers answering), or `timeout` seconds."""
        from lab import cni, live, readiness
        from lab.bgp import router_ready
        from lab.topology import loader
        capabilities.require_root()
        state = self._state(lab)
        if state.status != "up":
            raise LabError(f"lab {state.lab} is {state.status}", f"bring it up with `lab up {state.topology}`")
        topology = loader.load(state.topology, live.overlay_of(state.live))
        dataplane_checks = cni.dataplane(topology).checks

        def checks() -> builtins.list[readiness.Check]:
            runtime = self._runtime(state)      # a daemon the supervisor restarted has a new pid
            found = dataplane_checks(topology, self.store, runtime) if dataplane_checks else []
            return (found + router_ready.checks(topology, self.bird_paths_of(state.lab))
                    + readiness.probe_servers(runtime))
        return readiness.wait(checks, timeout, on_progress)

    # -- down ------------------------------------------------------------------------------------
    def down(self, lab: str) -> apply.Removal:
        """Remove every namespace, process and file of `lab`; a lab that is not up is not an error."""
        capabilities.require_root()
        with self.store.locked(lab):
            return self._teardown(lab, self.store.load(lab))

    def _teardown(self, lab: str, state: LabState | None) -> apply.Removal:
        from lab import supervision
        from lab.netns import apply
        supervision.stop(self.store, lab, state.summary.get("runtime") if state else None)  # first: no restarts
        recorded = set(state.namespaces) if state else set()
        found = {n for n in namespace.list_all() if names.is_lab_netns(n, lab)}
        removal = apply.remove_namespaces(sorted(recorded | found))
        self.store.remove(lab)
        return removal

    # -- inspection ------------------------------------------------------------------------------
    def list(self) -> builtins.list[dict[str, Any]]:
        rows = []
        for lab in self.store.labs():
            state = self.store.load(lab)
            if state is None:
                continue
            summary = state.summary
            rows.append({"lab": lab, "status": state.status, "topology": state.topology,
                         "mode": summary.get("mode", "?"), "nodes": len(summary.get("nodes", [])),
                         "pods": len(summary.get("pods", []))})
        return rows

    def status(self, lab: str | None = None) -> dict[str, Any]:
        from lab import supervision
        state = self._state(lab)
        summary = dict(state.summary)
        missing = [n for n in state.namespaces if not namespace.exists(n)]
        runtime = self._runtime(state)
        agent = route_agent_health(runtime)
        supervised = supervision.health(self.store, state.lab, runtime)
        degraded = degraded_reasons(missing, agent, supervised, state.faults)
        summary.update(lab=state.lab, status=state.status if not degraded else "degraded", topology=state.topology,
                       namespaces=len(state.namespaces), missing_namespaces=missing,
                       daemons=self._daemons(state), route_agent=agent, supervisor=supervised,
                       faults=state.faults, degraded=degraded)
        return summary

    def _runtime(self, state: LabState) -> dict[str, Any]:
        """The lab's runtime record with the pids its daemons have now (the supervisor may have restarted them)."""
        from lab import supervision
        runtime: dict[str, Any] = state.summary.get("runtime", {})
        if not runtime.get("supervisor"):
            return runtime
        return supervision.with_current_pids(runtime, supervision.current_pids(self.store, state.lab))

    # -- faults ----------------------------------------------------------------------------------
    def fault(self, lab: str | None, action: str, target: str) -> Any:
        """`lab fault <action> <target>` (lab/fault.py): apply or undo a fault, and record it in the lab's state."""
        from lab import fault, live
        from lab.topology import loader
        with self._locked_up(lab) as state:
            topology = loader.load(state.topology, live.overlay_of(state.live))
            outcome = fault.run(self.store, state, topology, action, target)
            if outcome.changed:
                self.store.save(state)
        return outcome

    def _daemons(self, state: LabState) -> builtins.list[dict[str, Any]]:
        inodes = {namespace.inode(n): n for n in state.namespaces if namespace.exists(n)}
        found = namespace.pids_by_namespace({i for i in inodes if i is not None})
        rows = []
        for ino, pids in found.items():
            for pid in pids:
                rows.append({"netns": inodes[ino], "pid": pid, "command": _command_of(pid)})
        return sorted(rows, key=lambda r: (r["netns"], r["pid"]))

    def state(self, lab: str | None = None) -> LabState:
        """The recorded state of a lab (of the only lab up when `lab` is None)."""
        return self._state(lab)

    def _state(self, lab: str | None) -> LabState:
        lab = lab or self.only_lab()
        state = self.store.load(lab)
        if state is None:
            raise LabError(f"no lab named {lab!r} is up", "`lab list` shows the labs that are up")
        return state

    def only_lab(self) -> str:
        """The one lab that is up, for commands where naming it is optional."""
        labs = self.store.labs()
        if len(labs) == 1:
            return labs[0]
        if not labs:
            raise LabError("no lab is up", "bring one up with `lab up <topology>` (see `lab topologies`)")
        raise LabError(f"several labs are up ({', '.join(labs)})", "name one with --lab NAME")

    def resolve_target(self, target: str, lab: str | None = None) -> str:
        """A node name, `namespace/pod`, or a pod name -> its network namespace."""
        state = self._state(lab)
        summary = state.summary
        if target in state.namespaces:
            return target
        for node in summary.get("nodes", []) + summary.get("externals", []) + summary.get("routers", []):
            if node["name"] == target:
                netns: str = node["netns"]
                return netns
        pods = summary.get("pods", [])
        matches = [p for p in pods if p["key"] == target] or [p for p in pods if p["name"] == target]
        if len(matches) == 1:
            pod_netns: str = matches[0]["netns"]
            return pod_netns
        if len(matches) > 1:
            raise LabError(f"pod name {target!r} is ambiguous", "write it as namespace/pod")
        raise LabError(f"no node or pod {target!r} in lab {state.lab}",
                       "`lab status` lists the nodes and pods (pods as namespace/pod)")

    def _entry(self, kind: str, target: str, lab: str | None) -> dict[str, Any] | None:
        """The recorded node or pod (`kind` is "nodes" or "pods") that `target` names, if it is one."""
        state = self._state(lab)
        netns = self.resolve_target(target, state.lab)
        return next((entry for entry in state.summary.get(kind, []) if entry["netns"] == netns), None)

    def node_name(self, target: str, lab: str | None = None) -> str:
        """The node a target names; a pod is not a node."""
        node = self._entry("nodes", target, lab)
        if node is None:
            raise LabError(f"{target!r} is not a node", "BIRD runs on nodes; `lab status` lists them")
        name: str = node["name"]
        return name

    def bird_paths_of(self, lab: str) -> Callable[[str], BirdPaths]:
        """Where each node's BIRD keeps its files in `lab` (Calico's layout under the lab's files directory)."""
        from lab.cni.calico import layout
        files = self.store.files_dir(lab)
        return lambda node: layout.node_paths(os.path.join(files, node))

    def bird_socket(self, target: str, lab: str | None = None) -> str:
        """The control socket of a node's BIRD (Calico BGP labs)."""
        from lab.cni.calico import layout
        state = self._state(lab)
        if not state.summary.get("runtime", {}).get("bird"):
            raise LabError(f"lab {state.lab} runs no BIRD", "BIRD runs in Calico labs with backend bird "
                           "(calico-bgp-mesh, calico-rr, calico-ipip, ...)")
        node = self.node_name(target, state.lab)
        return layout.node_paths(os.path.join(self.store.files_dir(state.lab), node)).socket

    def _pod(self, target: str, lab: str | None) -> dict[str, Any]:
        """The recorded pod a target names; anything else is an error."""
        pod = self._entry("pods", target, lab)
        if pod is None:
            raise LabError(f"{target!r} is not a pod", "give a pod as namespace/pod; `lab status` lists them")
        return pod

    def pod_key(self, target: str, lab: str | None = None) -> str:
        key: str = self._pod(target, lab)["key"]
        return key

    def pod_ip(self, target: str, lab: str | None = None) -> str:
        ip: str = self._pod(target, lab)["ip"]
        return ip

    def namespace_name(self, name: str, lab: str | None = None) -> str:
        known = [n["name"] for n in self._state(lab).summary.get("namespaces", [])]
        if name not in known:
            raise LabError(f'namespace "{name}" not found', f"namespaces are: {', '.join(known)}")
        return name

    def topology(self, lab: str | None = None) -> Topology:
        """The model of a running lab, with its live changes (applied policies, label edits)."""
        from lab import live
        from lab.topology import loader
        state = self._state(lab)
        return loader.load(state.topology, live.overlay_of(state.live))

    def _router(self, router: str, lab: str | None) -> dict[str, Any]:
        state = self._state(lab)
        found: dict[str, dict[str, Any]] = {r["router"]: r for r in state.summary.get("runtime", {}).get("routers", [])}
        if router not in found:
            raise LabError(f"no router named {router!r} in lab {state.lab}",
                           f"routers are: {', '.join(found) or 'none'} (a topology's `routers:`)")
        return found[router]

    def router_announce(self, router: str, prefix: str, add: bool, lab: str | None = None) -> str:
        """The router's API: announce or withdraw a prefix now (its helper re-reads api.json)."""
        from lab.bgp import exabgp
        from lab.topology import cidr
        entry = self._router(router, lab)
        try:
            network = str(cidr.network(prefix))
        except cidr.CidrError as exc:
            raise LabError(f"{prefix!r}: {exc.message}", exc.hint or "give a prefix such as 198.51.100.0/24") from None
        spec = exabgp.read_ribs(entry["spec"])
        announced = list(spec["announce"])
        if add == (network in announced):
            return f"router {router} {'already announces' if add else 'does not announce'} {network}"
        spec["announce"] = announced + [network] if add else [p for p in announced if p != network]
        exabgp.write_spec(spec, entry["spec"])
        return f"router {router}: {'announces' if add else 'withdraws'} {network}"

    def router_ribs(self, router: str, lab: str | None = None) -> dict[str, Any]:
        """What the router's helper last wrote: sessions, routes learned, routes installed."""
        from lab.bgp import exabgp
        return exabgp.read_ribs(self._router(router, lab)["ribs"])

    def source_ports(self, lab: str) -> SourcePorts:
        """The lab's UDP probe source-port cursor (a file in its state directory, gone at `lab down`)."""
        from lab.probe.sourceports import SourcePorts
        return SourcePorts(os.path.join(self.store.lab_dir(lab), "probe-source-ports"))

    # -- live changes ----------------------------------------------------------------------------
    @contextmanager
    def _locked_up(self, lab: str | None) -> Iterator[LabState]:
        """The state of a lab that is up, under the lab's lock (root needed): live changes start here."""
        capabilities.require_root()
        name = lab or self.only_lab()
        with self.store.locked(name):
            state = self._state(name)
            if state.status != "up":
                raise LabError(f"lab {name} is {state.status}", "bring it up first")
            yield state

    def change(self, lab: str | None, edit: Callable[[dict[str, Any], Topology], dict[str, Any]]) -> live.Change:
        """Apply `edit(live, old model) -> live` to a running lab: reload its topology with the new overlay,
        then reconfigure what runs. Nothing changes unless the new model loads; the overlay is saved last."""
        from lab import cni, live
        from lab.bgp import exabgp
        from lab.topology import loader
        with self._locked_up(lab) as state:
            lab = state.lab
            old = loader.load(state.topology, live.overlay_of(state.live))
            new_live = edit(state.live, old)
            new = loader.load(state.topology, live.overlay_of(new_live, old))
            exabgp.check_unchanged(old, new)
            changes = live.reconfigure(old, new, self.store, self._runtime(state))
            plan = cni.plan(new)
            state.live = new_live
            runtime = state.summary.get("runtime", {})
            state.summary = (summarize(new, plan, capabilities.Capabilities.assumed())
                             | {"neighbours": state.summary.get("neighbours"), "runtime": runtime,
                                "capabilities": state.summary.get("capabilities", []),
                                "netem": state.summary.get("netem", False),
                                "impairments": state.summary.get("impairments", [])})
            if "ipip_implementation" in runtime:
                state.summary["ipip_implementation"] = runtime["ipip_implementation"] or state.summary.get(
                    "ipip_implementation")
            self.store.save(state)
        return live.Change(lab=lab, summary=changes, old=old, new=new)

    # -- link impairments -----------------------------------------------------------------------
    def impair(self, lab: str | None, target: str | None, iface: str | None,
               impairment: Impairment | None) -> builtins.list[dict[str, Any]]:
        """Set (or with `impairment` None, clear) a live impairment; `target` None clears every one.
        Checks the target and interface, and netem for delay, before anything changes; returns the rows in force."""
        from lab.cni import impairment_plan
        from lab.netns import impairments, interfaces
        with self._locked_up(lab) as state:
            lab = state.lab
            rows = list(state.summary.get("impairments", []))
            if target is None:
                for netns in sorted({r["netns"] for r in rows} | set(state.namespaces)):
                    if namespace.exists(netns):
                        impairments.live_clear(netns, None)
                rows = []
            else:
                netns = self.resolve_target(target, lab)
                dev = iface or "eth0"
                interfaces.require(netns, dev, target)
                if impairment is None:
                    impairments.live_clear(netns, dev)
                else:
                    netem = state.summary.get("netem")
                    if not netem and (impairment.delay_ms is not None or impairment.jitter_ms is not None):
                        netem = impairments.netem_available(names.probe_netns(lab))
                        state.summary["netem"] = netem
                    impairments.live_set(netns, dev, impairment_plan.qdisc_for(dev, impairment, bool(netem)),
                                         impairment_plan.loss_rule(dev, impairment, bool(netem)))
                rows = [r for r in rows if (r["netns"], r["interface"]) != (netns, dev)]
                if impairment is not None:
                    rows.append(impairment_plan.row(f"live {target}", netns, dev, impairment,
                                                    bool(state.summary.get("netem"))))
            state.summary["impairments"] = rows
            self.store.save(state)
            return rows

    # -- cleanup ---------------------------------------------------------------------------------
    def cleanup(self) -> dict[str, apply.Removal]:
        """Remove what crashed or killed labs left: labs not fully up, and namespaces of labs with no state."""
        from lab.netns import apply
        capabilities.require_root()
        removed: dict[str, apply.Removal] = {}
        for lab in self.store.labs():
            with self.store.locked(lab):  # decide under the lock: an `up` may be finishing
                state = self.store.load(lab)
                if state is None or state.status != "up" or not all(namespace.exists(n) for n in state.namespaces):
                    removed[lab] = self._teardown(lab, state)
        for lab in self.store.stray_locks():
            with self.store.locked(lab):
                pass  # leaving the lock of a lab with no state removes the file
        known = set(self.store.labs())
        everything = namespace.list_all()
        orphan_labs = {names.lab_of(n) for n in everything if names.is_lab_marker(n)} - known
        for lab in sorted(orphan_labs):
            removed[lab] = apply.remove_namespaces([n for n in everything if names.is_lab_netns(n, lab)])
        return removed


def start_policy(topology: Topology) -> dict[str, Any]:
    """The enforcer's first sync (its chains, hooks and sets on every node), or a note that nothing enforces."""
    from lab.policy import enforce
    chosen = enforce.enforcer(topology)
    if chosen is None:
        return {"enforcer": "none", "models": "nothing: policies are accepted and not enforced"}
    counts = enforce.sync(topology, enforce.compile_lab(topology), first=True)
    return {"enforcer": chosen.name, "models": chosen.models, "rules_per_node": counts}


def summarize(topology: Topology, plan: LabPlan, caps: capabilities.Capabilities) -> dict[str, Any]:
    """What `lab status` shows, recorded at `up` time."""
    from lab import cni
    capability_notes = caps.notes()
    described = cni.dataplane(topology).describe(topology, caps)
    node_mtu, node_env = described.pop("node_mtu"), described.pop("node_env")
    env_key = described.pop("node_env_key")       # each data plane's per-node status (lab/cni/<name>/status.py)
    node_notes = {ns.owner: list(ns.notes) for ns in plan.namespaces if ns.role == "node"}
    nodes = [{"name": n.name, "netns": names.node_netns(topology.name, n.name), "ip": str(n.ip),
              "network": n.network, "subnet": str(n.pod_cidr), "mtu": node_mtu[n.name],
              env_key: node_env[n.name], "notes": node_notes.get(n.name, [])}
             for n in topology.nodes]
    pods = [{"key": p.key, "name": p.name, "namespace": p.namespace, "node": p.node, "ip": str(p.ip),
             "netns": names.pod_netns(topology.name, p.namespace, p.name), "labels": dict(p.labels)}
            for p in topology.pods]
    networks = [{"name": n.name, "cidr": str(n.cidr), "gateway": str(n.gateway), "mtu": n.mtu}
                for n in topology.networks]
    policies = [{"key": p.key, "namespace": p.namespace, "name": p.name, "podSelector": p.pod_selector.text(),
                 "policyTypes": list(p.policy_types), "source": p.source,
                 "ipBlocks": [peer.ip_block.text() for rule in p.ingress + p.egress for peer in rule.peers
                              if peer.ip_block is not None]} for p in topology.policies]
    namespaces = [{"name": n.name, "labels": dict(n.labels)} for n in topology.namespaces]
    externals = [{"name": e.name, "network": e.network, "ip": str(e.ip),
                  "netns": names.node_netns(topology.name, e.name)} for e in topology.externals]
    routers = [{"name": r.name, "network": r.network, "ip": str(r.ip), "as_number": r.as_number,
                "announce": [str(p) for p in r.announce], "peers": [p.name or str(p.ip) for p in r.peers],
                "netns": names.node_netns(topology.name, r.name)} for r in topology.routers]
    return {"routers": routers,
            "cni": topology.cluster.cni, "enforcer": topology.cluster.enforcer, "policies": policies,
            "namespaces": namespaces, "externals": externals, **described,
            "underlay": {"netns": names.underlay_netns(topology.name), "networks": networks},
            "nodes": nodes, "pods": pods, "notes": list(plan.notes) + list(topology.notes),
            "capabilities": capability_notes}


def _needed_kinds(plan: LabPlan) -> list[str]:
    return sorted({link.kind for ns in plan.namespaces for link in ns.links if link.kind not in ("existing", "tun")})


def _fingerprint(topology: Topology) -> str:
    return hashlib.sha256(repr(topology).encode()).hexdigest()[:16]


AGENT_ROLES = {"ebpf": "holds the tunnel device open (a TUN device has carrier only while attached: without it "
                       "the eBPF IPIP path carries nothing) and decapsulates fragmented IPIP",
               "userspace": "carries IPIP in userspace (the tunnel device's packets)"}


def degraded_reasons(missing: list[str], agent: dict[str, Any] | None, supervised: dict[str, Any] | None,
                     faults: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Why a lab is degraded: failures (a namespace gone, a daemon dead, restarting or in a crash loop, no
    supervisor), and the faults in force (deliberate: `lab fault`). Empty when the lab is healthy."""
    from lab.netns import supervisor as sv
    reasons = [{"kind": "failure", "what": f"namespace {n} is missing"} for n in missing]
    if supervised is not None and not supervised["alive"]:
        reasons.append({"kind": "failure", "what": f"the lab's supervisor (pid {supervised['pid']}) is not running: "
                                                   "nothing restarts the daemons"})
    for row in (supervised or {}).get("daemons", []):
        if row["state"] not in (sv.RUNNING, sv.STOPPED):
            reasons.append({"kind": "failure", "what": f"{row['name']} is {row['state']}"})
    if agent is not None and not agent["alive"] and not any(r["what"].startswith("route-agent ") for r in reasons):
        reasons.append({"kind": "failure", "what": f"the route agent (pid {agent['pid']}) is not running"})
    reasons += [{"kind": "fault", "what": f"lab fault {f['fault']} {f['target']} (undo: lab fault {f['undo']} "
                                          f"{f['target']})"} for f in faults]
    return reasons


def route_agent_health(runtime: dict[str, Any]) -> dict[str, Any] | None:
    """The lab's route agent, if it runs one: its pid, whether it still runs, and what it does for the lab."""
    agent = runtime.get("route_agent")
    if not agent:
        return None
    pid = int(agent["pid"])
    alive = AGENT_MODULE in _command_of(pid)        # a pid reused by another program is no agent
    roles = [AGENT_ROLES[runtime["ipip"]]] if runtime.get("ipip") in AGENT_ROLES else []
    if runtime.get("bird"):
        roles.append("installs the routes BIRD learns into the nodes' kernels")
    return {"pid": pid, "alive": alive, "role": "; ".join(roles) or "serves the lab's nodes"}


def _command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
