"""Mininet custom file: `mn --custom $(lab mininet --custom-path) --topo lab,flannel-vxlan [--test pingall]`.

`mn` executes this file and takes every name it binds: `topos` adds `--topo lab,<topology>`, `CLI` and
`findController` replace mn's own (lab names as node names; no OpenFlow controller). See lab/mininet/mn.py.
"""

from lab.mininet.cli import LabCLI as CLI  # noqa: F401 (mn reads it)
from lab.mininet.mn import LabTopo, keep_host_limits, no_controller as findController  # noqa: F401

keep_host_limits()
topos = {"lab": LabTopo}
