"""Generic BGP and routing daemons: BIRD's control socket (birdc.py), starting and stopping BIRD given its
paths and the route agent's process (daemons.py), the kernel routes and netlink channel the route agent uses
(route.py, channel.py). Calico's BGP (confd's peerings, BIRD's configuration and file layout, `calicoctl node
status`) lives in lab/cni/calico/."""
