"""Where calico/node keeps BIRD's files on a node, reproduced under the lab's state directory:
  files/<node>/etc/calico/confd/config/bird.cfg (+ bird_aggr.cfg, bird_ipam.cfg)   rendered by birdcfg.py
  files/<node>/var/run/calico/bird.ctl                                              BIRD's control socket
  files/<node>/var/log/calico/bird.log                                              BIRD's log (-d: foreground)
lab/bgp/daemons.py starts and stops a BIRD given these paths (a `BirdPaths`)."""

from __future__ import annotations

import os

from lab.bgp.daemons import BirdPaths

CONFIG_DIR = "etc/calico/confd/config"
RUN_DIR = "var/run/calico"
LOG_DIR = "var/log/calico"


def node_paths(root: str) -> BirdPaths:
    """A node's BIRD paths, `root` being the node's directory under the lab's files (files/<node>)."""
    run = os.path.join(root, RUN_DIR)
    return BirdPaths(config_dir=os.path.join(root, CONFIG_DIR), socket=os.path.join(run, "bird.ctl"),
                     pid_file=os.path.join(run, "bird.pid"), log=os.path.join(root, LOG_DIR, "bird.log"))


def config_files(node: str, rendered: dict[str, str]) -> dict[str, str]:
    """Rendered BIRD files keyed by their path under the lab's files directory."""
    return {f"{node}/{CONFIG_DIR}/{name}": text for name, text in rendered.items()}
