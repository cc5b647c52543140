"""`lab experiment run`: for each mode, bring its lab up, wait until its pairs answer, measure, take it down.

Results are written as they are measured. Ctrl-C (SIGINT), SIGTERM or a failure stops the run:
what was measured is kept, summary.json and environment.json say "incomplete" and why, and every
lab the run started is taken down. Labs the run did not start are never touched (it runs its own
copies, see lab/experiment/labs.py).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lab.errors import LabError
from lab.experiment import environment, labs, recorder, results, stats
from lab.experiment.kinds import Kind, LabContext, PairContext, registry
from lab.experiment.spec import Experiment, Measurement, Mode
from lab.lifecycle import Lab
from lab.netns import capabilities

READY_TIMEOUT = 120.0       # wait_pairs_reachable default (experiments use their ready_timeout)
LIFECYCLE_ESTIMATE = 6.0     # seconds of `lab up` + waiting + `lab down`, for the ETA before the first one


@dataclass
class Step:
    """One (measurement, placement) of one mode, with its estimated seconds for the progress bar."""

    measurement: Measurement
    kind: Kind
    placement: str
    runs: int
    estimate: float


class Runner:
    def __init__(self, experiment: Experiment, out: str | os.PathLike[str], console: Console | None = None,
                 lab: Lab | None = None) -> None:
        self.experiment = experiment
        self.out = Path(out)
        self.console = console or Console(stderr=True)
        self.lab = lab or Lab()
        self.run_id = secrets.token_hex(2)
        self.started: list[str] = []          # labs this run brought up and has not yet taken down
        self.timing = {"up_s": 0.0, "ready_s": 0.0, "down_s": 0.0, "measure_s": 0.0, "warmup_s": 0.0,
                       "tool_setup_s": 0.0}

    # -- the whole run ------------------------------------------------------------------------------
    def run(self) -> results.Results:
        experiment = self.experiment
        directory = recorder.new_directory(self.out, experiment.name)
        shutil.copyfile(experiment.file, directory / "experiment.yaml")
        writer = recorder.Recorder(directory)
        writer.write_json("resolved.json", experiment.resolved())
        env = environment.initial(experiment, directory)
        writer.write_json("environment.json", env)
        status, reason = "complete", None
        began = time.perf_counter()
        with _sigterm_interrupts():
            try:
                self._all_modes(writer, env, directory)
            except KeyboardInterrupt:
                status, reason = "incomplete", "interrupted"
                self.console.print("[yellow]interrupted: saving partial results and taking the labs down[/]")
            except (LabError, OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
                status, reason = "incomplete", f"failed: {exc}"
                self.console.print(f"[red]failed[/]: {exc}")
            except BaseException as exc:     # a bug: recorded, and shown with its traceback
                status, reason = "incomplete", f"failed: {type(exc).__name__}: {exc}"
                raise
            finally:
                self._down_all()
                self.timing["wall_s"] = time.perf_counter() - began
                env.update(status=status, reason=reason, end=environment.utc(), loadavg_end=environment.loadavg(),
                           timing={k: round(v, 3) for k, v in self.timing.items()})
                writer.write_json("summary.json", stats.summarize(writer.samples, experiment.baseline,
                                                                  experiment=experiment.name, status=status))
                writer.write_json("environment.json", env)
        return results.Results.load(directory)

    def _all_modes(self, writer: recorder.Recorder, env: dict[str, Any], directory: Path) -> None:
        plans = [(mode, self._steps(mode)) for mode in self.experiment.modes]
        total = sum(self._lifecycles(steps) * LIFECYCLE_ESTIMATE + sum(s.estimate * s.runs for s in steps)
                    for _, steps in plans)
        columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(self.experiment.name, total=total)
            for mode, steps in plans:
                copy = labs.make_copy(mode.topology, mode.path, mode.text, mode.name,
                                      labs.lab_name(self.run_id, mode.name), mode.placements, directory / "labs",
                                      serve_http=any(s.kind.serve_http for s in steps), pod_nodes=mode.pod_nodes)
                env["modes"][mode.name] = environment.mode_entry(mode.name, copy.lab, mode.path, {}, copy.topology)
                self._caveats(env["modes"][mode.name], steps)
                for step in [s for s in steps if s.kind.owns_lab]:
                    self._own_lab_step(mode, copy, step, writer, env, bar, task)
                shared = [s for s in steps if not s.kind.owns_lab]
                if shared:
                    self._shared_lab(mode, copy, shared, writer, env, bar, task)
            bar.update(task, description=f"{self.experiment.name}: done")

    def _shared_lab(self, mode: Mode, copy: labs.LabCopy, steps: list[Step], writer: recorder.Recorder,
                    env: dict[str, Any], bar: Progress, task: Any) -> None:
        """One `lab up` for every pair measurement of the mode."""
        bar.update(task, description=f"{mode.name}: lab up")
        self._up(copy)
        try:
            self._record_mode(mode, copy, env, writer)
            bar.update(task, description=f"{mode.name}: waiting")
            self._wait_ready(copy)
            bar.advance(task, LIFECYCLE_ESTIMATE / 2)
            for step in steps:
                self._step(mode, copy, step, writer, env, bar, task)
                writer.write_json("environment.json", env)
        finally:
            bar.update(task, description=f"{mode.name}: lab down")
            self._down(copy.lab)
            bar.advance(task, LIFECYCLE_ESTIMATE / 2)

    def _record_mode(self, mode: Mode, copy: labs.LabCopy, env: dict[str, Any], writer: recorder.Recorder) -> None:
        """The mode's entry in environment.json, from the lab's own state (`lab status --json`)."""
        kept = env["modes"].get(mode.name, {})
        entry = environment.mode_entry(mode.name, copy.lab, mode.path, self.lab.status(copy.lab), copy.topology)
        entry["implementations"].update({k: v for k, v in kept.get("implementations", {}).items()
                                         if k not in ("ipip", "ipip_raw")})
        entry["pairs"].update(kept.get("pairs", {}))
        entry["caveats"].update(kept.get("caveats", {}))
        entry["notes"] = kept.get("notes", [])
        if mode.generate:
            entry["generate"] = mode.generate
        env["modes"][mode.name] = entry
        writer.write_json("environment.json", env)

    @staticmethod
    def _caveats(entry: dict[str, Any], steps: list[Step]) -> None:
        """Each measurement's caveat (what its figures include that a real cluster's would not)."""
        for step in steps:
            if step.kind.caveat:
                entry["caveats"][step.measurement.name] = step.kind.caveat

    def _noter(self, env: dict[str, Any], mode: str) -> Any:
        """A kind's `note`: shown, and kept in the mode's environment.json entry."""
        def note(text: str) -> None:
            self.console.print(f"  note: {text}")
            notes = env["modes"][mode].setdefault("notes", [])
            if text not in notes:
                notes.append(text)
        return note

    @staticmethod
    def _lifecycles(steps: list[Step]) -> int:
        return int(any(not s.kind.owns_lab for s in steps))

    def _own_lab_step(self, mode: Mode, copy: labs.LabCopy, step: Step, writer: recorder.Recorder,
                      env: dict[str, Any], bar: Progress, task: Any) -> None:
        """A kind that brings the lab up and down itself, in every repetition."""
        experiment, name = self.experiment, step.measurement.name
        points: list[tuple[str, float, float, str]] = []

        def up() -> float:      # part of the kind's measurement time, not of the lab lifecycle's
            started = time.perf_counter()
            self._up(copy, timed=False)
            return time.perf_counter() - started

        def down() -> float:
            if copy.lab in self.started:     # the lab's own record, read before it goes (not timed)
                self._record_mode(mode, copy, env, writer)
            started = time.perf_counter()
            self._down(copy.lab, timed=False)
            return time.perf_counter() - started

        ctx = LabContext(lab=copy.lab, topology=copy.topology, up=up, down=down,
                         timeline=lambda series, t, value, unit: points.append((series, t, value, unit)),
                         note=self._noter(env, mode.name), endpoints=copy.pair)
        bar.update(task, description=f"{mode.name}: {name}")
        for repetition in range(-experiment.warmup, experiment.repetitions):
            points.clear()
            started = time.perf_counter()
            try:
                values = step.kind.measure(ctx, step.measurement.params)
            finally:
                if copy.lab in self.started:
                    self._down(copy.lab, timed=False)
            self.timing["warmup_s" if repetition < 0 else "measure_s"] += time.perf_counter() - started
            if repetition >= 0:
                writer.add(results.Sample(experiment.name, mode.name, name, ctx.pair, ctx.placement, repetition,
                                          v.metric, v.value, v.unit, v.param, v.param_value) for v in values)
                writer.add_timeline(results.TimelinePoint(experiment.name, mode.name, name, repetition, series, t,
                                                          value, unit) for series, t, value, unit in points)
            bar.advance(task, step.estimate)
        env["modes"][mode.name]["implementations"].update(ctx.implementations)
        if ctx.placement:
            env["modes"][mode.name]["pairs"][ctx.placement] = ctx.pair
        writer.write_json("environment.json", env)

    def _steps(self, mode: Mode) -> list[Step]:
        steps = []
        for measurement in self.experiment.measurements:
            kind = registry()[measurement.kind]
            runs = self.experiment.warmup + self.experiment.repetitions
            if kind.owns_lab or not kind.pair_based:
                steps.append(Step(measurement, kind, "", runs, kind.estimate(measurement.params)))
                continue
            placements = self.experiment.placements_for(mode, measurement)
            if measurement.placements is None and kind.placements:
                placements = tuple(p for p in placements if p in kind.placements)
            for placement in placements:
                steps.append(Step(measurement, kind, placement, runs, kind.estimate(measurement.params)))
        return steps

    # -- one measurement on one pair ----------------------------------------------------------------
    def _step(self, mode: Mode, copy: labs.LabCopy, step: Step, writer: recorder.Recorder, env: dict[str, Any],
              bar: Progress, task: Any) -> None:
        src, dst = copy.pair(step.placement)
        ctx = PairContext(lab=copy.lab, topology=copy.topology, placement=step.placement, src=src, dst=dst,
                          tools=self.experiment.tools, note=self._noter(env, mode.name))
        name, experiment = step.measurement.name, self.experiment
        bar.update(task, description=f"{mode.name}: {name} {step.placement}")
        with step.kind.session(ctx, step.measurement.params):
            for repetition in range(-experiment.warmup, experiment.repetitions):
                ctx.untimed_s = 0.0
                started = time.perf_counter()
                values = step.kind.measure(ctx, step.measurement.params)
                elapsed = time.perf_counter() - started
                untimed = min(ctx.untimed_s, elapsed)
                self.timing["tool_setup_s"] += untimed
                self.timing["warmup_s" if repetition < 0 else "measure_s"] += elapsed - untimed
                if repetition >= 0:
                    writer.add(results.Sample(experiment.name, mode.name, name, ctx.pair, step.placement, repetition,
                                              v.metric, v.value, v.unit, v.param, v.param_value) for v in values)
                bar.advance(task, step.estimate)
        entry = env["modes"][mode.name]
        entry["implementations"].update(ctx.implementations)
        entry["pairs"][step.placement] = ctx.pair

    # -- labs ---------------------------------------------------------------------------------------
    def _up(self, copy: labs.LabCopy, timed: bool = True) -> None:
        """`lab up` of the run's copy; `timed`: counted as lab lifecycle (not when a kind times it itself)."""
        if copy.lab in self.lab.store.labs():
            raise LabError(f"a lab named {copy.lab} is already up; this run does not use labs it did not start",
                           f"run again (a new run picks another name), or `lab down {copy.lab}` if it is yours")
        started = time.perf_counter()
        self.started.append(copy.lab)     # before `up`: an interrupted `up` is rolled back, and down is idempotent
        self.lab.up(str(copy.path))
        if timed:
            self.timing["up_s"] += time.perf_counter() - started

    def _wait_ready(self, copy: labs.LabCopy) -> None:
        """`lab wait` (BGP converged, probe servers answering), then every pair answering a ping."""
        started = time.perf_counter()
        timeout = self.experiment.ready_timeout
        ready = self.lab.wait(copy.lab, timeout)
        if not ready.ready:
            raise LabError(f"lab {copy.lab} is not ready {timeout:.0f} s after `lab up`: "
                           + "; ".join(check.explain() for check in ready.pending()),
                           f"bring the topology up by hand (`lab up {copy.path}`) to see why")
        wait_pairs_reachable(copy, max(1.0, timeout - (time.perf_counter() - started)))
        self.timing["ready_s"] += time.perf_counter() - started

    def _down(self, lab: str, timed: bool = True) -> None:
        started = time.perf_counter()
        with _ignoring_sigint():
            self.lab.down(lab)
        if lab in self.started:
            self.started.remove(lab)
        if timed:
            self.timing["down_s"] += time.perf_counter() - started

    def _down_all(self) -> None:
        for lab in list(self.started):
            try:
                self._down(lab)
            except (LabError, OSError) as exc:
                self.console.print(f"[red]lab down {lab} failed[/]: {exc}; run `lab down {lab}`")


def wait_pairs_reachable(copy: labs.LabCopy, timeout: float = READY_TIMEOUT) -> float:
    """Readiness as the measurements need it, after `lab wait`: every pair's source pod gets an ICMP echo
    back from its destination. Seconds waited; a LabError after `timeout`."""
    started = time.monotonic()
    pending = {placement: copy.pair(placement) for placement in copy.placements}
    while pending:
        for placement, (src, dst) in list(pending.items()):
            done = subprocess.run(["ip", "netns", "exec", src.netns, "ping", "-n", "-c", "1", "-W", "1", dst.ip],
                                  capture_output=True)
            if done.returncode == 0:
                del pending[placement]
        if pending and time.monotonic() - started > timeout:
            placement, (src, dst) = next(iter(pending.items()))
            raise LabError(f"lab {copy.lab}: {src.pod.key} cannot reach {dst.pod.key} ({placement}) "
                           f"{timeout:.0f} s after `lab up`",
                           "this mode cannot carry that placement; drop it from the mode's `placements:`")
        if pending:
            time.sleep(0.1)
    return time.monotonic() - started


class _sigterm_interrupts:
    """SIGTERM raises KeyboardInterrupt (like Ctrl-C) while the run is in progress (main thread only)."""

    def __enter__(self) -> None:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


class _ignoring_sigint:
    """A second Ctrl-C must not stop `lab down` half way (main thread only)."""

    def __enter__(self) -> None:
        self.previous: list[Any] = []
        if threading.current_thread() is threading.main_thread():
            self.previous = [signal.signal(signal.SIGINT, signal.SIG_IGN),
                             signal.signal(signal.SIGTERM, signal.SIG_IGN)]

    def __exit__(self, *exc: object) -> None:
        if self.previous:
            signal.signal(signal.SIGINT, self.previous[0])
            signal.signal(signal.SIGTERM, self.previous[1])


def run(path: str, repeat: int | None = None, out: str | os.PathLike[str] | None = None,
        only: list[str] | None = None, quick: bool = False, console: Console | None = None) -> results.Results:
    """Validate the experiment completely (nothing runs on bad input), then run it."""
    from lab.experiment import spec
    experiment = spec.load(path, repeat=repeat, only=only, quick=quick)
    capabilities.require_root()
    return Runner(experiment, out or "results", console=console).run()
