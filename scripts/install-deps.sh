#!/usr/bin/env bash
# Install everything the lab needs on Debian or Ubuntu, as root. Idempotent: installs only what is missing.
#   scripts/install-deps.sh          run-time packages + the lab in .venv, `lab` linked into /usr/local/bin
#   scripts/install-deps.sh --test   the same, plus what the tests need (pytest, vagrant, chromium: the
#                                    report test opens the HTML report in a real headless browser)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (in a root shell, or: sudo $0): the lab creates network namespaces and installs Debian packages" >&2
  exit 1
fi

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

# mininet: mnexec, iperf (2) and telnet for `lab mininet` / lab.mininet; installed without its recommended
# openvswitch-switch (--no-install-recommends): the lab runs no OpenFlow switch and no controller.
runtime=(iproute2 iptables ipset tcpdump iperf3 sockperf iputils-ping bird mininet procps kmod python3 python3-venv ca-certificates
         clang llvm libbpf-dev)
testing=(vagrant chromium)
# bpftool (the tests check that `lab down` unloads the eBPF programs): its own package on Debian; on
# Ubuntu it comes with linux-tools
if apt-cache show bpftool >/dev/null 2>&1; then testing+=(bpftool); fi

missing=()
for pkg in "${runtime[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "$with_tests" = 1 ]; then
  for pkg in "${testing[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
fi

bird_was_installed=1
dpkg -s bird >/dev/null 2>&1 || bird_was_installed=0
ovs_was_installed=1
dpkg -s openvswitch-switch >/dev/null 2>&1 || ovs_was_installed=0

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's bird package starts BIRD in the host's namespace; the lab runs its own BIRDs inside node
# namespaces only, so stop a service that this script caused to start.
if [ "$bird_was_installed" = 0 ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now bird.service bird6.service >/dev/null 2>&1 || true
fi

# Mininet's recommended Open vSwitch is left out (--no-install-recommends); should a package have pulled it
# in during this run, stop its service: the lab runs no OpenFlow switch and no controller.
if [ "$ovs_was_installed" = 0 ] && dpkg -s openvswitch-switch >/dev/null 2>&1 && \
    command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now openvswitch-switch.service ovs-vswitchd.service ovsdb-server.service >/dev/null 2>&1 || true
fi

# The eBPF IPIP tunnel (bpf/ipip.c) for kernels without the ipip module: compiled here, into build/bpf/
# (ignored by git), and loaded by tc at `lab up`.
mkdir -p build/bpf
clang -O2 -g -Wall -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -c bpf/ipip.c -o build/bpf/ipip.o
echo "install-deps: built build/bpf/ipip.o"

# Python >= 3.11: $PYTHON, else python3, else Debian/Ubuntu's python3.11 package (e.g. on Ubuntu 22.04).
new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
python=${PYTHON:-python3}
if ! new_enough "$python"; then
  if ! command -v python3.11 >/dev/null 2>&1; then
    echo "install-deps: $python is older than 3.11; installing python3.11"
    apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv >/dev/null || true
  fi
  python=python3.11
fi
if ! new_enough "$python"; then
  echo "install-deps: the lab needs Python >= 3.11; install it and run again with PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
extras=""
[ "$with_tests" = 1 ] && extras="[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
ln -sf "$(pwd)/.venv/bin/lab" /usr/local/bin/lab
# `mn` on PATH is Debian's /usr/bin/mn (system Python: it cannot import the lab); `lab-mn` is the mn of
# the lab's environment, for `lab-mn --custom "$(lab mininet --custom-path)" --topo lab,<topology>`.
ln -sf "$(pwd)/.venv/bin/mn" /usr/local/bin/lab-mn
echo "install-deps: ready ($(.venv/bin/lab --help >/dev/null && echo 'lab' installed as /usr/local/bin/lab))"
