"""Felix's iptables vocabulary (v3.28): rules, chains, marks and actions, rendered as Felix renders them.

A rule is written exactly as Felix hands it to iptables-restore (`--jump`, `--in-interface`,
`-m multiport --destination-ports`, `--set-mark 0/0x30000`...), with its `cali:<hash>` comment first;
`iptables-save` prints the same rules in its own short form. Marks are those Felix allocates from the
default IptablesMarkMask 0xffff0000 (felix/dataplane/driver.go): accept, pass, scratch0, scratch1.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.policy import felix_names

MARK_ACCEPT = 0x10000
MARK_PASS = 0x20000
MARK_SCRATCH0 = 0x40000
MARK_SCRATCH1 = 0x80000
ALL_MARKS = MARK_ACCEPT | MARK_PASS | MARK_SCRATCH0 | MARK_SCRATCH1

ACCEPT = "--jump ACCEPT"
DROP = "--jump DROP"               # IptablesFilterDenyAction default; its String() is "Drop"
RETURN = "--jump RETURN"
MASQUERADE = "--jump MASQUERADE --random-fully"   # MASQFullyRandom: iptables >= 1.6.2, kernel >= 3.14
DENY_WORD = "Drop"


@dataclass(frozen=True)
class Rule:
    """One Felix rule: match fragments, an action fragment ('' for none) and comments."""

    match: tuple[str, ...] = ()
    action: str = ""
    comments: tuple[str, ...] = ()

    def body(self) -> str:
        """The rule after `-A <chain>`, without the hash comment (what Felix hashes)."""
        parts = [felix_names.comment(text) for text in self.comments] + list(self.match)
        return " ".join(parts + ([self.action] if self.action else []))

    @property
    def target(self) -> str | None:
        """The Felix chain this rule jumps or goes to, if any."""
        words = self.action.split()
        if len(words) == 2 and words[0] in ("--jump", "--goto") and words[1].startswith("cali-"):
            return words[1]
        return None


@dataclass(frozen=True)
class Chain:
    """A Felix chain: its name and rules."""

    name: str
    rules: tuple[Rule, ...] = ()

    def lines(self) -> list[str]:
        """`-A` lines, each with its `cali:<hash>` comment, as Felix writes them."""
        bodies = [rule.body() for rule in self.rules]
        hashes = felix_names.rule_hashes(self.name, bodies)
        return [_line(f"-A {self.name}", digest, body) for digest, body in zip(hashes, bodies, strict=False)]


def hook_lines(builtin: str, inserted: list[Rule], appended: list[Rule]) -> list[str]:
    """Felix's rules in a built-in chain: inserts hashed on its name, appends on `<name>*appends*`."""
    inserted_bodies = [rule.body() for rule in inserted]
    appended_bodies = [rule.body() for rule in appended]
    lines = [_line(f"-I {builtin} {index}", digest, body) for index, (digest, body) in
             enumerate(zip(felix_names.rule_hashes(builtin, inserted_bodies), inserted_bodies, strict=False), start=1)]
    lines += [_line(f"-A {builtin}", digest, body) for digest, body in
              zip(felix_names.rule_hashes(builtin + "*appends*", appended_bodies), appended_bodies, strict=False)]
    return lines


def _line(head: str, digest: str, body: str) -> str:
    """A rule with its hash comment first, as Table renders it."""
    return f'{head} -m comment --comment "cali:{digest}"' + (f" {body}" if body else "")


# -- matches and actions -----------------------------------------------------------------------------
def jump(chain: str) -> str:
    """JumpAction."""
    return f"--jump {chain}"


def goto(chain: str) -> str:
    """GotoAction."""
    return f"--goto {chain}"


def set_mark(mark: int) -> str:
    """SetMarkAction."""
    return f"--jump MARK --set-mark {mark:#x}/{mark:#x}"


def clear_mark(mark: int) -> str:
    """ClearMarkAction."""
    return f"--jump MARK --set-mark 0/{mark:#x}"


def set_masked_mark(mark: int, mask: int) -> str:
    """SetMaskedMarkAction."""
    return f"--jump MARK --set-mark {mark:#x}/{mask:#x}"


def mark_clear(mark: int) -> str:
    """MarkClear: every bit of `mark` is 0."""
    return f"-m mark --mark 0/{mark:#x}"


def mark_not_clear(mark: int) -> str:
    """MarkNotClear: some bit of `mark` is 1."""
    return f"-m mark ! --mark 0/{mark:#x}"


def mark_set(mark: int) -> str:
    """MarkSingleBitSet."""
    return f"-m mark --mark {mark:#x}/{mark:#x}"


def ports(ranges: tuple[tuple[int, int], ...]) -> str:
    """PortRangesToMultiport: `80,8000:8080`."""
    return ",".join(str(first) if first == last else f"{first}:{last}" for first, last in ranges)


def dest_ports(ranges: tuple[tuple[int, int], ...]) -> str:
    """DestPortRanges."""
    return f"-m multiport --destination-ports {ports(ranges)}"


def match_set(name: str, direction: str, negated: bool = False) -> str:
    """`-m set [!] --match-set <name> src|dst|src,src|dst,dst`."""
    return f"-m set {'! ' if negated else ''}--match-set {name} {direction}"
