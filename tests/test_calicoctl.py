"""`calicoctl node status` rendering, checked against real calicoctl output (pure; rows by hand)."""

from __future__ import annotations

from lab.bgp.birdc import ProtocolRow
from lab.cni.calico.calicoctl import node_status


def bgp(name: str, state: str, since: str, info: str) -> ProtocolRow:
    """A BGP row as BIRD 1.6 lists it in `show protocols`."""
    return ProtocolRow(name, "BGP", "master", state, since, info)


def table(*lines: str) -> str:
    """A node status with this IPv4 table."""
    return ("Calico process is running.\n\nIPv4 BGP status\n" + "".join(f"{line}\n" for line in lines)
            + "\nIPv6 BGP status\nNo IPv6 peers found.\n\n")


BIRD_BOILERPLATE = [
    ProtocolRow("static1", "Static", "master", "up", "09:12:30", ""),
    ProtocolRow("kernel1", "Kernel", "master", "up", "09:12:30", ""),
    ProtocolRow("device1", "Device", "master", "up", "09:12:30", ""),
    ProtocolRow("direct1", "Direct", "master", "up", "09:12:30", ""),
]


def test_two_mesh_peers() -> None:
    rows = [*BIRD_BOILERPLATE,
            bgp("Mesh_192_168_10_72", "up", "09:12:34", "Established"),
            bgp("Mesh_192_168_10_73", "up", "09:12:35", "Established")]
    assert node_status(rows) == """\
Calico process is running.

IPv4 BGP status
+---------------+-------------------+-------+----------+-------------+
| PEER ADDRESS  |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+---------------+-------------------+-------+----------+-------------+
| 192.168.10.72 | node-to-node mesh | up    | 09:12:34 | Established |
| 192.168.10.73 | node-to-node mesh | up    | 09:12:35 | Established |
+---------------+-------------------+-------+----------+-------------+

IPv6 BGP status
No IPv6 peers found.

"""


def test_bird_not_running() -> None:
    assert node_status(None) == ("Calico process is running.\n\n"
                                 "The BGP backend process (BIRD) is not running.\n\n")


def test_no_peers() -> None:
    expected = ("Calico process is running.\n\nIPv4 BGP status\nNo IPv4 peers found.\n"
                "\nIPv6 BGP status\nNo IPv6 peers found.\n\n")
    assert node_status([]) == expected
    assert node_status(BIRD_BOILERPLATE) == expected


def test_only_calico_named_bgp_protocols_are_peers() -> None:
    rows = [
        bgp("bgp1", "up", "09:12:34", "Established"),                # not a Calico peer name
        bgp("Meshd_10_0_0_1", "up", "09:12:34", "Established"),      # calicoctl's own test case
        bgp("mesh_10_0_0_2", "up", "09:12:34", "Established"),       # the match is case-sensitive
        ProtocolRow("Mesh_10_0_0_3", "Static", "master", "up", "09:12:34", ""),
        bgp("Mesh_10_0_0_4", "down", "09:12:34", ""),                # fewer than 6 fields: skipped
        bgp("Global_10_0_0_5", "up", "09:12:34", "Established"),
    ]
    assert node_status(rows) == table(
        "+--------------+-----------+-------+----------+-------------+",
        "| PEER ADDRESS | PEER TYPE | STATE |  SINCE   |    INFO     |",
        "+--------------+-----------+-------+----------+-------------+",
        "| 10.0.0.5     | global    | up    | 09:12:34 | Established |",
        "+--------------+-----------+-------+----------+-------------+",
    )


def test_peer_types_and_port_suffix() -> None:
    rows = [bgp("Mesh_10_0_0_1", "up", "09:12:34", "Established"),
            bgp("Node_10_0_0_2_port_1790", "up", "09:12:34", "Established"),
            bgp("Global_10_0_0_3", "up", "09:12:34", "Established")]
    assert node_status(rows) == table(
        "+--------------+-------------------+-------+----------+-------------+",
        "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |",
        "+--------------+-------------------+-------+----------+-------------+",
        "| 10.0.0.1     | node-to-node mesh | up    | 09:12:34 | Established |",
        "| 10.0.0.2     | node specific     | up    | 09:12:34 | Established |",
        "| 10.0.0.3     | global            | up    | 09:12:34 | Established |",
        "+--------------+-------------------+-------+----------+-------------+",
    )


def test_short_info_is_not_padded_to_heading_width() -> None:
    # A real calicoctl table: INFO narrower than its column's heading is centred in 7 columns.
    rows = [bgp("Mesh_172_18_0_1", "start", "13:05:33", "Connect")]
    assert node_status(rows) == table(
        "+--------------+-------------------+-------+----------+---------+",
        "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |  INFO   |",
        "+--------------+-------------------+-------+----------+---------+",
        "| 172.18.0.1   | node-to-node mesh | start | 13:05:33 | Connect |",
        "+--------------+-------------------+-------+----------+---------+",
    )


def test_long_info_wraps_at_30_columns() -> None:
    # Real calicoctl output (a cluster's troubleshooting notes): BIRD's padded info column is
    # re-joined with single spaces, and cells over 30 columns wrap with minimal raggedness.
    rows = [bgp("Mesh_192_168_1_172", "start", "2018-10-19", "Connect       Socket: Connection closed"),
            bgp("Mesh_192_168_1_196", "start", "2018-10-19", "Active        Socket: Connection reset by peer"),
            bgp("Mesh_192_168_1_121", "start", "2018-10-19", "Active        Socket: Connection closed")]
    assert node_status(rows) == table(
        "+---------------+-------------------+-------+------------+--------------------------------+",
        "| PEER ADDRESS  |     PEER TYPE     | STATE |   SINCE    |              INFO              |",
        "+---------------+-------------------+-------+------------+--------------------------------+",
        "| 192.168.1.172 | node-to-node mesh | start | 2018-10-19 | Connect Socket: Connection     |",
        "|               |                   |       |            | closed                         |",
        "| 192.168.1.196 | node-to-node mesh | start | 2018-10-19 | Active Socket: Connection      |",
        "|               |                   |       |            | reset by peer                  |",
        "| 192.168.1.121 | node-to-node mesh | start | 2018-10-19 | Active Socket: Connection      |",
        "|               |                   |       |            | closed                         |",
        "+---------------+-------------------+-------+------------+--------------------------------+",
    )


def test_info_of_exactly_30_columns_does_not_wrap() -> None:
    rows = [bgp("Mesh_10_2_7_200", "start", "02:04:22", "Idle          Socket: Connection closed"),
            bgp("Mesh_10_2_7_202", "start", "02:04:22", "Active        Socket: Connection closed")]
    assert node_status(rows) == table(
        "+--------------+-------------------+-------+----------+--------------------------------+",
        "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |              INFO              |",
        "+--------------+-------------------+-------+----------+--------------------------------+",
        "| 10.2.7.200   | node-to-node mesh | start | 02:04:22 | Idle Socket: Connection closed |",
        "| 10.2.7.202   | node-to-node mesh | start | 02:04:22 | Active Socket: Connection      |",
        "|              |                   |       |          | closed                         |",
        "+--------------+-------------------+-------+----------+--------------------------------+",
    )


def test_mixed_dates_and_times() -> None:
    rows = [bgp("Mesh_192_168_13_220", "start", "08:57:08", "Active        Socket: Connection refused"),
            bgp("Mesh_192_168_13_221", "up", "2023-09-21", "Established"),
            bgp("Mesh_192_168_13_222", "up", "2023-09-21", "Established")]
    assert node_status(rows) == table(
        "+----------------+-------------------+-------+------------+--------------------------------+",
        "|  PEER ADDRESS  |     PEER TYPE     | STATE |   SINCE    |              INFO              |",
        "+----------------+-------------------+-------+------------+--------------------------------+",
        "| 192.168.13.220 | node-to-node mesh | start | 08:57:08   | Active Socket: Connection      |",
        "|                |                   |       |            | refused                        |",
        "| 192.168.13.221 | node-to-node mesh | up    | 2023-09-21 | Established                    |",
        "| 192.168.13.222 | node-to-node mesh | up    | 2023-09-21 | Established                    |",
        "+----------------+-------------------+-------+------------+--------------------------------+",
    )


def test_numeric_cells_are_right_aligned() -> None:
    # tablewriter right-aligns cells that look like numbers; a BIRD 'since' in seconds would be one.
    rows = [bgp("Mesh_10_0_0_1", "up", "1234567", "Established")]
    assert node_status(rows) == table(
        "+--------------+-------------------+-------+---------+-------------+",
        "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE  |    INFO     |",
        "+--------------+-------------------+-------+---------+-------------+",
        "| 10.0.0.1     | node-to-node mesh | up    | 1234567 | Established |",
        "+--------------+-------------------+-------+---------+-------------+",
    )


def test_a_long_single_word_widens_its_column() -> None:
    word = "X" * 34
    rows = [bgp("Mesh_10_0_0_1", "start", "09:00:00", f"Active        {word} tail")]
    assert node_status(rows) == table(
        "+--------------+-------------------+-------+----------+------------------------------------+",
        "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |                INFO                |",
        "+--------------+-------------------+-------+----------+------------------------------------+",
        "| 10.0.0.1     | node-to-node mesh | start | 09:00:00 | Active                             |",
        f"|              |                   |       |          | {word} |",
        "|              |                   |       |          | tail                               |",
        "+--------------+-------------------+-------+----------+------------------------------------+",
    )
