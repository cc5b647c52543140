"""Mininet custom file: `mn --custom $(lab mininet --custom-path) --topo lab,flannel-vxlan [--test pingall]`.

`mn` executes this file and takes every name it binds: `topos` adds `--topo lab,<topology>`, `CLI` and
`findController` replace mn's own (lab names as node names; no OpenFlow controller). See lab/mininet/mn.py.
"""

try:
    from lab.mininet.cli import LabCLI as CLI  # noqa: F401 (mn reads it)
    from lab.mininet.mn import LabTopo, keep_host_limits, no_controller as findController  # noqa: F401
except ImportError as exc:  # Debian's /usr/bin/mn runs the system Python, which has no lab
    raise SystemExit(f"lab: error: this mn cannot import the lab ({exc}); run the mn of the lab's environment: "
                     "$(dirname \"$(readlink -f \"$(command -v lab)\")\")/mn --custom ...") from None

keep_host_limits()
topos = {"lab": LabTopo}
