"""The names of the devices Calico makes on a node, defined once (tests keep their own, from the reference)."""

IPIP_DEVICE = "tunl0"             # Felix's ipip manager; confd's krt_tunnel; the route agent's tunnel
VXLAN_DEVICE = "vxlan.calico"     # Felix's vxlan manager
