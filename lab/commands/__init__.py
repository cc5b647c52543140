"""The `lab` commands, one module per group of commands.

Each module has, per command, `add_<command>(sub)`, which adds the command's parser with its handler
(`cmd_<command>(lab, args) -> exit code`), and the handlers themselves. lab/cli.py lists the
`add_` functions in the order `lab --help` shows them. Handlers import what they need inside
themselves, so a command pays only for its own modules and `lab --help` loads none of them.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
