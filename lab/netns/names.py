"""Names of a lab's network namespaces: `<lab>.<node>`, `<lab>.<namespace>.<pod>`, `<lab>._underlay`.

Node names and Kubernetes namespaces are DNS labels (no dots, no underscores), so the three forms
never collide, and every namespace of a lab starts with `<lab>.`.
"""

from __future__ import annotations

import re

from lab.errors import LabError

UNDERLAY = "_underlay"
PROBE = "_probe"
LAB_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LAB_NAME_MAX = 40


def check_lab_name(lab: str) -> str:
    """`lab` if it is a valid lab name (a DNS label of at most 40 characters), else a LabError."""
    if not isinstance(lab, str) or len(lab) > LAB_NAME_MAX or not LAB_NAME.match(lab):
        raise LabError(f"{lab!r} is not a lab name",
                       "lab names are DNS labels (lower-case letters, digits, '-'); `lab list` shows the labs")
    return lab


def node_netns(lab: str, node: str) -> str:
    return f"{lab}.{node}"


def pod_netns(lab: str, namespace: str, pod: str) -> str:
    return f"{lab}.{namespace}.{pod}"


def underlay_netns(lab: str) -> str:
    return f"{lab}.{UNDERLAY}"


def lab_of(netns: str) -> str:
    """The lab a namespace name belongs to."""
    return netns.split(".", 1)[0]


def is_lab_netns(netns: str, lab: str) -> bool:
    return netns.startswith(f"{lab}.")


def probe_netns(lab: str) -> str:
    """The scratch namespace in which `lab up` tries the kernel's link kinds."""
    return f"{lab}.{PROBE}"


def is_lab_marker(netns: str) -> bool:
    """Namespaces only a lab makes: `<lab>._underlay` and `<lab>._probe`."""
    return netns.endswith((f".{UNDERLAY}", f".{PROBE}"))
