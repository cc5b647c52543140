"""The lab's own Python daemons (route agent, probe servers): one per lab, in a lab namespace.

A daemon is `python -m <module> <spec.json>`, started inside a namespace of the lab (so `lab down`
finds and stops it with every other process there), in its own session, logging to the spec's
`log`. It is ready when it has written the spec's `ready` file.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

from lab.errors import LabError
from lab.netns import apply, namespace
from lab.netns.pyproc import python_argv, python_env, tail

READY_TIMEOUT = 30.0


def write_spec(spec: dict[str, Any], spec_path: str) -> None:
    with open(spec_path, "w", encoding="utf-8") as handle:
        json.dump(spec, handle, indent=1)


def start(netns: str, module: str, spec: dict[str, Any], spec_path: str, what: str,
          timeout: float = READY_TIMEOUT) -> subprocess.Popen[bytes]:
    """Write the spec, start the daemon in `netns` and wait for its ready file; `what` names it in errors."""
    write_spec(spec, spec_path)
    if os.path.exists(spec["ready"]):
        os.unlink(spec["ready"])
    argv = ["nsenter", f"--net={namespace.path(netns)}", *python_argv(module, spec_path)]
    with open(spec["log"], "a", encoding="utf-8") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                   env={**os.environ, **python_env()})
    deadline = time.monotonic() + timeout
    while not os.path.exists(spec["ready"]):
        if process.poll() is not None:
            raise LabError(f"{what} exited with {process.returncode} before it was ready: {tail(spec['log'])}",
                           f"see {spec['log']}")
        if time.monotonic() > deadline:
            apply.stop_processes([process.pid])
            raise LabError(f"{what} was not ready after {timeout:.0f} s", f"see {spec['log']}")
        time.sleep(0.01)
    return process


