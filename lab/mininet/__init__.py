"""Mininet over a running lab: `LabNet` (a `mininet.net.Mininet`) and `lab mininet` (Mininet's CLI).

    from lab.mininet import LabNet
    net = LabNet("flannel-vxlan")          # attach to the lab, or bring it up
    print(net.get("k8s-node01").cmd("ip route"))
    net.pingAll(); net.iperf((net.get("default/bs1"), net.get("default/bs8")))
    net.stop()                             # removes the lab only if LabNet brought it up

Where a Mininet script calls `CLI(net)`, call `LabCLI(net)` (or `net.interact()`): Mininet's CLI cuts
node names at `-` and `/`.
"""

from lab.mininet.cli import LabCLI
from lab.mininet.net import LabNet

__all__ = ["LabNet", "LabCLI"]
