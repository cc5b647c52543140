"""lab: a Kubernetes CNI network lab built from Linux network namespaces."""

__version__ = "0.1.0"
