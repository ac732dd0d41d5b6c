#include "capbuild.h"

#include <stdlib.h>
#include <string.h>

void cb_init(cb *b, int big)
{
    b->data = (uint8_t *)calloc(CB_CAP, 1);
    b->len = 0;
    b->big = big;
}

void cb_free(cb *b) { free(b->data); b->data = 0; }

void cb_u8(cb *b, unsigned v)
{
    if (b->len < CB_CAP) b->data[b->len++] = (uint8_t)v;
}

void cb_u16(cb *b, unsigned v)
{
    if (b->big) { cb_u8(b, (v >> 8) & 255u); cb_u8(b, v & 255u); }
    else { cb_u8(b, v & 255u); cb_u8(b, (v >> 8) & 255u); }
}

void cb_u32(cb *b, uint32_t v)
{
    if (b->big) { cb_u16(b, v >> 16); cb_u16(b, v & 0xFFFFu); }
    else { cb_u16(b, v & 0xFFFFu); cb_u16(b, v >> 16); }
}

void cb_u64(cb *b, uint64_t v)
{
    if (b->big) { cb_u32(b, (uint32_t)(v >> 32)); cb_u32(b, (uint32_t)v); }
    else { cb_u32(b, (uint32_t)v); cb_u32(b, (uint32_t)(v >> 32)); }
}

void cb_bytes(cb *b, const void *p, size_t n)
{
    if (n > CB_CAP - b->len) n = CB_CAP - b->len;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void cb_zeros(cb *b, size_t n)
{
    while (n--) cb_u8(b, 0);
}

void cb_put_u32(cb *b, size_t at, uint32_t v)
{
    size_t saved = b->len;
    b->len = at;
    cb_u32(b, v);
    b->len = saved;
}

void cb_pcap_header(cb *b, int nanosecond, uint32_t linktype, uint32_t snaplen)
{
    cb_u32(b, nanosecond ? 0xA1B23C4Du : 0xA1B2C3D4u);
    cb_u16(b, 2);
    cb_u16(b, 4);
    cb_u32(b, 0);
    cb_u32(b, 0);
    cb_u32(b, snaplen);
    cb_u32(b, linktype);
}

void cb_pcap_record(cb *b, uint32_t sec, uint32_t frac, const uint8_t *frame, uint32_t caplen,
                    uint32_t origlen)
{
    cb_u32(b, sec);
    cb_u32(b, frac);
    cb_u32(b, caplen);
    cb_u32(b, origlen);
    cb_bytes(b, frame, caplen);
}

/* Starts a block, returns where its length goes. */
static size_t ng_begin(cb *b, uint32_t type)
{
    size_t at;
    cb_u32(b, type);
    at = b->len;
    cb_u32(b, 0);
    return at;
}

static void ng_end(cb *b, size_t at)
{
    uint32_t len;
    while (b->len % 4) cb_u8(b, 0);
    len = (uint32_t)(b->len - (at - 4) + 4);
    cb_put_u32(b, at, len);
    cb_u32(b, len);
}

void cb_ng_shb(cb *b)
{
    size_t at = ng_begin(b, 0x0A0D0D0Au);
    cb_u32(b, 0x1A2B3C4Du);
    cb_u16(b, 1);
    cb_u16(b, 0);
    cb_u64(b, (uint64_t)-1);
    ng_end(b, at);
}

void cb_ng_idb(cb *b, uint16_t linktype, uint32_t snaplen, int tsresol, int tsoffset_present,
               int64_t tsoffset)
{
    size_t at = ng_begin(b, 1);
    cb_u16(b, linktype);
    cb_u16(b, 0);
    cb_u32(b, snaplen);
    if (tsresol >= 0) {
        cb_u16(b, 9);
        cb_u16(b, 1);
        cb_u8(b, (unsigned)tsresol);
        cb_zeros(b, 3);
    }
    if (tsoffset_present) {
        cb_u16(b, 14);
        cb_u16(b, 8);
        cb_u64(b, (uint64_t)tsoffset);
    }
    if (tsresol >= 0 || tsoffset_present) {
        cb_u16(b, 0);
        cb_u16(b, 0);
    }
    ng_end(b, at);
}

void cb_ng_epb(cb *b, uint32_t iface, uint64_t ticks, const uint8_t *frame, uint32_t caplen,
               uint32_t origlen)
{
    size_t at = ng_begin(b, 6);
    cb_u32(b, iface);
    cb_u32(b, (uint32_t)(ticks >> 32));
    cb_u32(b, (uint32_t)ticks);
    cb_u32(b, caplen);
    cb_u32(b, origlen);
    cb_bytes(b, frame, caplen);
    ng_end(b, at);
}

void cb_ng_spb(cb *b, const uint8_t *frame, uint32_t caplen, uint32_t origlen)
{
    size_t at = ng_begin(b, 3);
    cb_u32(b, origlen);
    cb_bytes(b, frame, caplen);
    ng_end(b, at);
}

void cb_ng_pb(cb *b, uint16_t iface, uint64_t ticks, const uint8_t *frame, uint32_t caplen,
              uint32_t origlen)
{
    size_t at = ng_begin(b, 2);
    cb_u16(b, iface);
    cb_u16(b, 0);
    cb_u32(b, (uint32_t)(ticks >> 32));
    cb_u32(b, (uint32_t)ticks);
    cb_u32(b, caplen);
    cb_u32(b, origlen);
    cb_bytes(b, frame, caplen);
    ng_end(b, at);
}

void cb_ng_block(cb *b, uint32_t type, const uint8_t *body, uint32_t body_len)
{
    size_t at = ng_begin(b, type);
    cb_bytes(b, body, body_len);
    ng_end(b, at);
}

/* ---- frames ---- */

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void spec_default(frame_spec *s, int ip_version, uint8_t proto)
{
    memset(s, 0, sizeof *s);
    s->ip_version = ip_version;
    s->proto = proto;
    if (ip_version == 4) {
        const uint8_t a[4] = {10, 0, 0, 1}, d[4] = {192, 168, 1, 2};
        memcpy(s->src, a, 4);
        memcpy(s->dst, d, 4);
    } else {
        s->src[0] = 0x20; s->src[1] = 0x01; s->src[2] = 0x0d; s->src[3] = 0xb8; s->src[15] = 1;
        s->dst[0] = 0x20; s->dst[1] = 0x01; s->dst[2] = 0x0d; s->dst[3] = 0xb8; s->dst[15] = 2;
    }
    s->sport = 1234;
    s->dport = 443;
    s->payload = 100;
}

static uint32_t transport(uint8_t *p, const frame_spec *s)
{
    uint32_t hl = s->proto == 6 ? 20u : 8u;
    memset(p, 0, hl + s->payload);
    if (s->proto == 6 || s->proto == 17) {
        put16(p, s->sport);
        put16(p + 2, s->dport);
        if (s->proto == 6) p[12] = 0x50;
        else put16(p + 4, 8u + s->payload);
    } else {
        p[0] = 8; /* ICMP echo request */
    }
    return hl + s->payload;
}

uint32_t build_ip(uint8_t *out, const frame_spec *s)
{
    uint32_t n, len;
    if (s->ip_version == 4) {
        uint32_t ihl = 20u + 4u * (uint32_t)s->ipv4_options;
        memset(out, 0, ihl);
        out[0] = (uint8_t)(0x40 | (ihl / 4));
        put16(out + 6, s->frag_field);
        out[8] = 64;
        out[9] = s->proto;
        memcpy(out + 12, s->src, 4);
        memcpy(out + 16, s->dst, 4);
        len = ihl + transport(out + ihl, s);
        put16(out + 2, s->ip_len_override == 0xFFFF ? 0 : s->ip_len_override ? s->ip_len_override : len);
        return len;
    }
    memset(out, 0, 40);
    out[0] = 0x60;
    out[7] = 64;
    memcpy(out + 8, s->src, 16);
    memcpy(out + 24, s->dst, 16);
    n = 40;
    {
        /* chain: [hop-by-hop, routing, destination options] [AH] [fragment] transport */
        uint8_t *next = out + 6;
        if (s->ipv6_ext) {
            static const uint8_t kinds[3] = {0, 43, 60};
            int k;
            for (k = 0; k < 3; k++) {
                *next = kinds[k];
                memset(out + n, 0, 16);
                out[n + 1] = 1; /* (1 + 1) * 8 = 16 bytes */
                next = out + n;
                n += 16;
            }
        }
        if (s->ipv6_ah) {
            *next = 51;
            memset(out + n, 0, 24);
            out[n + 1] = 4; /* (4 + 2) * 4 = 24 bytes */
            next = out + n;
            n += 24;
        }
        if (s->ipv6_frag) {
            *next = 44;
            memset(out + n, 0, 8);
            put16(out + n + 2, s->frag_field);
            next = out + n;
            n += 8;
        }
        *next = s->proto;
    }
    n += transport(out + n, s);
    put16(out + 4, s->ip_len_override == 0xFFFF ? 0 : s->ip_len_override ? s->ip_len_override : n - 40);
    return n;
}

uint32_t build_eth(uint8_t *out, const frame_spec *s)
{
    uint32_t off = 12;
    int t;
    memset(out, 0, 12);
    out[0] = 0x02;
    out[6] = 0x02;
    out[11] = 1;
    for (t = 0; t < s->vlan_tags; t++) {
        put16(out + off, t == 0 && s->vlan_tags > 1 ? 0x88A8 : 0x8100);
        put16(out + off + 2, (unsigned)(100 + t));
        off += 4;
    }
    put16(out + off, s->ip_version == 4 ? 0x0800 : 0x86DD);
    off += 2;
    return off + build_ip(out + off, s);
}
