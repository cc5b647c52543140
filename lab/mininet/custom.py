"""Mininet custom file: `mn --custom $(lab mininet --custom-path) --topo lab,flannel-vxlan [--test pingall]`.

`mn` executes this file and takes every name it binds (it replaces its own globals, which it looks up
at call time): `topos` adds `--topo lab,<topology>`; `CLI` (lab names as node names), `findController`
(no OpenFlow controller), `Mininet` (the lab's iperf) and `cleanup` (only this mn's shells and lab,
never Mininet's machine-wide `mn -c`) replace mn's own; `validate` refuses --nat, --arp, --switch,
--controller and --innamespace. See lab/mininet/mn.py.
"""

try:
    from lab.mininet.cli import LabCLI as CLI  # noqa: F401 (mn reads it)
    from lab.mininet.mn import LabMininet as Mininet  # noqa: F401
    from lab.mininet.mn import LabTopo, install_exit_hooks, keep_host_limits, validate  # noqa: F401
    from lab.mininet.mn import lab_cleanup as cleanup  # noqa: F401
    from lab.mininet.mn import no_controller as findController  # noqa: F401
except ImportError as exc:  # Debian's /usr/bin/mn runs the system Python, which has no lab
    raise SystemExit(f"lab: error: this mn cannot import the lab ({exc}); run `lab-mn` (installed by "
                     "scripts/install-deps.sh) or the lab environment's .venv/bin/mn --custom ...") from None

keep_host_limits()
install_exit_hooks()
topos = {"lab": LabTopo}
