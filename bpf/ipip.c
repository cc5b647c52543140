// SPDX-License-Identifier: GPL-2.0
/*
 * IPIP (IP protocol 4) in eBPF, attached with tc, for kernels without the ipip module.
 *
 * The lab's tunnel device (Calico's tunl0, flannel's flannel.ipip) is a TUN device nobody reads:
 *
 *   ipip_encap  tc egress of the tunnel device. The kernel routed an inner IPv4 packet into the
 *               tunnel (`<block> via <node> dev tunl0 onlink`). Like ip_tunnel_xmit() for a
 *               `remote any local any ttl inherit nopmtudisc` device, the outer destination is the
 *               route's next hop (bpf_fib_lookup), the outer source the address the kernel picks
 *               for that destination (BPF_FIB_LOOKUP_SRC), TTL is the inner TTL, DF is copied from
 *               the inner header, the DSCP is 0 and the ECN field is encapsulated as RFC 6040 says
 *               (INET_ECN_encapsulate). The packet leaves through the underlay device found by the
 *               lookup, with bpf_redirect_neigh() filling in L2.
 *   ipip_decap  tc ingress of the underlay device (eth0). A protocol-4 packet to one of the node's
 *               own addresses from a known node (the lab writes the peers into .rodata when it
 *               attaches, as Felix's "Allow IPIP packets from Calico hosts" INPUT rule selects them)
 *               loses its outer header (ECN decapsulated as ipip_ecn_decapsulate() does) and is
 *               redirected to the tunnel device's ingress, so the stack sees it arrive on tunl0:
 *               tcpdump -i tunl0, rp_filter, conntrack and iptables behave as with the module.
 *               Anything else goes on to the stack untouched.
 *
 * Built by scripts/install-deps.sh (clang -target bpf); loaded by iproute2's tc.
 */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_PEERS 4096             /* a power of two: the search masks its index with MAX_PEERS - 1 */
#define PEER_SEARCH_STEPS 12       /* log2(MAX_PEERS) */
#define IP_DF 0x4000
#define ECN_MASK 3
#define ECN_CE 3
#define ECN_ECT_0 2
#define AF_INET 2

/* Newer than some distributions' uapi headers; values from include/uapi/linux/bpf.h. */
#define LAB_FIB_LOOKUP_SKIP_NEIGH (1U << 2)
#define LAB_FIB_LOOKUP_SRC (1U << 4)
#define LAB_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define LAB_ADJ_ROOM_DECAP_IPXIP4 (1ULL << 11)   /* clears SKB_GSO_IPXIP4 and skb->encapsulation, as the
                                                  * module's iptunnel_pull_offloads() does (newer kernels) */

/* Written by the lab into the object's .rodata for each node before tc loads it (lab/netns/bpfobj.py):
 * the tunnel device's ifindex and the underlay addresses of the other nodes, in network order, sorted by
 * their value as a native __u32 (known_peer() searches them). */
volatile const __u32 lab_tunnel_ifindex = 0;
volatile const __u32 lab_peer_count = 0;
volatile const __u32 lab_peers[MAX_PEERS] = {};

static __always_inline __u16 ip_checksum(struct iphdr *iph)
{
	__u32 sum = 0;
	__u16 *words = (__u16 *)iph;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*iph) / 2); i++)
		sum += words[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Binary search: the lab writes the peers sorted by their value as a native __u32 (lab/cni/ipip.py). */
static __always_inline int known_peer(__u32 addr)
{
	__u32 low = 0, high = lab_peer_count;

	if (high > MAX_PEERS)
		high = MAX_PEERS;
	for (int step = 0; step <= PEER_SEARCH_STEPS; step++) {
		__u32 middle, value;

		if (low >= high)
			return 0;
		middle = (low + high) / 2;
		value = lab_peers[middle & (MAX_PEERS - 1)];
		if (value == addr)
			return 1;
		if (value < addr)
			low = middle + 1;
		else
			high = middle;
	}
	return 0;
}

SEC("tc/encap")
int ipip_encap(struct __sk_buff *skb)
{
	struct bpf_fib_lookup route = {}, underlay = {};
	struct iphdr inner, outer = {};
	__u8 inner_ecn;
	int rc;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_SHOT;             /* an ipip device carries IPv4 only */
	if (bpf_skb_load_bytes(skb, 0, &inner, sizeof(inner)) < 0 || inner.version != 4)
		return TC_ACT_SHOT;

	/* The route that sent the packet here: its next hop is the tunnel's remote end. */
	route.family = AF_INET;
	route.ifindex = skb->ifindex;
	route.ipv4_src = inner.saddr;
	route.ipv4_dst = inner.daddr;
	rc = bpf_fib_lookup(skb, &route, sizeof(route), BPF_FIB_LOOKUP_OUTPUT | LAB_FIB_LOOKUP_SKIP_NEIGH);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || route.ifindex != skb->ifindex)
		return TC_ACT_SHOT;

	/* The route to the remote end: the underlay device and the source address the kernel picks. */
	underlay.family = AF_INET;
	underlay.ifindex = skb->ifindex;
	underlay.ipv4_dst = route.ipv4_dst;
	rc = bpf_fib_lookup(skb, &underlay, sizeof(underlay), LAB_FIB_LOOKUP_SKIP_NEIGH | LAB_FIB_LOOKUP_SRC);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || underlay.ifindex == skb->ifindex || !underlay.ipv4_src)
		return TC_ACT_SHOT;             /* no way there, or the way there is the tunnel itself */

	inner_ecn = inner.tos & ECN_MASK;
	outer.version = 4;
	outer.ihl = 5;
	outer.tos = inner_ecn == ECN_CE ? ECN_ECT_0 : inner_ecn;      /* tos 0, ECN from the inner header */
	outer.tot_len = bpf_htons(skb->len + sizeof(outer) > 0xffff ? 0 : skb->len + sizeof(outer));
	outer.id = bpf_htons(bpf_get_prandom_u32() & 0xffff);
	outer.frag_off = inner.frag_off & bpf_htons(IP_DF);          /* nopmtudisc: DF copied from inside */
	outer.ttl = inner.ttl;                                        /* ttl inherit */
	outer.protocol = IPPROTO_IPIP;
	outer.saddr = underlay.ipv4_src;
	outer.daddr = route.ipv4_dst;
	outer.check = ip_checksum(&outer);

	/* The tunnel GSO marks (SKB_GSO_IPXIP4, skb->encapsulation) make a TCP super-packet travel whole, and
	 * be segmented with correct outer headers wherever a device must; FIXED_GSO keeps the segment size
	 * the inner MTU allowed (1480 - 40: outer packets of 1500 bytes). */
	if (bpf_skb_adjust_room(skb, sizeof(outer), BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO) == 0) {
		/* bpf_redirect_neigh() wants a (blank) Ethernet header in front of the IP header; a TUN
		 * device has none. The neighbour subsystem writes the real one on eth0. */
		if (bpf_skb_change_head(skb, ETH_HLEN, 0) < 0)
			return TC_ACT_SHOT;
	} else {
		/* adjust_room refuses a packet that is already marked encapsulated (-EALREADY): one this
		 * node decapsulated and now forwards into the tunnel again (transit through a node, as
		 * the module does it). Grow the head by Ethernet + outer header instead: the inner
		 * headers, the tunnel GSO marks the packet kept and its checksum offsets stay valid,
		 * and bpf_redirect_neigh() resets the network header to the outer one we write. */
		if (bpf_skb_change_head(skb, ETH_HLEN + sizeof(outer), 0) < 0)
			return TC_ACT_SHOT;
	}
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &outer, sizeof(outer), 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect_neigh(underlay.ifindex, NULL, 0, 0);
}

SEC("tc/decap")
int ipip_decap(struct __sk_buff *skb)
{
	struct iphdr outer, inner;
	__u32 tunnel = lab_tunnel_ifindex;
	__u8 ecn;

	if (skb->protocol != bpf_htons(ETH_P_IP) || !tunnel)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &outer, sizeof(outer)) < 0)
		return TC_ACT_OK;
	if (outer.protocol != IPPROTO_IPIP || outer.version != 4 || outer.ihl != 5)
		return TC_ACT_OK;               /* options or not IPIP: the stack's business */
	if (outer.frag_off & bpf_htons(0x3fff))
		return TC_ACT_OK;               /* a fragment: the stack reassembles it, and the route agent's
		                                 * raw protocol-4 socket decapsulates it (lab/bgp/tunnel.py) */
	if (!known_peer(outer.saddr))
		return TC_ACT_OK;               /* not from a node: left to the stack (and Felix's DROP) */
	if (bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(outer), &inner, sizeof(inner)) < 0 || inner.version != 4)
		return TC_ACT_OK;

	/* Addressed to this node? (A route of type local: the lookup says "not forwarded".) */
	{
		struct bpf_fib_lookup local = {};

		local.family = AF_INET;
		local.ifindex = skb->ingress_ifindex;
		local.ipv4_src = outer.saddr;
		local.ipv4_dst = outer.daddr;
		if (bpf_fib_lookup(skb, &local, sizeof(local), LAB_FIB_LOOKUP_SKIP_NEIGH) != BPF_FIB_LKUP_RET_NOT_FWDED)
			return TC_ACT_OK;
	}

	ecn = outer.tos & ECN_MASK;
	/* ipip_ecn_decapsulate() -> INET_ECN_decapsulate() returns 2 for CE outside a Not-ECT inner
	 * packet, and ip_tunnel_rcv() drops it (rx_frame_errors): the congestion cannot be signalled. */
	if (ecn == ECN_CE && !(inner.tos & ECN_MASK))
		return TC_ACT_SHOT;
	/* Kernels without BPF_F_ADJ_ROOM_DECAP_IPXIP4 (6.18 is one) cannot clear the tunnel GSO marks: a TCP
	 * super-packet keeps them, and a device without tunnel offloads on the way to the pod (a bridge:
	 * flannel's cni0; not Calico's cali veth) then segments it in software. */
	if (bpf_skb_adjust_room(skb, -(__s32)sizeof(outer), BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO | LAB_ADJ_ROOM_DECAP_L3_IPV4 | LAB_ADJ_ROOM_DECAP_IPXIP4) < 0 &&
	    bpf_skb_adjust_room(skb, -(__s32)sizeof(outer), BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO | LAB_ADJ_ROOM_DECAP_L3_IPV4) < 0)
		return TC_ACT_SHOT;
	if (ecn == ECN_CE && (inner.tos & ECN_MASK) && (inner.tos & ECN_MASK) != ECN_CE) {
		/* ipip_ecn_decapsulate(): congestion experienced outside is marked inside */
		__u16 before, after;

		__builtin_memcpy(&before, &inner, sizeof(before));
		inner.tos |= ECN_CE;
		__builtin_memcpy(&after, &inner, sizeof(after));
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &after, sizeof(after), 0) < 0 ||
		    bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), before, after, sizeof(after)) < 0)
			return TC_ACT_SHOT;
	}
	return bpf_redirect(tunnel, BPF_F_INGRESS);
}

char LICENSE[] SEC("license") = "GPL";
