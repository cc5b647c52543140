"""Kubernetes label syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue)."""

from __future__ import annotations

import re

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


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
