/* Byte-level builders for hand-made captures and frames: every test says exactly which bytes it
 * feeds the reader. A buffer writes integers in its own byte order (big = 1 for big-endian). */
#ifndef FLOWPIC_TEST_CAPBUILD_H
#define FLOWPIC_TEST_CAPBUILD_H

#include <stddef.h>
#include <stdint.h>

#define CB_CAP (1u << 22)

typedef struct cb {
    uint8_t *data; /* CB_CAP bytes */
    size_t len;
    int big;
} cb;

void cb_init(cb *b, int big);
void cb_free(cb *b);
void cb_u8(cb *b, unsigned v);
void cb_u16(cb *b, unsigned v);
void cb_u32(cb *b, uint32_t v);
void cb_u64(cb *b, uint64_t v);
void cb_bytes(cb *b, const void *p, size_t n);
void cb_zeros(cb *b, size_t n);
void cb_put_u32(cb *b, size_t at, uint32_t v); /* overwrite in place */

/* classic pcap */
void cb_pcap_header(cb *b, int nanosecond, uint32_t linktype, uint32_t snaplen);
void cb_pcap_record(cb *b, uint32_t sec, uint32_t frac, const uint8_t *frame, uint32_t caplen,
                    uint32_t origlen);

/* pcapng: blocks with correct lengths and trailers */
void cb_ng_shb(cb *b);
/* tsresol < 0: no option; tsoffset_present: add if_tsoffset */
void cb_ng_idb(cb *b, uint16_t linktype, uint32_t snaplen, int tsresol, int tsoffset_present,
               int64_t tsoffset);
void cb_ng_epb(cb *b, uint32_t iface, uint64_t ticks, const uint8_t *frame, uint32_t caplen,
               uint32_t origlen);
void cb_ng_spb(cb *b, const uint8_t *frame, uint32_t caplen, uint32_t origlen);
void cb_ng_pb(cb *b, uint16_t iface, uint64_t ticks, const uint8_t *frame, uint32_t caplen,
              uint32_t origlen);
void cb_ng_block(cb *b, uint32_t type, const uint8_t *body, uint32_t body_len);

/* frames (network byte order, independent of the file's). Each returns the frame length. */
typedef struct frame_spec {
    int ip_version;         /* 4 or 6 */
    uint8_t proto;          /* 6, 17, 1, 58... */
    uint8_t src[16], dst[16];
    uint16_t sport, dport;
    uint32_t payload;       /* bytes after the transport header */
    int vlan_tags;          /* Ethernet only: number of 802.1Q/802.1ad tags */
    int ipv4_options;       /* 32-bit words of IPv4 options */
    uint16_t frag_field;    /* IPv4 flags+offset field, or IPv6 fragment header offset field */
    int ipv6_frag;          /* add an IPv6 fragment header */
    int ipv6_ext;           /* add hop-by-hop, routing, destination options headers */
    int ipv6_ah;            /* add an authentication header */
    uint16_t ip_len_override; /* nonzero: write this into the IP length field; 0xFFFF = 0 */
} frame_spec;

void spec_default(frame_spec *s, int ip_version, uint8_t proto);
/* The IP packet (no link header) into out; returns its length. */
uint32_t build_ip(uint8_t *out, const frame_spec *s);
/* An Ethernet frame around build_ip. */
uint32_t build_eth(uint8_t *out, const frame_spec *s);

#endif
