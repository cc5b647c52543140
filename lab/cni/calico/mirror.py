"""What Calico's BIRD fork would have programmed: BIRD's kernel table mirrored into main, and back."""

from __future__ import annotations

from collections.abc import Iterable

from lab.bgp.route import Key, Route
from lab.netns.rtnl import (
    RT_TABLE_MAIN,
    RTA_MULTIPATH,
    RTM_DELROUTE,
    RTM_NEWROUTE,
    RTNH_F_ONLINK,
    RTPROT_BIRD,
    RTPROT_KERNEL,
)


class Mirror:
    """One node's BIRD table and main table as last seen, and the writes that make them agree."""

    def __init__(self, table: int) -> None:
        self.table = table
        self.tables = (table, RT_TABLE_MAIN)
        self.tunl0: int | None = None
        self.source: dict[Key, Route] = {}   # table, proto bird: what BIRD exported
        self.copies: dict[Key, Route] = {}   # table, other protocols: copies of main's alien routes
        self.mirrors: dict[Key, Route] = {}  # main, proto bird: what the agent programmed
        self.main: dict[Key, Route] = {}     # main, every other protocol
        self.conflicts: set[tuple[int, Key]] = set()

    def load(self, routes: Iterable[Route]) -> None:
        """Forget everything and take a fresh dump."""
        for store in (self.source, self.copies, self.mirrors, self.main):
            store.clear()
        for route in routes:
            self.observe(route, False)

    def observe(self, route: Route, deleted: bool) -> None:
        """Record an added, replaced or deleted route of either table."""
        bird = route.protocol == RTPROT_BIRD
        if route.table == self.table:
            mine, other = (self.source, self.copies) if bird else (self.copies, self.source)
        else:
            mine, other = (self.mirrors, self.main) if bird else (self.main, self.mirrors)
        if deleted:
            mine.pop(route.key, None)
        else:
            mine[route.key] = route
            other.pop(route.key, None)  # a replace by another protocol leaves no delete event

    def keys(self) -> set[Key]:
        return set(self.source) | set(self.copies) | set(self.mirrors) | set(self.main)

    def wanted_in_main(self, key: Key) -> Route | None:
        """What Calico's BIRD would have programmed into main for this key."""
        route = self.source.get(key)
        if route is None:
            return None
        tunnelled = (self.tunl0 is not None and route.oif == self.tunl0 and RTA_MULTIPATH not in route.attrs)
        if tunnelled and route.gateway is None:
            return None  # a next-hop helper (`<node ip> dev tunl0`): BIRD's own business
        if tunnelled:
            return route.copy(RT_TABLE_MAIN, RTNH_F_ONLINK)
        return route.copy(RT_TABLE_MAIN)

    def wanted_in_table(self, key: Key) -> Route | None:
        """An alien main route, as BIRD's `learn` would see it on a real node."""
        route = self.main.get(key)
        if route is None or route.protocol == RTPROT_KERNEL:
            return None
        return route.copy(self.table)

    def plan(self, keys: Iterable[Key]) -> tuple[list[tuple[int, Route]], list[str]]:
        """(RTM_NEWROUTE or RTM_DELROUTE, route) writes for `keys`, and conflicts newly found."""
        writes: list[tuple[int, Route]] = []
        notes: list[str] = []
        for key in keys:
            self._plan_one(key, self.wanted_in_main(key), self.mirrors.get(key), self.main, RT_TABLE_MAIN,
                           writes, notes)
            self._plan_one(key, self.wanted_in_table(key), self.copies.get(key), self.source, self.table,
                           writes, notes)
        return writes, notes

    def _plan_one(self, key: Key, want: Route | None, have: Route | None, occupied: dict[Key, Route], table: int,
                  writes: list[tuple[int, Route]], notes: list[str]) -> None:
        if want is None:
            if have is not None:
                writes.append((RTM_DELROUTE, have))
            return
        if key in occupied:
            if (table, key) not in self.conflicts:
                self.conflicts.add((table, key))
                notes.append(f"not writing into table {table}: a protocol {occupied[key].protocol} route holds "
                             f"the same destination and metric")
            return
        self.conflicts.discard((table, key))
        if have is None or have.content() != want.content():
            writes.append((RTM_NEWROUTE, want))
