"""`lab graph`: a valid SVG/PNG with one element per node, from topology files (no root) and a running lab."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from conftest import TOPOLOGIES, run_lab

SVG = "{http://www.w3.org/2000/svg}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _groups(path: Path, prefix: str) -> list[str]:
    root = ET.parse(path).getroot()                       # raises on a malformed file
    assert root.tag == f"{SVG}svg"
    return [g.get("id") for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith(prefix)]


def _generated(tmp_path: Path, nodes: int) -> Path:
    lines = ["name: tg-graph", "cluster: {cni: flannel}", "networks:",
             "  - {name: lan, cidr: 192.168.0.0/16, gateway: 192.168.0.1}", "nodes:"]
    lines += [f"  - {{name: n{i:02d}, ip: 192.168.1.{i + 10}}}" for i in range(nodes)]
    lines += ["pods:"] + [f"  - {{name: p{i:02d}, node: n{i:02d}}}" for i in range(nodes)]
    lines += ["resources:", "  - {Network: 10.244.0.0/16, Backend: {Type: vxlan}}"]
    path = tmp_path / "tg-graph.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("topology", ["flannel-vxlan", "flannel-hostgw-crosssubnet", "calico-rr",
                                      "calico-ipip-crosssubnet", "netpol-seed001"])
def test_svg_has_one_group_per_node(topology, tmp_path):
    spec = yaml.safe_load((TOPOLOGIES / f"{topology}.yaml").read_text())
    out = tmp_path / "lab.svg"
    run_lab("graph", topology, "-o", str(out))
    assert sorted(_groups(out, "node-")) == sorted(f"node-{n['name']}" for n in spec["nodes"])
    assert sorted(_groups(out, "segment-")) == sorted(f"segment-{n['name']}" for n in spec["networks"])
    assert sorted(_groups(out, "external-")) == sorted(f"external-{e['name']}" for e in spec.get("externals", []))


def test_route_reflector_sessions_are_edges(tmp_path):
    out = tmp_path / "rr.svg"
    run_lab("graph", "calico-rr", "-o", str(out))
    edges = [e for e in _groups(out, "edge-") if e.endswith("-bgp")]
    # calico-rr: k8s-node01 reflects for the three other nodes; no mesh
    assert len(edges) == 3 and all("k8s-node01" in e for e in edges), edges


@pytest.mark.parametrize("nodes", [3, 50])
def test_png_and_svg_at_3_and_50_nodes(nodes, tmp_path):
    topology = _generated(tmp_path, nodes)
    png, svg = tmp_path / "g.png", tmp_path / "g.svg"
    run_lab("graph", str(topology), "-o", str(png))
    run_lab("graph", str(topology), "-o", str(svg))
    assert png.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image
    height, width = matplotlib.image.imread(str(png)).shape[:2]
    assert width > 800 and height > 400
    assert len(_groups(svg, "node-")) == nodes


def test_unknown_format_is_an_argument_error(tmp_path):
    result = run_lab("graph", "flannel-vxlan", "-o", str(tmp_path / "lab.jpg"), check=False)
    assert result.returncode == 2 and "-o" in result.stderr and ".svg or .png" in result.stderr
    assert not (tmp_path / "lab.jpg").exists()
