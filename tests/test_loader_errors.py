"""Golden error tests for the loader (no root): a table of input -> the file, line, field and message
the error must name, for every class of issue 10, plus what Kubernetes and Calico accept that the
lab must accept too. The loader is called directly (lab.topology.loader.load), as `lab up` and
`lab up --dry-run` call it before touching anything.

Line numbers are counted by hand from the texts below (line 1 is the first line of the text).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.policy import evaluator
from lab.topology import entries, loader
from lab.topology.model import Topology

FLANNEL = """\
name: t
cluster: {cni: flannel, networkPolicy: kube-router}
networks:
  - {name: lan, cidr: 192.168.10.0/24}
nodes:
  - {name: n1, ip: 192.168.10.11}
  - {name: n2, ip: 192.168.10.12}
namespaces:
  - {name: x}
pods:
  - {name: a, namespace: x, node: n1, labels: {app: a}, containerPorts: [{containerPort: 80}]}
resources:
"""  # 12 lines: a resource's first line is 13

CALICO = """\
name: t
cluster: {cni: calico}
networks:
  - {name: lan, cidr: 192.168.10.0/24}
nodes:
  - {name: n1, ip: 192.168.10.11}
  - {name: n2, ip: 192.168.10.12}
pods:
  - {name: a, node: n1}
resources:
  - apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata: {name: pool}
    spec: {cidr: 10.244.0.0/16, ipipMode: Always}
"""  # 14 lines: a further resource's first line is 15


def load(tmp_path: Path, text: str | bytes, extra: dict[str, str | bytes] | None = None) -> Topology:
    for name, content in (extra or {}).items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    path = tmp_path / "topo.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return loader.load(str(path))


def error_of(tmp_path: Path, text: str | bytes, extra: dict | None = None) -> str:
    with pytest.raises(LabError) as caught:
        load(tmp_path, text, extra)
    return str(caught.value)


def policy(spec: str, name: str = "p") -> str:
    """A NetworkPolicy in namespace x as the topology's resource (its first line is 13)."""
    return FLANNEL + f"""\
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {{name: {name}, namespace: x}}
    spec:
{spec}"""


def ip_block(block: str) -> str:
    return policy(f"""\
      podSelector: {{}}
      ingress:
        - from:
            - ipBlock: {block}
""")  # the ipBlock is on line 20


DEEP = "a: " + "[" * 150 + "]" * 150 + "\n"
BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
               for p, c in zip([""] + list("abcdefgh"), "abcdefghi", strict=False))

# (id, topology text, extra files, file, line, field, a piece of the message)
CASES = [
    # 1. bytes and files
    ("non-utf8-topology", FLANNEL.encode() + b"  - {Network: \"10.244.0.0/16\xff\"}\n", None,
     "topo.yaml", 13, "", "not UTF-8 text: byte 0xff"),
    ("non-utf8-resource-file", FLANNEL + "  - file: m.yaml\n", {"m.yaml": b"kind: Pod\nmetadata: {name: \xc3(}\n"},
     "m.yaml", 2, "", "not UTF-8 text"),
    ("two-documents", FLANNEL + "---\nname: u\n", None, "topo.yaml", 14, "", "holds 2 YAML documents"),
    ("control-character", FLANNEL.replace("name: t\n", "name: t\x07\n"), None,
     "topo.yaml", 1, "", "control character U+0007"),
    # 2. YAML the reader must handle
    ("bad-int-tag", FLANNEL.replace("{containerPort: 80}", "{containerPort: !!int abc}"), None,
     "topo.yaml", 11, "pods[0].containerPorts[0].containerPort", "is not a valid !!int"),
    ("bad-float-tag", FLANNEL.replace("name: t\n", "name: t\nx: !!float\n"), None,
     "topo.yaml", 2, "x", "is not a valid !!float"),
    ("set-tag", FLANNEL.replace("{app: a}", "!!set {app}"), None, "topo.yaml", 11, "pods[0].labels",
     "tag !!set is not supported"),
    ("binary-tag", FLANNEL.replace("name: t\n", "name: !!binary dA==\n"), None, "topo.yaml", 1, "name",
     "tag !!binary is not supported"),
    ("bad-timestamp-tag", FLANNEL.replace("name: t\n", "name: t\ndescription: !!timestamp soon\n"), None,
     "topo.yaml", 2, "description", "is not a valid !!timestamp"),
    ("recursive-alias", FLANNEL.replace("{app: a}", "&l {app: *l}"), None, "topo.yaml", 11, "pods[0].labels.app",
     "refers to its own anchor"),
    ("undefined-alias", FLANNEL.replace("{app: a}", "*nothing"), None, "topo.yaml", 11, "pods[0].labels",
     "names no anchor"),
    ("deep-nesting", FLANNEL + DEEP, None, "topo.yaml", 13, "", "nested more than 100 levels"),
    # 3. alias bombs
    ("alias-bomb", BOMB, None, "topo.yaml", 4, "d[1]", "excessive aliasing"),
    # 4. manifests with the wrong shape
    ("kind-a-list", FLANNEL + "  - {apiVersion: v1, kind: [Pod], metadata: {name: b}}\n", None,
     "topo.yaml", 13, "resources[0].kind", "expected a string, got a list"),
    ("metadata-a-string", FLANNEL + "  - {apiVersion: v1, kind: Pod, metadata: b}\n", None,
     "topo.yaml", 13, "resources[0].metadata", "expected a mapping, got a string"),
    ("spec-a-string", FLANNEL + "  - {apiVersion: v1, kind: Pod, metadata: {name: b}, spec: n1}\n", None,
     "topo.yaml", 13, "resources[0].spec", "expected a mapping, got a string"),
    ("containers-a-string", FLANNEL + "  - {apiVersion: v1, kind: Pod, metadata: {name: b}, "
     "spec: {nodeName: n1, containers: web}}\n", None, "topo.yaml", 13, "resources[0].spec.containers",
     "expected a list, got a string"),
    ("ports-an-int", FLANNEL + "  - {apiVersion: v1, kind: Pod, metadata: {name: b}, "
     "spec: {nodeName: n1, containers: [{name: c, ports: 80}]}}\n", None, "topo.yaml", 13,
     "resources[0].spec.containers[0].ports", "expected a list or null, got a number"),
    ("ports-ints", FLANNEL + "  - {apiVersion: v1, kind: Pod, metadata: {name: b}, "
     "spec: {nodeName: n1, containers: [{name: c, ports: [80]}]}}\n", None, "topo.yaml", 13,
     "resources[0].spec.containers[0].ports[0]", "expected a mapping, got a number"),
    ("nodename-a-list", FLANNEL + "  - {apiVersion: v1, kind: Pod, metadata: {name: b}, spec: {nodeName: [n1]}}\n",
     None, "topo.yaml", 13, "resources[0].spec.nodeName", "expected a string, got a list"),
    ("namespace-a-list", FLANNEL + "  - {apiVersion: v1, kind: Pod, metadata: {name: b, namespace: [x]}, "
     "spec: {nodeName: n1}}\n", None, "topo.yaml", 13, "resources[0].metadata.namespace",
     "expected a string, got a list"),
    ("calico-bgp-an-int", CALICO + "  - {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: n1}, "
     "spec: {bgp: 1}}\n", None, "topo.yaml", 15, "resources[1].spec.bgp", "expected a mapping or null, got a number"),
    ("calico-bgp-a-list", CALICO + "  - {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: n1}, "
     "spec: {bgp: [1]}}\n", None, "topo.yaml", 15, "resources[1].spec.bgp", "got a list"),
    ("bgppeer-node-a-list", CALICO + "  - {apiVersion: projectcalico.org/v3, kind: BGPPeer, metadata: {name: p}, "
     "spec: {node: [n1], peerIP: 192.168.10.1, asNumber: 64513}}\n", None, "topo.yaml", 15,
     "resources[1].spec.node", "expected a string, got a list"),
    ("pod-manifest-port-name", FLANNEL + "  - {apiVersion: v1, kind: Pod, metadata: {name: b}, "
     "spec: {nodeName: n1, containers: [{name: c, ports: [{containerPort: 80, name: HTTP_1}]}]}}\n", None,
     "topo.yaml", 13, "resources[0].spec.containers[0].ports[0].name", "'HTTP_1' is not a valid name"),
    ("generate-name-only", FLANNEL + "  - {apiVersion: v1, kind: Pod, metadata: {generateName: b-}, "
     "spec: {nodeName: n1}}\n", None, "topo.yaml", 13, "resources[0].metadata", "a Pod needs metadata.name"),
    # 5. strings the lab parses itself
    ("net-conf-nested", FLANNEL + "  - apiVersion: v1\n    kind: ConfigMap\n    metadata: {name: kube-flannel-cfg}\n"
     "    data:\n      net-conf.json: '" + "[" * 3000 + "]" * 3000 + "'\n", None, "topo.yaml", 17,
     "resources[0].data.net-conf.json", "nests 3000 levels deep"),
    ("selector-nested", CALICO.replace("ipipMode: Always}", "ipipMode: Always, nodeSelector: \""
                                       + "(" * 300 + "all()" + ")" * 300 + "\"}"), None,
     "topo.yaml", 14, "resources[0].spec.nodeSelector", "at most 100 nested '(' levels"),
    # 6. size
    ("more-pods-than-kubelet-admits", FLANNEL.replace("resources:\n", "") + "".join(
        f"  - {{name: p{i}, namespace: x, node: n2}}\n" for i in range(111)), None,
     "topo.yaml", 122, "pods[111].node", "kubelet admits at most 110"),
    # accepted by Kubernetes or Calico, refused by the API server or Calico
    ("ipblock-no-prefix", ip_block("{cidr: 10.0.0.1}"), None, "topo.yaml", 20,
     "resources[0].spec.ingress[0].from[0].ipBlock.cidr", "has no prefix length"),
    ("ipblock-netmask", ip_block("{cidr: 10.0.0.0/255.0.0.0}"), None, "topo.yaml", 20,
     "resources[0].spec.ingress[0].from[0].ipBlock.cidr", "not a netmask"),
    ("ipblock-hostmask", ip_block("{cidr: 10.0.0.0/0.255.255.255}"), None, "topo.yaml", 20,
     "resources[0].spec.ingress[0].from[0].ipBlock.cidr", "not a netmask"),
    ("ipblock-except-outside", ip_block("{cidr: 10.244.1.2/24, except: [10.244.2.9/28]}"), None, "topo.yaml", 20,
     "resources[0].spec.ingress[0].from[0].ipBlock.except[0]",
     "except 10.244.2.9/28 (that is 10.244.2.0/28) must be a strict subset of cidr 10.244.1.2/24 "
     "(that is 10.244.1.0/24)"),
    ("pool-link-local", CALICO.replace("10.244.0.0/16", "169.254.0.0/16"), None, "topo.yaml", 14,
     "resources[0].spec.cidr", "link-local range"),
    ("pool-host-bits", CALICO.replace("10.244.0.0/16", "10.244.1.2/16"), None, "topo.yaml", 14,
     "resources[0].spec.cidr", "has host bits set\n  hint: write 10.244.0.0/16"),
    ("peer-ip-port-not-a-number", CALICO + "  - {apiVersion: projectcalico.org/v3, kind: BGPPeer, metadata: {name: p}, "
     "spec: {peerIP: '192.168.10.1:bgp', asNumber: 64513}}\n", None, "topo.yaml", 15, "resources[1].spec.peerIP",
     "the port after ':' must be a number"),
    ("pod-cidr-in-disabled-pool", CALICO.replace("ipipMode: Always}", "ipipMode: Always}\n  - apiVersion: "
     "projectcalico.org/v3\n    kind: IPPool\n    metadata: {name: idle}\n"
     "    spec: {cidr: 10.99.0.0/16, disabled: true}")
     .replace("ip: 192.168.10.12}", "ip: 192.168.10.12, podCIDR: 10.99.0.0/26}"), None, "topo.yaml", 7,
     "nodes[1].podCIDR", "which is disabled"),
    ("pod-cidr-pool-does-not-select-node", CALICO.replace("ipipMode: Always}", "ipipMode: Always}\n  - apiVersion: "
     "projectcalico.org/v3\n    kind: IPPool\n    metadata: {name: rack}\n    spec: {cidr: 10.99.0.0/16, "
     "nodeSelector: \"rack == 'r1'\"}").replace("ip: 192.168.10.12}", "ip: 192.168.10.12, podCIDR: 10.99.0.0/26}"),
     None, "topo.yaml", 7, "nodes[1].podCIDR", "does not select this node"),
    ("null-label-value", FLANNEL.replace("{app: a}", "{app: }"), None, "topo.yaml", 11, "pods[0].labels.app",
     "the value is empty, which YAML reads as null"),
    # judgment calls
    ("duplicate-resource", FLANNEL + "  - {apiVersion: v1, kind: Namespace, metadata: {name: y}}\n"
     "  - {apiVersion: v1, kind: Namespace, metadata: {name: y}}\n", None, "topo.yaml", 14,
     "resources[1].metadata.name", "a second Namespace y (the first is at"),
    ("number-label-value", FLANNEL.replace("{app: a}", "{version: 1.10}"), None, "topo.yaml", 11,
     "pods[0].labels.version", '1.10 is read by YAML as a number (1.1), but a string is needed here\n'
     '  hint: quote it: "1.10"'),
    ("octal-label-value", FLANNEL.replace("{app: a}", "{build: 017}"), None, "topo.yaml", 11,
     "pods[0].labels.build", "017 is read by YAML as a number (15)"),
    ("boolean-name", FLANNEL.replace("{name: x}", "{name: off}"), None, "topo.yaml", 9, "namespaces[0].name",
     'off is read by YAML as a boolean (false), but a string is needed here\n  hint: quote it: "off"'),
    ("choices-as-yaml", FLANNEL.replace("name: t\n", "name: t\noptions: {staticNeighbours: yes-please}\n"), None,
     "topo.yaml", 2, "options.staticNeighbours", 'is not one of: "auto", true, false'),
    ("martian-underlay", FLANNEL.replace("192.168.10.0/24", "127.0.0.0/24"), None, "topo.yaml", 4,
     "networks[0].cidr", "loopback (127.0.0.0/8)"),
    ("martian-pod-network", FLANNEL + "  - {Network: 224.0.0.0/16, Backend: {Type: vxlan}}\n", None, "topo.yaml", 13,
     "resources[0].Network", "multicast (224.0.0.0/4)"),
    ("martian-pool", CALICO.replace("10.244.0.0/16", "240.0.0.0/16"), None, "topo.yaml", 14,
     "resources[0].spec.cidr", "reserved (240.0.0.0/4)"),
    ("huge-value-cut", FLANNEL.replace("kube-router}", "kube-router, cni2: " + "x" * 5000 + "}")
     .replace("cni2", "extra"), None, "topo.yaml", 2, "cluster.extra", "unknown key"),
    # hints compute the masked network, or say nothing
    ("network-host-bits-hint", FLANNEL.replace("192.168.10.0/24", "192.168.10.7/24"), None, "topo.yaml", 4,
     "networks[0].cidr", "'192.168.10.7/24' has host bits set\n  hint: write 192.168.10.0/24"),
    ("net-conf-host-bits-hint", FLANNEL + "  - {Network: 10.244.1.2/16, Backend: {Type: vxlan}}\n", None,
     "topo.yaml", 13, "resources[0].Network", "hint: write 10.244.0.0/16"),
    ("pod-cidr-host-bits-hint", FLANNEL.replace("ip: 192.168.10.12}", "ip: 192.168.10.12, podCIDR: 10.244.3.9/24}")
     + "  - {Network: 10.244.0.0/16, Backend: {Type: vxlan}}\n", None, "topo.yaml", 7, "nodes[1].podCIDR",
     "hint: write 10.244.3.0/24"),
    ("net-conf-overlap-hint-is-free", FLANNEL.replace("192.168.10", "10.244.10")
     + "  - {Network: 10.244.0.0/16, Backend: {Type: vxlan}}\n", None, "topo.yaml", 13, "resources[0].Network",
     "overlaps the underlay network 'lan' (10.244.10.0/24)\n  hint: pick a pod Network that no node segment uses, "
     "e.g. 10.0.0.0/16"),
    ("pool-overlap-hint-is-free", CALICO.replace("192.168.10", "10.244.10"), None, "topo.yaml", 14,
     "resources[0].spec.cidr", "hint: pick a pool no node segment or other pool uses, e.g. 10.0.0.0/16 "),
    ("cidr-syntax-no-hint", FLANNEL.replace("192.168.10.0/24", "192.168.10.0/33"), None, "topo.yaml", 4,
     "networks[0].cidr", "is not a valid IPv4 CIDR (octets 0-255, prefix 0-32)"),
    # Python's internals never reach the user (review of issue 10)
    ("timestamp-not-a-date", FLANNEL.replace("{app: a}", "{app: !!timestamp notadate}"), None, "topo.yaml", 11,
     "pods[0].labels.app", "'notadate' is not a valid !!timestamp: write a date such as 2001-12-14"),
    ("bool-maybe", FLANNEL.replace("{app: a}", "{app: !!bool maybe}"), None, "topo.yaml", 11,
     "pods[0].labels.app",
     "'maybe' is not a valid !!bool: write true or false\n  hint: fix the value or remove the tag"),
    ("huge-untagged-number", FLANNEL.replace("{app: a}", "{app: " + "1" * 100_000 + "}"), None, "topo.yaml", 11,
     "pods[0].labels.app", "a number of 100,000 digits: the lab reads numbers of at most 4,000 digits "
     "(Kubernetes' fit in 64 bits)\n  hint: quote it if it is text"),
    ("net-conf-huge-number", FLANNEL + "  - apiVersion: v1\n    kind: ConfigMap\n"
     "    metadata: {name: kube-flannel-cfg}\n"
     "    data:\n      net-conf.json: '{\"Network\": \"10.244.0.0/16\", \"SubnetLen\": " + "2" * 5000 + "}'\n", None,
     "topo.yaml", 17, "resources[0].data.net-conf.json", "a number in net-conf.json has thousands of digits"),
    ("policy-without-name", FLANNEL + "  - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: "
     "{namespace: x}, spec: {podSelector: {}}}\n", None, "topo.yaml", 13, "resources[0].metadata",
     "a NetworkPolicy needs metadata.name\n  hint: set metadata.name"),
    ("selector-one-hint", CALICO.replace("ipipMode: Always}", "ipipMode: Always, nodeSelector: \"a == \"}"), None,
     "topo.yaml", 14, "resources[0].spec.nodeSelector", "invalid selector 'a == ' at position 5: expected a quoted "
     "string after '==', found the end of the selector"),
    ("block-size-env-with-pools", CALICO.replace("cluster: {cni: calico}", "cluster: {cni: calico, calico: {env: "
     "{CALICO_IPV4POOL_BLOCK_SIZE: \"abc\"}}}"), None, "topo.yaml", 2,
     "cluster.calico.env.CALICO_IPV4POOL_BLOCK_SIZE", "'abc' is not a block size from 20 to 32: calico/node checks"),
    # CIDRs and names: ASCII digits only, nothing after the value
    ("cidr-arabic-indic-digits", FLANNEL.replace("192.168.10.0/24", "\"\u0661\u0669\u0662.168.10.0/24\""), None,
     "topo.yaml", 4, "networks[0].cidr", "is not a valid IPv4 CIDR (address/prefix)"),
    ("cidr-trailing-newline", FLANNEL.replace("192.168.10.0/24", '"192.168.10.0/24\\n"'), None,
     "topo.yaml", 4, "networks[0].cidr", "'192.168.10.0/24\\n' is not a valid IPv4 CIDR (address/prefix)"),
    ("ipblock-trailing-newline", ip_block('{cidr: "10.0.0.0/8\\n"}'), None, "topo.yaml", 20,
     "resources[0].spec.ingress[0].from[0].ipBlock.cidr", "is not a valid IPv4 CIDR"),
    ("pool-arabic-indic-digits", CALICO.replace("10.244.0.0/16", "\"\u0661\u0660.244.0.0/16\""), None,
     "topo.yaml", 14, "resources[0].spec.cidr", "is not a valid IPv4 CIDR"),
    ("name-trailing-newline", FLANNEL.replace("{name: x}", '{name: "x\\n"}'), None, "topo.yaml", 9,
     "namespaces[0].name", "'x\\n' is not a valid name"),
]


@pytest.mark.parametrize("text,extra,file,line,field,message",
                         [pytest.param(*row[1:], id=row[0]) for row in CASES])
def test_bad_input_names_file_line_and_field(tmp_path, text, extra, file, line, field, message):
    error = error_of(tmp_path, text, extra)
    where = f"{tmp_path / file}:{line}: "
    assert error.startswith(where + (f"{field}: " if field else "")), error
    assert message in error, error
    assert len(error) < 1200, "huge values are cut"
    assert error.count("\n  hint:") <= 1, "one hint at most"
    for internal in ("NoneType", "object has no attribute", "sys.set_int_max_str_digits", "Traceback"):
        assert internal not in error, error


def test_no_hint_without_a_computed_fix(tmp_path):
    assert "\n  hint:" not in error_of(tmp_path, FLANNEL.replace("192.168.10.0/24", "192.168.10.0/33"))


def test_a_device_file_is_refused_before_reading(tmp_path):
    with pytest.raises(LabError, match="/dev/zero: the topology is not a regular file"):
        loader.load("/dev/zero")


def test_a_file_resource_on_a_device_is_refused(tmp_path):
    os.symlink("/dev/zero", tmp_path / "zero.yaml")
    error = error_of(tmp_path, FLANNEL + "  - file: zero.yaml\n")
    assert "zero.yaml: the manifest file is not a regular file" in error


def test_an_alias_bomb_is_refused_after_few_values(tmp_path, monkeypatch):
    """The bomb would expand to 9^9 values; the alias rule stops it after a few thousand."""
    from lab.topology import yamlsource
    decoded = []
    original = yamlsource._Composer._count

    def count(self, size, aliased, line, path):
        decoded.append(self.decoded + size)
        return original(self, size, aliased, line, path)
    monkeypatch.setattr(yamlsource._Composer, "_count", count)
    assert "excessive aliasing" in error_of(tmp_path, BOMB)
    assert max(decoded) < 10_000, "values decoded when the refusal came"


# -- what the lab accepts, as Kubernetes and Calico do ---------------------------------------------
def test_merge_keys_work_as_in_kubectl(tmp_path):
    text = FLANNEL.replace("pods:\n", "pods:\n  - &base {name: b, namespace: x, node: n1, labels: {app: b}}\n"
                                      "  - <<: *base\n    name: c\n    node: n2\n")
    pods = {p.name: p for p in load(tmp_path, text).pods}
    assert (pods["c"].node, pods["c"].namespace, dict(pods["c"].labels)) == ("n2", "x", {"app": "b"})


def test_harmless_metadata_lists_and_env_strings_are_accepted(tmp_path):
    text = FLANNEL + """\
  - apiVersion: v1
    kind: List
    items:
      - apiVersion: v1
        kind: Pod
        metadata: {name: b, namespace: x, finalizers: [lab/keep], generateName: b-,
                   ownerReferences: [{kind: ReplicaSet, name: rs}], creationTimestamp: 2024-01-01T00:00:00Z}
        spec: {nodeName: n2, containers: [{name: c, ports: [{containerPort: 8080, name: http-alt}]}]}
"""
    topology = load(tmp_path, text)
    assert topology.pod("x/b").container_ports[0].name == "http-alt"
    calico = CALICO.replace("cluster: {cni: calico}", "cluster:\n  cni: calico\n  calico:\n    env: "
                            "{CALICO_IPV4POOL_CIDR: 10.96.0.0/16, CALICO_IPV4POOL_BLOCK_SIZE: \"24\", "
                            "CALICO_IPV4POOL_NAT_OUTGOING: \"false\"}")
    calico = calico[:calico.index("resources:")] + "resources:\n" + """\
  - {apiVersion: projectcalico.org/v3, kind: BGPConfiguration, metadata: {name: default}, spec: {asNumber: "1.10"}}
"""
    config = load(tmp_path, calico).cluster.config
    assert (str(config.pools[0].cidr), config.pools[0].block_size, config.pools[0].nat_outgoing) == \
        ("10.96.0.0/16", 24, False)
    assert config.bgp.as_number == 65536 + 10


def test_host_bits_in_ipblocks_mean_the_masked_network(tmp_path):
    """As the API server: accepted, the value kept as written, a warning, the masked network used."""
    topology = load(tmp_path, ip_block("{cidr: 10.244.1.2/4, except: [10.244.1.2/30]}"))
    block = topology.policies[0].ingress[0].peers[0].ip_block
    assert (block.cidr, block.excepts) == (ipaddress.IPv4Network("0.0.0.0/4"),
                                           (ipaddress.IPv4Network("10.244.1.0/30"),))
    assert block.text() == "10.244.1.2/4 except 10.244.1.2/30"
    field = "resources[0].spec.ingress[0].from[0].ipBlock"
    assert topology.warnings == (
        f'{tmp_path}/topo.yaml:20: {field}.cidr: CIDR value "10.244.1.2/4" is ambiguous in this context '
        '(should be "0.0.0.0/4" or "10.244.1.2/32"?)',
        f'{tmp_path}/topo.yaml:20: {field}.except[0]: CIDR value "10.244.1.2/30" is ambiguous in this context '
        '(should be "10.244.1.0/30" or "10.244.1.2/32"?)')
    inside, excepted, outside = (ipaddress.IPv4Address(a) for a in ("12.0.0.1", "10.244.1.3", "16.0.0.1"))
    assert evaluator._in_block(block, inside) and not evaluator._in_block(block, excepted)
    assert not evaluator._in_block(block, outside)


def test_canonical_ipblocks_give_no_warning(tmp_path):
    assert load(tmp_path, ip_block("{cidr: 10.244.0.0/16, except: [10.244.1.0/24]}")).warnings == ()


def test_leading_zeros_in_an_ipblock_are_decimal_with_a_warning(tmp_path):
    topology = load(tmp_path, ip_block("{cidr: 010.244.001.000/24}"))
    assert topology.policies[0].ingress[0].peers[0].ip_block.cidr == ipaddress.IPv4Network("10.244.1.0/24")
    assert "non-standard CIDR value" in topology.warnings[0]


# -- size: the static neighbour plan stays linear in pods, or the lab is refused before planning -----
def _many_pods(nodes: int, per_node: int, max_pods: int) -> str:
    text = (f"name: big\ncluster: {{cni: flannel, maxPods: {max_pods}}}\n"
            "networks:\n  - {name: lan, cidr: 192.168.0.0/16}\nnodes:\n")
    text += "".join(f"  - {{name: n{i}, ip: 192.168.1.{10 + i}}}\n" for i in range(nodes))
    text += "pods:\n" + "".join(f"  - {{name: p{i}-{j}, node: n{i}}}\n" for i in range(nodes) for j in range(per_node))
    return text + "options: {staticNeighbours: true}\n"


def test_static_neighbours_grow_linearly_with_pods(tmp_path):
    from lab.lifecycle import Lab
    counts = {}
    for nodes in (2, 4):
        plan, decision = Lab().plan(load(tmp_path, _many_pods(nodes, 100, 110)))
        assert decision.mode == "static"
        counts[nodes] = sum(len(ns.neighbours) for ns in plan.namespaces)
    # per node: cni0 and its 100 pods know each other (101 x 100); the underlay: the nodes and the
    # gateway know each other ((n + 1) x n); flannel's own VTEP entries (n x (n - 1)); twice the
    # pods, twice the bridge entries, plus the small per-node terms
    assert counts == {2: 2 * 101 * 100 + 3 * 2 + 2 * 1, 4: 4 * 101 * 100 + 5 * 4 + 4 * 3}


def _no_static_plan(monkeypatch):
    """Make planning the static entries fail the test: a refusal must come before them."""
    from lab.netns import neighbours

    def planned(plan):
        raise AssertionError("static neighbours were planned before the refusal")
    monkeypatch.setattr(neighbours, "with_static_neighbours", planned)


def test_static_neighbours_that_do_not_fit_in_memory_are_refused_before_planning(tmp_path, monkeypatch):
    from lab.lifecycle import Lab
    from lab.netns import neighbours
    topology = load(tmp_path, _many_pods(9, 250, 250))   # 9 x 251 x 250 = 564,750 entries on the bridges
    monkeypatch.setattr(neighbours, "available_memory", lambda path=None: 100 * 2**20)
    _no_static_plan(monkeypatch)
    with pytest.raises(LabError) as caught:
        Lab().plan(topology)
    error = str(caught.value)
    needed = 9 * 251 * 250 + 10 * 9        # pairs on the bridges and on the underlay (nodes and gateway)
    assert error.startswith(f"{tmp_path}/topo.yaml:{_many_pods(9, 250, 250).count(chr(10))}: "
                            "options.staticNeighbours: static neighbour entries: "
                            f"this lab needs {needed:,} "), error
    assert "the biggest, node n0's cni0, has 251 addresses" in error
    assert f"about {needed * neighbours.BYTES_PER_ENTRY / 2**20:,.0f} MiB" in error
    assert "100 MiB available (MemAvailable)" in error and "_underlay" not in error


def test_the_auto_refusal_names_the_biggest_segment_entry(tmp_path, monkeypatch):
    """Without options.staticNeighbours, the error names the segment's own entry: here network lan."""
    from lab.lifecycle import Lab
    from lab.netns import neighbours
    text = ("name: wide\ncluster: {cni: flannel}\nnetworks:\n  - {name: lan, cidr: 192.168.0.0/16}\nnodes:\n"
            + "".join(f"  - {{name: n{i}, ip: 192.168.1.{10 + i}}}\n" for i in range(60)))
    monkeypatch.setattr(neighbours, "available_memory", lambda path=None: 2**20)
    monkeypatch.setattr(neighbours, "host_limit", lambda: 64)
    _no_static_plan(monkeypatch)
    with pytest.raises(LabError) as caught:
        Lab().plan(load(tmp_path, text))
    assert str(caught.value).startswith(f"{tmp_path}/topo.yaml:4: network lan: static neighbour entries: "), \
        str(caught.value)
    assert "has 61 addresses" in str(caught.value)


def test_static_neighbours_past_the_old_fixed_cap_are_planned_when_they_fit(tmp_path, monkeypatch):
    """564,750 bridge entries (more than the former 500,000 cap) fit in 8 GiB: planned, every one."""
    from lab.lifecycle import Lab
    from lab.netns import neighbours
    monkeypatch.setattr(neighbours, "available_memory", lambda path=None: 8 * 2**30)
    plan, decision = Lab().plan(load(tmp_path, _many_pods(9, 250, 250)))
    assert decision.mode == "static"
    assert sum(len(ns.neighbours) for ns in plan.namespaces) == 9 * 251 * 250 + 10 * 9 + 9 * 8


# -- files: one budget for the topology and its files; errors about a file name the topology's line ----
def _config_map(values: int) -> str:
    """A ConfigMap (ignored by the lab) holding `values` YAML values."""
    return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata: {x: [" + ", ".join(["0"] * values) + "]}\n"


def test_a_file_named_twice_is_refused_before_it_is_read_again(tmp_path, monkeypatch):
    from lab.topology import yamlsource
    reads = []
    original = yamlsource.read_file
    monkeypatch.setattr(loader, "read_file", lambda *a, **k: reads.append(a[0]) or original(*a, **k))
    os.symlink(tmp_path / "cm.yaml", tmp_path / "same.yaml")
    error = error_of(tmp_path, FLANNEL + "  - file: cm.yaml\n" + "  - file: same.yaml\n" * 14,
                     {"cm.yaml": _config_map(10)})
    assert error.startswith(f"{tmp_path}/topo.yaml:14: resources[1].file: same.yaml is the file "
                            "resources[0].file names already (line 13)\n  hint: name each file once"), error
    assert len(reads) == 2, "the topology and cm.yaml, once"


def test_values_are_budgeted_across_the_topology_and_its_files(tmp_path):
    """Two files of 400,000 values each: the second passes the 750,000 values of the whole topology."""
    error = error_of(tmp_path, FLANNEL + "  - file: a.yaml\n  - file: b.yaml\n",
                     {"a.yaml": _config_map(400_000), "b.yaml": _config_map(400_000)})
    assert error.startswith(f"{tmp_path}/topo.yaml:14: resources[1].file: b.yaml (at line 4 of it): more than "
                            "750,000 YAML values in the topology and its files"), error


def test_bytes_are_budgeted_across_the_topology_and_its_files(tmp_path, monkeypatch):
    from lab.topology import yamlsource
    monkeypatch.setattr(yamlsource.Budget, "__init__", lambda self: setattr(self, "bytes", 3000) or
                        setattr(self, "values", yamlsource.MAX_VALUES))
    error = error_of(tmp_path, FLANNEL + "  - file: a.yaml\n  - file: b.yaml\n",
                     {"a.yaml": _config_map(500), "b.yaml": _config_map(500)})
    assert error.startswith(f"{tmp_path}/topo.yaml:14: resources[1].file: b.yaml: is 1,565 bytes or more, and "
                            "only "), error
    assert "of the 4,194,304 bytes the lab reads for a topology and all its files are left" in error


@pytest.mark.parametrize("name,message", [("''", "the file name is empty"),
                                          (".", ".: the manifest file is not a regular file"),
                                          ("nothing.yaml", "no such file")])
def test_a_bad_file_name_is_an_error_on_the_topology_line(tmp_path, name, message):
    error = error_of(tmp_path, FLANNEL + f"  - file: {name}\n")
    assert error.startswith(f"{tmp_path}/topo.yaml:13: resources[0].file: "), error
    assert message in error, error


def test_aliases_share_their_anchor_lines(tmp_path):
    """An alias adds one line record, not one per value under its anchor; errors under an alias name
    the anchor's line of the value."""
    from lab.topology import yamlsource
    text = "a: &a {" + ", ".join(f"k{i}: v" for i in range(100)) + "}\nb: [" + ", ".join(["*a"] * 50) + "]\n"
    document = yamlsource.parse(text, "x.yaml")[0]
    assert len(document.lines) <= 1 + 1 + 100 + 1 + 50
    assert document.line(("b", 7, "k42")) == 1 and document.line(("b", 7)) == 2
    topo = FLANNEL.replace("pods:\n", "pods:\n  - &base {name: b, namespace: x, node: n1,\n"
                           "      labels: {app: 1.10}}\n  - *base\n")
    error = error_of(tmp_path, topo)
    assert error.startswith(f"{tmp_path}/topo.yaml:12: pods[0].labels.app: 1.10 is read by YAML as a number"), error


# -- live changes Calico refuses ------------------------------------------------------------------------
APPLIED_POOL = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.244.0.0/16, ipipMode: Always}
"""


@pytest.mark.parametrize("change,field,words", [
    ("spec: {cidr: 10.244.0.0/16, ipipMode: Always, blockSize: 28}", "spec.blockSize",
     "IPPool BlockSize cannot be modified"),
    ("spec: {cidr: 10.245.0.0/16, ipipMode: Always}", "spec.cidr", "IPPool CIDR cannot be modified"),
])
def test_a_running_pools_cidr_and_block_size_cannot_change(tmp_path, change, field, words):
    from lab.topology import yamlsource
    running = load(tmp_path, CALICO)
    held = {p.name: p for p in running.cluster.config.pools}
    applied = yamlsource.parse(APPLIED_POOL.replace("spec: {cidr: 10.244.0.0/16, ipipMode: Always}", change), "m.yaml")
    with pytest.raises(LabError) as caught:
        loader.load(str(tmp_path / "topo.yaml"), entries.Overlay(documents=tuple(applied), held_pools=held))
    assert str(caught.value).startswith(f"m.yaml:4: {field}: {words}: IPPool pool has "), str(caught.value)
    assert "create a new IPPool" in str(caught.value)


def test_other_pool_fields_may_change_and_a_new_pool_is_free(tmp_path):
    from lab.topology import yamlsource
    running = load(tmp_path, CALICO)
    held = {p.name: p for p in running.cluster.config.pools}
    changed = APPLIED_POOL.replace("ipipMode: Always}", "ipipMode: Always, natOutgoing: true}")
    topology = loader.load(str(tmp_path / "topo.yaml"),
                           entries.Overlay(documents=tuple(yamlsource.parse(changed, "m.yaml")), held_pools=held))
    assert topology.cluster.config.pools[0].nat_outgoing
    other = APPLIED_POOL.replace("{name: pool}", "{name: other}").replace("10.244.", "10.99.")
    assert loader.load(str(tmp_path / "topo.yaml"), entries.Overlay(
        documents=tuple(yamlsource.parse(other, "m.yaml")), held_pools=held)).cluster.config.pools[1].name == "other"


def test_a_free_range_overlaps_no_segment_or_pool():
    from lab.topology import cidr
    net = ipaddress.IPv4Network
    assert cidr.free_range(16, [net("192.168.10.0/24")]) == net("10.244.0.0/16")
    assert cidr.free_range(16, [net("10.244.0.0/16"), net("10.0.0.0/15")]) == net("10.2.0.0/16")
    assert cidr.free_range(8, [net("10.0.0.0/8")]) is None            # 172.16/12 and 192.168/16 are smaller
    assert cidr.free_range(12, [net("10.0.0.0/8")]) == net("172.16.0.0/12")
    assert cidr.example(8, [net("10.0.0.0/8")]) == ""
