"""Manifest files as kubectl and calicoctl read them: `kind: List` (and calicoctl's `<Kind>List`)
stand for their items."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeVar

T = TypeVar("T")


def is_list(data: Any) -> bool:
    """A `kind: List` (kubectl) or `<Kind>List` with items (what `calicoctl get -o yaml` prints)."""
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        return False
    return data["kind"] == "List" or (data["kind"].endswith("List") and "items" in data)


def expand(item: T) -> list[T]:
    """`item` (anything with `data`, `document` and `path`), or the items of the List it holds, each
    at its own path (`items[i]`) so that errors name its lines."""
    data = item.data  # type: ignore[attr-defined]
    if not is_list(data):
        return [item]
    document, path = item.document, item.path  # type: ignore[attr-defined]
    items = data.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise document.error(path + ("items",), f"the items of a {data['kind']} must be a list of manifests")
    result: list[T] = []
    for index, entry in enumerate(items):
        if is_list(entry):
            raise document.error(path + ("items", index, "kind"), "a List inside a List is not supported",
                                 "list the manifests themselves")
        result.append(replace(item, data=entry, path=path + ("items", index)))  # type: ignore[type-var]
    return result
