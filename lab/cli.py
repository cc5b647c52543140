"""The `lab` command: parse, call lab.lifecycle, print.

The commands live in lab/commands/, one module per group; COMMANDS below lists them in the order of
`lab --help`. Each command imports what it needs inside its function, so a command pays only for its
own modules (`lab trace` does not load matplotlib, jsonschema's manifests, BIRD or the data planes'
builders): starting Python and parsing the arguments stay well under the 1 s a trace may take.
"""

from __future__ import annotations

import argparse
import sys

from lab.commands import bgp, changes, faults, labs, nodes, policy, results, views
from lab.errors import LabError

# The commands, in the order `lab --help` lists them: each adds its parser and handler.
COMMANDS = (
    labs.add_up, labs.add_wait, labs.add_down, labs.add_list, labs.add_status,
    nodes.add_exec, nodes.add_shell, nodes.add_ping,
    changes.add_apply, changes.add_delete, changes.add_label,
    policy.add_probe, policy.add_policy,
    bgp.add_birdc, bgp.add_calicoctl, bgp.add_bgp,
    views.add_graph, views.add_capture, views.add_trace,
    changes.add_impair,
    faults.add_fault,
    results.add_report,
    nodes.add_mininet,
    labs.add_topologies,
    results.add_experiment,
    labs.add_cleanup,
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command: list[str] = []
    if "--" in argv:  # `lab exec <target> [--lab X] -- <command...>`: the command is never parsed
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    args = parser().parse_args(argv)
    if command:
        args.cmd = command
    try:
        from lab.lifecycle import Lab
        return args.func(Lab(), args) or 0
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:   # Ctrl-C, or a signal a capture turned into an exception
        return 128 + getattr(exc, "signum", 2)
    except BrokenPipeError:  # `lab status | head`
        sys.stderr.close()
        return 0


def parser() -> argparse.ArgumentParser:
    """`lab` and its commands."""
    top = argparse.ArgumentParser(prog="lab", description="Kubernetes CNI network lab in Linux network namespaces")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return top


if __name__ == "__main__":
    sys.exit(main())
