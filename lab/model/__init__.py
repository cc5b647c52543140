"""The model layer, at the bottom of lab: pure data and the meaning of the API's own languages.

Kubernetes labels and label selectors (labels), Calico's selector language (calico_selector) and
the NetworkPolicy model (network_policy). Everything else may import it; it imports nothing of
lab (see docs/design.md, "Layers").
"""
