"""The names of the devices flanneld makes on a node, defined once (tests keep their own, from the reference)."""

IPIP_DEVICE = "flannel.ipip"      # pkg/backend/ipip: tunnelName


def vxlan_device(vni: int) -> str:
    """pkg/backend/vxlan: `flannel.<VNI>`."""
    return f"flannel.{vni}"
