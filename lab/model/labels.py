"""Kubernetes labels: their syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue) and
the label selector of the API (metav1.LabelSelector)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def key_problem(key: str) -> str | None:
    """Why `key` is not a valid label key, or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"label key prefix {prefix!r} must be a DNS subdomain"
    if not name or len(name) > 63 or not _NAME.match(name):
        return (f"label key {key!r} must be at most 63 characters of letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit, with an optional DNS-subdomain prefix and '/'")
    return None


def value_problem(value: str) -> str | None:
    """Why `value` is not a valid label value, or None."""
    if value == "":
        return None
    if len(value) > 63 or not _NAME.match(value):
        return (f"label value {value!r} must be empty or at most 63 characters of letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit")
    return None


@dataclass(frozen=True)
class Requirement:
    """One matchExpressions entry."""

    key: str
    operator: str                 # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSelector:
    """metav1.LabelSelector: matchLabels AND every matchExpressions requirement; empty selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def text(self) -> str:
        """kubectl's rendering (as in `kubectl get networkpolicy`'s POD-SELECTOR column)."""
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for req in self.match_expressions:
            if req.operator in ("In", "NotIn"):
                parts.append(f"{req.key} {req.operator.lower()} ({','.join(req.values)})")
            else:
                parts.append(req.key if req.operator == "Exists" else f"!{req.key}")
        return ",".join(parts) or "<none>"
