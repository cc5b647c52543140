"""Calico's BGP control plane: selectors, BIRD's control socket and `calicoctl node status`."""
