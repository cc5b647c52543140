"""Real traffic between namespaces with ordinary tools (ping, a TCP echo server), independent of the lab."""

from __future__ import annotations

import subprocess
import sys

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); print("ready", flush=True)
s.settimeout(10)
c, _ = s.accept(); c.sendall(c.recv(100)); c.close()
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
c.sendall(b"hello-lab"); sys.exit(0 if c.recv(100) == b"hello-lab" else 1)
"""


def ping(src_netns: str, dst_ip: str, count: int = 1, wait: int = 2) -> bool:
    result = subprocess.run(["ip", "netns", "exec", src_netns, "ping", "-c", str(count), "-W", str(wait), dst_ip],
                            capture_output=True, text=True)
    return result.returncode == 0


def tcp(src_netns: str, dst_netns: str, dst_ip: str, port: int = 8080) -> bool:
    """A TCP connection from src to a one-shot echo server in dst; True if the echo came back."""
    server = subprocess.Popen(["ip", "netns", "exec", dst_netns, sys.executable, "-c", SERVER, str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        client = subprocess.run(["ip", "netns", "exec", src_netns, sys.executable, "-c", CLIENT, dst_ip, str(port)],
                                capture_output=True, text=True, timeout=20)
        return client.returncode == 0
    finally:
        server.kill()
        server.wait()


UDP_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1]))); print("ready", flush=True)
s.settimeout(10)
data, peer = s.recvfrom(100); s.sendto(data, peer)
"""
UDP_CLIENT = """
import socket, sys
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(3)
c.sendto(b"hello-lab-udp", (sys.argv[1], int(sys.argv[2])))
sys.exit(0 if c.recvfrom(100)[0] == b"hello-lab-udp" else 1)
"""


def udp(src_netns: str, dst_netns: str, dst_ip: str, port: int = 8081) -> bool:
    """A UDP datagram from src to a one-shot echo server in dst; True if the echo came back."""
    server = subprocess.Popen(["ip", "netns", "exec", dst_netns, sys.executable, "-c", UDP_SERVER, str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        client = subprocess.run(["ip", "netns", "exec", src_netns, sys.executable, "-c", UDP_CLIENT, dst_ip,
                                 str(port)], capture_output=True, text=True, timeout=20)
        return client.returncode == 0
    finally:
        server.kill()
        server.wait()
