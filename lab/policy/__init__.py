"""NetworkPolicy: the model, manifests, the reference evaluator, and the iptables/ipset enforcers."""
