"""The lab's eBPF objects: where the built object lives, and per-node copies with their constants set.

The C source is bpf/<name>.c in the repository; scripts/install-deps.sh compiles it into
build/bpf/<name>.o (a directory .gitignore covers). A program's per-node settings are `volatile
const` globals, so they live in the object's .rodata section: the lab writes a copy of the object
with those bytes replaced (as Cilium templates its objects) and tc loads the copy. libbpf then
creates the .rodata map with those values and freezes it, so the verifier sees constants.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from lab.errors import LabError

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIR = REPO / "bpf"
BUILD_DIR = Path(os.environ.get("LAB_BPF_DIR", REPO / "build" / "bpf"))

ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
SECTION = struct.Struct("<IIQQQQIIQQ")
SYMBOL = struct.Struct("<IBBHQQ")
SHT_SYMTAB = 2


def source(name: str) -> Path:
    return SOURCE_DIR / f"{name}.c"


def built(name: str) -> Path:
    return BUILD_DIR / f"{name}.o"


def compile_argv(name: str) -> list[str]:
    """The clang command that builds bpf/<name>.c (what scripts/install-deps.sh runs)."""
    machine = os.uname().machine
    return ["clang", "-O2", "-g", "-Wall", "-target", "bpf", f"-I/usr/include/{machine}-linux-gnu",
            "-c", str(source(name)), "-o", str(built(name))]


def buildable(name: str) -> bool:
    """Built already, or clang is there to build it at first use."""
    return built(name).exists() or (source(name).exists() and shutil.which("clang") is not None)


def ensure_built(name: str) -> Path:
    """The object, compiled now if install-deps has not done it; a clear error if it cannot be."""
    path = built(name)
    if path.exists() and path.stat().st_mtime >= source(name).stat().st_mtime:
        return path
    if shutil.which("clang") is None:
        raise LabError(f"the eBPF object {path} is not built and clang is not installed",
                       "run `sudo scripts/install-deps.sh` (it installs clang, llvm and libbpf-dev and builds it)")
    print(f"lab: compiling {source(name)} into {path} (first use; scripts/install-deps.sh does this at "
          "install time)", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(compile_argv(name), capture_output=True, text=True, timeout=120)
    if result.returncode:
        raise LabError(f"compiling {source(name)} failed: {result.stderr.strip()[-400:]}",
                       "run `sudo scripts/install-deps.sh` (libbpf-dev provides <bpf/bpf_helpers.h>)")
    return path


def rodata_symbols(image: bytes) -> dict[str, tuple[int, int]]:
    """Global variables of the object's .rodata: name -> (file offset, size)."""
    header = ELF_HEADER.unpack_from(image)
    if header[0][:4] != b"\x7fELF" or header[0][4] != 2 or header[0][5] != 1:
        raise ValueError("not a little-endian ELF64 object")
    shoff, shentsize, shnum, shstrndx = header[6], header[11], header[12], header[13]
    sections = [SECTION.unpack_from(image, shoff + i * shentsize) for i in range(shnum)]
    names_at = sections[shstrndx][4]

    def name_at(table: int, offset: int) -> str:
        end = image.index(b"\0", table + offset)
        return image[table + offset:end].decode()

    section_names = [name_at(names_at, s[0]) for s in sections]
    found: dict[str, tuple[int, int]] = {}
    for section in sections:
        if section[1] != SHT_SYMTAB:
            continue
        strings = sections[section[6]][4]
        for offset in range(section[4], section[4] + section[5], SYMBOL.size):
            st_name, _info, _other, shndx, value, size = SYMBOL.unpack_from(image, offset)
            if 0 < shndx < len(sections) and section_names[shndx] == ".rodata" and st_name:
                found[name_at(strings, st_name)] = (sections[shndx][4] + value, size)
    return found


def with_constants(image: bytes, values: dict[str, bytes]) -> bytes:
    """A copy of the object with the named .rodata variables set to `values` (zero-padded)."""
    symbols = rodata_symbols(image)
    patched = bytearray(image)
    for name, data in values.items():
        if name not in symbols:
            raise ValueError(f"the object has no .rodata variable {name}")
        offset, size = symbols[name]
        if len(data) > size:
            raise ValueError(f"{name}: {len(data)} bytes do not fit in {size}")
        patched[offset:offset + size] = data.ljust(size, b"\0")
    return bytes(patched)


def write_configured(name: str, target: str, values: dict[str, bytes]) -> str:
    """Write bpf/<name>.o with `values` set to `target`; returns `target`."""
    image = ensure_built(name).read_bytes()
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as handle:
        handle.write(with_constants(image, values))
    return target
