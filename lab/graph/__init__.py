"""`lab graph`: a picture of a lab (underlay, router, nodes with pod CIDRs and pods, tunnels or BGP sessions)."""
