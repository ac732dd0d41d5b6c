/* pcap_lite.h: hand-built captures, byte for byte, for every format, byte order, timestamp
 * resolution, link type and decoder path, and every malformed case with its error and offset. */
#include "flowpic.h"

#include <stdlib.h>

#include "capbuild.h"
#include "harness.h"

void test_pcap_classic_byte_orders_and_resolutions(void);
void test_pcap_classic_fields(void);
void test_pcapng_byte_orders(void);
void test_pcapng_tsresol_and_tsoffset(void);
void test_pcapng_sections_and_interfaces(void);
void test_pcapng_simple_and_obsolete_blocks(void);
void test_pcapng_skips_other_blocks(void);
void test_sources_give_identical_packets(void);
void test_link_types(void);
void test_vlan_stacking(void);
void test_ipv4_options_and_fragments(void);
void test_ipv6_extension_headers(void);
void test_ipv6_fragments(void);
void test_other_protocols_and_truncation(void);
void test_ip_size_from_header(void);
void test_address_text(void);
void test_errors_file_header(void);
void test_errors_pcap_records(void);
void test_errors_pcapng_blocks(void);
void test_errors_pcapng_options(void);
void test_errors_pcapng_interfaces(void);
void test_errors_read_callback(void);
void test_result_strings(void);

/* ---- helpers --------------------------------------------------------------------------------- */

static uint8_t frame_buf[4096];

/* A default IPv4/UDP Ethernet frame in frame_buf; returns its length. */
static uint32_t udp4_frame(void)
{
    frame_spec s;
    spec_default(&s, 4, 17);
    return build_eth(frame_buf, &s);
}

/* Decodes frame f of link type lt; the skip reason. */
static pcapl_skip decode(uint32_t lt, const uint8_t *f, uint32_t len, pcapl_decoded *d)
{
    return pcapl_decode_frame(lt, f, len, len, d);
}

/* Reads every packet of a memory capture: count returned, timestamps into ts (up to 16), the
 * final result into *end. */
static int read_all(const cb *b, uint64_t *ts, pcapl_result *end, pcapl_reader *out_reader)
{
    pcapl_reader r;
    pcapl_packet pkt;
    int n = 0;
    pcapl_result res = pcapl_open_memory(&r, b->data, b->len);
    if (res != PCAPL_OK) {
        *end = res;
        if (out_reader) *out_reader = r;
        return -1;
    }
    while ((res = pcapl_next(&r, &pkt)) == PCAPL_OK) {
        if (ts && n < 16) ts[n] = pkt.ts_ns;
        n++;
    }
    *end = res;
    if (out_reader) *out_reader = r;
    pcapl_close(&r);
    return n;
}

/* Opens b and expects the first error (at open or while reading) to be code at record/offset. */
static int expect_error(const cb *b, pcapl_result code, uint64_t record, uint64_t offset, int *packets_before)
{
    pcapl_reader r;
    pcapl_result end;
    int n = read_all(b, 0, &end, &r);
    if (packets_before) *packets_before = n;
    if (end != code) {
        printf("    got %s (%s), expected %s\n", pcapl_result_string(end), r.error.reason,
               pcapl_result_string(code));
        return 0;
    }
    if (r.error.record != record || r.error.offset != offset) {
        printf("    %s at record %llu offset %llu, expected record %llu offset %llu\n", r.error.reason,
               (unsigned long long)r.error.record, (unsigned long long)r.error.offset,
               (unsigned long long)record, (unsigned long long)offset);
        return 0;
    }
    return r.error.reason[0] != '\0';
}

/* ---- classic pcap ---------------------------------------------------------------------------- */

void test_pcap_classic_byte_orders_and_resolutions(void)
{
    int big, ns;
    uint32_t len = udp4_frame();
    for (big = 0; big < 2; big++) {
        for (ns = 0; ns < 2; ns++) {
            cb b;
            uint64_t ts[16];
            pcapl_result end;
            pcapl_reader r;
            int n;
            cb_init(&b, big);
            cb_pcap_header(&b, ns, 1, 65535);
            cb_pcap_record(&b, 1700000000u, ns ? 123456789u : 123456u, frame_buf, len, len);
            cb_pcap_record(&b, 1700000001u, ns ? 999999999u : 999999u, frame_buf, len, len);
            n = read_all(&b, ts, &end, &r);
            cb_free(&b);
            CHECK_EQ(n, 2);
            CHECK_EQ(end, PCAPL_END);
            CHECK_EQ(r.swapped, big);
            CHECK_EQ(r.nanosecond, ns);
            CHECK_EQ(ts[0], ns ? 1700000000123456789ull : 1700000000123456000ull);
            CHECK_EQ(ts[1], ns ? 1700000001999999999ull : 1700000001999999000ull);
        }
    }
}

void test_pcap_classic_fields(void)
{
    cb b;
    pcapl_reader r;
    pcapl_packet pkt;
    pcapl_decoded d;
    uint32_t len = udp4_frame();
    cb_init(&b, 0);
    cb_pcap_header(&b, 0, 1 | 0x10000000u, 96); /* FCS bits above the link type are ignored */
    cb_pcap_record(&b, 5, 6, frame_buf, 60, len);
    CHECK_EQ(pcapl_open_memory(&r, b.data, b.len), PCAPL_OK);
    CHECK_EQ(r.format, PCAPL_FORMAT_PCAP);
    CHECK_EQ(r.linktype, 1);
    CHECK_EQ(r.snaplen, 96);
    CHECK_EQ(r.version_major, 2);
    CHECK_EQ(r.version_minor, 4);
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_OK);
    CHECK_EQ(pkt.caplen, 60);
    CHECK_EQ(pkt.origlen, len);
    CHECK_EQ(pkt.record, 1);
    CHECK_EQ(pkt.offset, 24);
    CHECK_EQ(pkt.linktype, 1);
    CHECK(pkt.data == b.data + 40);
    CHECK_EQ(pcapl_decode(&pkt, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.ip_size, len - 14); /* from the IP header although only 60 bytes were captured */
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_END);
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_END);
    CHECK_EQ(r.bytes, b.len);
    pcapl_close(&r);
    cb_free(&b);
}

/* ---- pcapng ---------------------------------------------------------------------------------- */

void test_pcapng_byte_orders(void)
{
    int big;
    uint32_t len = udp4_frame();
    for (big = 0; big < 2; big++) {
        cb b;
        pcapl_reader r;
        pcapl_packet pkt;
        pcapl_decoded d;
        cb_init(&b, big);
        cb_ng_shb(&b);
        cb_ng_idb(&b, 1, 0, -1, 0, 0);
        cb_ng_epb(&b, 0, 1700000000123456ull, frame_buf, len, len);
        CHECK_EQ(pcapl_open_memory(&r, b.data, b.len), PCAPL_OK);
        CHECK_EQ(r.format, PCAPL_FORMAT_PCAPNG);
        CHECK_EQ(r.swapped, big);
        CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_OK);
        CHECK_EQ(pkt.ts_ns, 1700000000123456000ull); /* default resolution: microseconds */
        CHECK_EQ(pkt.record, 3);
        CHECK_EQ(pkt.offset, 28 + 20);
        CHECK_EQ(pkt.caplen, len);
        CHECK_EQ(pcapl_decode(&pkt, &d), PCAPL_SKIP_NONE);
        CHECK_EQ(d.sport, 1234);
        CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_END);
        CHECK_EQ(r.sections, 1);
        pcapl_close(&r);
        cb_free(&b);
    }
}

/* One packet of `ticks` on an interface with the given if_tsresol / if_tsoffset. */
static uint64_t ng_time(int tsresol, int has_offset, int64_t offset, uint64_t ticks, uint32_t *flags)
{
    cb b;
    pcapl_reader r;
    pcapl_packet pkt;
    uint64_t ns = 0;
    uint32_t len = udp4_frame();
    cb_init(&b, 0);
    cb_ng_shb(&b);
    cb_ng_idb(&b, 1, 0, tsresol, has_offset, offset);
    cb_ng_epb(&b, 0, ticks, frame_buf, len, len);
    *flags = 0xFFFFFFFFu;
    if (pcapl_open_memory(&r, b.data, b.len) == PCAPL_OK && pcapl_next(&r, &pkt) == PCAPL_OK) {
        ns = pkt.ts_ns;
        *flags = pkt.flags;
    }
    pcapl_close(&r);
    cb_free(&b);
    return ns;
}

void test_pcapng_tsresol_and_tsoffset(void)
{
    uint32_t fl;
    CHECK_EQ(ng_time(6, 0, 0, 1500000, &fl), 1500000000ull); /* 10^-6 */
    CHECK_EQ(fl, 0);
    CHECK_EQ(ng_time(9, 0, 0, 1234567890123ull, &fl), 1234567890123ull); /* 10^-9 */
    CHECK_EQ(ng_time(3, 0, 0, 1234, &fl), 1234000000ull);                /* 10^-3 */
    CHECK_EQ(ng_time(0, 0, 0, 7, &fl), 7000000000ull);                   /* seconds */
    CHECK_EQ(ng_time(12, 0, 0, 1234567890123456ull, &fl), 1234567890123ull); /* 10^-12: ps */
    CHECK_EQ(ng_time(0x80 | 10, 0, 0, 1024 * 3 + 512, &fl), 3500000000ull); /* 2^-10 */
    CHECK_EQ(ng_time(0x80 | 30, 0, 0, ((uint64_t)5 << 30) + 1, &fl), 5000000000ull); /* floor */
    CHECK_EQ(ng_time(0x80 | 63, 0, 0, (uint64_t)1 << 62, &fl), 500000000ull);
    CHECK_EQ(ng_time(6, 1, 100, 1500000, &fl), 101500000000ull);  /* if_tsoffset + */
    CHECK_EQ(ng_time(6, 1, -1, 1500000, &fl), 500000000ull);      /* if_tsoffset - */
    CHECK_EQ(fl, 0);
    CHECK_EQ(ng_time(6, 1, -2, 1500000, &fl), 0);                 /* before 1970: clamped */
    CHECK_EQ(fl, PCAPL_PKT_TS_CLAMPED);
    CHECK_EQ(ng_time(6, 0, 0, UINT64_MAX, &fl), UINT64_MAX);      /* beyond 2554: clamped */
    CHECK_EQ(fl, PCAPL_PKT_TS_CLAMPED);
    CHECK_EQ(ng_time(9, 1, INT64_MAX, 1, &fl), UINT64_MAX);
    CHECK_EQ(fl, PCAPL_PKT_TS_CLAMPED);
}

void test_pcapng_sections_and_interfaces(void)
{
    cb b, second;
    pcapl_reader r;
    pcapl_packet pkt;
    uint8_t raw[256];
    frame_spec s;
    uint32_t elen = udp4_frame(), rlen;
    spec_default(&s, 6, 6);
    rlen = build_ip(raw, &s);
    cb_init(&b, 0);
    cb_ng_shb(&b);
    cb_ng_idb(&b, 1, 0, -1, 0, 0);     /* 0: ethernet, µs */
    cb_ng_idb(&b, 101, 0, 9, 0, 0);    /* 1: raw IP, ns */
    cb_ng_epb(&b, 1, 42, raw, rlen, rlen);
    cb_ng_epb(&b, 0, 42, frame_buf, elen, elen);
    /* a big-endian second section: interface ids start again */
    cb_init(&second, 1);
    cb_ng_shb(&second);
    cb_ng_idb(&second, 101, 0, -1, 0, 0);
    cb_ng_epb(&second, 0, 7, raw, rlen, rlen);
    cb_bytes(&b, second.data, second.len);
    CHECK_EQ(pcapl_open_memory(&r, b.data, b.len), PCAPL_OK);
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_OK);
    CHECK_EQ(pkt.interface, 1);
    CHECK_EQ(pkt.linktype, 101);
    CHECK_EQ(pkt.ts_ns, 42);
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_OK);
    CHECK_EQ(pkt.interface, 0);
    CHECK_EQ(pkt.linktype, 1);
    CHECK_EQ(pkt.ts_ns, 42000);
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_OK);
    CHECK_EQ(r.swapped, 1);
    CHECK_EQ(pkt.interface, 0);
    CHECK_EQ(pkt.linktype, 101);
    CHECK_EQ(pkt.ts_ns, 7000);
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_END);
    CHECK_EQ(r.sections, 2);
    CHECK_EQ(r.packets, 3);
    pcapl_close(&r);
    /* the second section's packet may not use interface 1 of the first section */
    second.len = 0;
    cb_ng_shb(&second);
    cb_ng_idb(&second, 101, 0, -1, 0, 0);
    cb_ng_epb(&second, 1, 7, raw, rlen, rlen);
    b.len = 0;
    b.big = 0;
    cb_ng_shb(&b);
    cb_ng_idb(&b, 1, 0, -1, 0, 0);
    cb_ng_idb(&b, 101, 0, 9, 0, 0);
    {
        size_t at = b.len;
        cb_bytes(&b, second.data, second.len);
        CHECK(expect_error(&b, PCAPL_ERR_INTERFACE, 6, at + 28 + 20, 0));
    }
    cb_free(&b);
    cb_free(&second);
}

void test_pcapng_simple_and_obsolete_blocks(void)
{
    cb b;
    pcapl_reader r;
    pcapl_packet pkt;
    pcapl_decoded d;
    uint32_t len = udp4_frame();
    cb_init(&b, 0);
    cb_ng_shb(&b);
    cb_ng_idb(&b, 1, 64, -1, 0, 0); /* snaplen 64 */
    cb_ng_spb(&b, frame_buf, 64, len);
    cb_ng_pb(&b, 0, 1000, frame_buf, 50, len);
    CHECK_EQ(pcapl_open_memory(&r, b.data, b.len), PCAPL_OK);
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_OK);
    CHECK_EQ(pkt.caplen, 64); /* min(origlen, snaplen, block room) */
    CHECK_EQ(pkt.origlen, len);
    CHECK_EQ(pkt.flags, PCAPL_PKT_NO_TIMESTAMP);
    CHECK_EQ(pkt.ts_ns, 0);
    CHECK_EQ(pcapl_decode(&pkt, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.dport, 443);
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_OK);
    CHECK_EQ(pkt.caplen, 50);
    CHECK_EQ(pkt.ts_ns, 1000000);
    CHECK_EQ(pkt.flags, 0);
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_END);
    pcapl_close(&r);
    /* an SPB whose block is shorter than the wire length: caplen is what the block holds */
    b.len = 0;
    cb_ng_shb(&b);
    cb_ng_idb(&b, 1, 0, -1, 0, 0);
    cb_ng_spb(&b, frame_buf, 30, 1000);
    CHECK_EQ(pcapl_open_memory(&r, b.data, b.len), PCAPL_OK);
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_OK);
    CHECK_EQ(pkt.caplen, 32); /* 30 bytes padded to 32: the block room */
    CHECK_EQ(pkt.origlen, 1000);
    pcapl_close(&r);
    cb_free(&b);
}

void test_pcapng_skips_other_blocks(void)
{
    cb b;
    pcapl_reader r;
    pcapl_packet pkt;
    uint8_t body[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint32_t len = udp4_frame();
    cb_init(&b, 0);
    cb_ng_shb(&b);
    cb_ng_block(&b, 0x80000001u, body, 5); /* custom block */
    cb_ng_idb(&b, 1, 0, -1, 0, 0);
    cb_ng_block(&b, 4, body, 12); /* name resolution */
    cb_ng_block(&b, 5, body, 0);  /* interface statistics */
    cb_ng_epb(&b, 0, 1, frame_buf, len, len);
    CHECK_EQ(pcapl_open_memory(&r, b.data, b.len), PCAPL_OK);
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_OK);
    CHECK_EQ(pkt.record, 6);
    CHECK_EQ(r.skipped_blocks, 3);
    CHECK_EQ(pcapl_next(&r, &pkt), PCAPL_END);
    pcapl_close(&r);
    cb_free(&b);
}

/* ---- sources --------------------------------------------------------------------------------- */

typedef struct chunk_source {
    const uint8_t *data;
    size_t len, pos, chunk;
} chunk_source;

static long chunk_read(void *user, void *buf, size_t size)
{
    chunk_source *src = (chunk_source *)user;
    size_t n = src->len - src->pos;
    if (n > src->chunk) n = src->chunk;
    if (n > size) n = size;
    memcpy(buf, src->data + src->pos, n);
    src->pos += n;
    return (long)n;
}

/* A digest of every packet's fields and bytes, and the final result. */
static uint64_t digest_reader(pcapl_reader *r, pcapl_result *end)
{
    pcapl_packet pkt;
    uint64_t h = 1469598103934665603ull;
    pcapl_result res;
    uint32_t i;
    while ((res = pcapl_next(r, &pkt)) == PCAPL_OK) {
        h = (h ^ pkt.ts_ns) * 1099511628211ull;
        h = (h ^ pkt.caplen ^ (uint64_t)pkt.origlen << 32) * 1099511628211ull;
        h = (h ^ pkt.offset ^ pkt.record << 40 ^ pkt.linktype) * 1099511628211ull;
        for (i = 0; i < pkt.caplen; i++) h = (h ^ pkt.data[i]) * 1099511628211ull;
    }
    *end = res;
    h ^= r->error.offset;
    return h;
}

static void build_mixed_pcapng(cb *b, int truncate)
{
    uint32_t len = udp4_frame();
    int i;
    cb_init(b, 0);
    cb_ng_shb(b);
    cb_ng_idb(b, 1, 0, 9, 0, 0);
    for (i = 0; i < 200; i++) cb_ng_epb(b, 0, (uint64_t)i * 1000003u, frame_buf, len - (uint32_t)(i % 7), len);
    if (truncate) b->len -= 5;
}

void test_sources_give_identical_packets(void)
{
    static const size_t chunks[] = {1, 2, 3, 7, 64, 1000, 1u << 20};
    int truncate;
    for (truncate = 0; truncate < 2; truncate++) {
        cb b;
        pcapl_reader r;
        pcapl_result end_mem, end;
        uint64_t want;
        size_t i;
        FILE *f;
        build_mixed_pcapng(&b, truncate);
        CHECK_EQ(pcapl_open_memory(&r, b.data, b.len), PCAPL_OK);
        want = digest_reader(&r, &end_mem);
        CHECK_EQ(r.packets, truncate ? 199 : 200);
        pcapl_close(&r);
        CHECK_EQ(end_mem, truncate ? PCAPL_ERR_TRUNCATED : PCAPL_END);
        for (i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
            chunk_source src;
            src.data = b.data;
            src.len = b.len;
            src.pos = 0;
            src.chunk = chunks[i];
            CHECK_EQ(pcapl_open_callback(&r, chunk_read, &src), PCAPL_OK);
            CHECK_EQ(digest_reader(&r, &end), want);
            CHECK_EQ(end, end_mem);
            pcapl_close(&r);
        }
        f = tmpfile();
        CHECK(f != 0);
        CHECK_EQ(fwrite(b.data, 1, b.len, f), b.len);
        rewind(f);
        CHECK_EQ(pcapl_open_file(&r, f), PCAPL_OK);
        CHECK_EQ(digest_reader(&r, &end), want);
        CHECK_EQ(end, end_mem);
        pcapl_close(&r);
        fclose(f);
        cb_free(&b);
    }
}

/* ---- link types and decoding ----------------------------------------------------------------- */

void test_link_types(void)
{
    uint8_t f[512], ip[256];
    pcapl_decoded d;
    frame_spec s;
    uint32_t iplen, n;
    static const uint32_t raw_types[] = {12, 14, 101, 228};
    size_t i;
    spec_default(&s, 4, 17);
    iplen = build_ip(ip, &s);
    /* raw IP */
    for (i = 0; i < sizeof raw_types / sizeof raw_types[0]; i++) {
        CHECK_EQ(decode(raw_types[i], ip, iplen, &d), PCAPL_SKIP_NONE);
        CHECK_EQ(d.l3_offset, 0);
        CHECK_EQ(d.sport, 1234);
    }
    /* Linux SLL: 16-byte header, protocol at 14 */
    memset(f, 0, 16);
    f[14] = 0x08;
    memcpy(f + 16, ip, iplen);
    CHECK_EQ(decode(113, f, 16 + iplen, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.l3_offset, 16);
    f[14] = 0x08;
    f[15] = 0x06; /* ARP */
    CHECK_EQ(decode(113, f, 16 + iplen, &d), PCAPL_SKIP_NOT_IP);
    /* Linux SLL2: 20-byte header, protocol at 0 */
    memset(f, 0, 20);
    f[0] = 0x08;
    memcpy(f + 20, ip, iplen);
    CHECK_EQ(decode(276, f, 20 + iplen, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.l3_offset, 20);
    /* NULL: AF_INET in little and big endian, AF_INET6 (24, 28, 30), a tun header */
    memset(f, 0, 4);
    f[0] = 2;
    memcpy(f + 4, ip, iplen);
    CHECK_EQ(decode(0, f, 4 + iplen, &d), PCAPL_SKIP_NONE);
    memset(f, 0, 4);
    f[3] = 2;
    CHECK_EQ(decode(0, f, 4 + iplen, &d), PCAPL_SKIP_NONE);
    f[0] = 0x0f;
    f[1] = 0;
    f[2] = 0x08;
    f[3] = 0;
    CHECK_EQ(decode(0, f, 4 + iplen, &d), PCAPL_SKIP_NONE);
    memset(f, 0, 4);
    f[0] = 7; /* some other family */
    CHECK_EQ(decode(0, f, 4 + iplen, &d), PCAPL_SKIP_NOT_IP);
    spec_default(&s, 6, 6);
    iplen = build_ip(ip, &s);
    memcpy(f + 4, ip, iplen);
    memset(f, 0, 4);
    f[0] = 30;
    CHECK_EQ(decode(0, f, 4 + iplen, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.ip_version, 6);
    f[0] = 28;
    CHECK_EQ(decode(0, f, 4 + iplen, &d), PCAPL_SKIP_NONE);
    f[0] = 24;
    CHECK_EQ(decode(0, f, 4 + iplen, &d), PCAPL_SKIP_NONE);
    /* LOOP: network byte order */
    memset(f, 0, 4);
    f[3] = 24;
    CHECK_EQ(decode(108, f, 4 + iplen, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.proto, 6);
    /* raw IPv6 link type */
    CHECK_EQ(decode(229, ip, iplen, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(decode(101, ip, iplen, &d), PCAPL_SKIP_NONE);
    /* Ethernet IPv6 */
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.l3_offset, 14);
    CHECK_EQ(d.l4_offset, 54);
    /* an unknown link type is counted, not decoded */
    CHECK_EQ(decode(147, f, n, &d), PCAPL_SKIP_LINKTYPE);
    /* Ethernet carrying ARP */
    f[12] = 0x08;
    f[13] = 0x06;
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_NOT_IP);
    /* PPPoE session with IPv4 inside */
    spec_default(&s, 4, 17);
    iplen = build_ip(ip, &s);
    memset(f, 0, 22);
    f[12] = 0x88;
    f[13] = 0x64;
    f[20] = 0x00;
    f[21] = 0x21;
    memcpy(f + 22, ip, iplen);
    CHECK_EQ(decode(1, f, 22 + iplen, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.l3_offset, 22);
    /* MPLS: two labels, then IPv4 */
    memset(f, 0, 22);
    f[12] = 0x88;
    f[13] = 0x47;
    f[20] = 1; /* bottom of stack on the second label */
    memcpy(f + 22, ip, iplen);
    CHECK_EQ(decode(1, f, 22 + iplen, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.l3_offset, 22);
}

void test_vlan_stacking(void)
{
    uint8_t f[512];
    pcapl_decoded d;
    frame_spec s;
    int tags;
    for (tags = 0; tags <= 9; tags++) {
        uint32_t n;
        spec_default(&s, tags % 2 ? 6 : 4, 17);
        s.vlan_tags = tags;
        n = build_eth(f, &s);
        if (tags <= 8) {
            CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_NONE);
            CHECK_EQ(d.l3_offset, 14 + 4 * (uint32_t)tags);
            CHECK_EQ(d.ip_version, s.ip_version);
            CHECK_EQ(d.dport, 443);
        } else {
            CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_MALFORMED); /* deeper than any real stack */
        }
        /* cut inside the tags */
        if (tags && tags <= 8) CHECK_EQ(decode(1, f, 14 + 4 * (uint32_t)tags - 1, &d), PCAPL_SKIP_TRUNCATED);
    }
    /* the 802.1ad outer tag followed by 802.1Q is what QinQ looks like */
    spec_default(&s, 4, 6);
    s.vlan_tags = 2;
    build_eth(f, &s);
    CHECK_EQ(f[12], 0x88);
    CHECK_EQ(f[13], 0xA8);
    CHECK_EQ(f[16], 0x81);
}

void test_ipv4_options_and_fragments(void)
{
    uint8_t f[512];
    pcapl_decoded d;
    frame_spec s;
    uint32_t n;
    spec_default(&s, 4, 6);
    s.ipv4_options = 3;
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.l4_offset, 14 + 32);
    CHECK_EQ(d.sport, 1234);
    CHECK_EQ(d.ip_size, n - 14);
    /* first fragment (MF set, offset 0) carries the ports */
    spec_default(&s, 4, 17);
    s.frag_field = 0x2000;
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.dport, 443);
    /* later fragments do not */
    s.frag_field = 0x2000 | 185;
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_FRAGMENT);
    CHECK_EQ(d.proto, 17);
    CHECK_EQ(d.ip_version, 4);
    CHECK_EQ(d.sport, 0);
    s.frag_field = 185; /* last fragment */
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_FRAGMENT);
    /* DF alone is not a fragment */
    s.frag_field = 0x4000;
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_NONE);
    /* IHL below 5 is malformed */
    f[14] = 0x44;
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_MALFORMED);
    /* ethertype IPv4 but a version 6 header */
    f[14] = 0x65;
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_MALFORMED);
}

void test_ipv6_extension_headers(void)
{
    uint8_t f[512];
    pcapl_decoded d;
    frame_spec s;
    uint32_t n;
    spec_default(&s, 6, 17);
    s.ipv6_ext = 1;
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.l4_offset, 14 + 40 + 48);
    CHECK_EQ(d.proto, 17);
    CHECK_EQ(d.sport, 1234);
    CHECK_EQ(d.ip_size, n - 14);
    /* with an authentication header too */
    s.ipv6_ah = 1;
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.l4_offset, 14 + 40 + 48 + 24);
    CHECK_EQ(d.dport, 443);
    /* cut inside the extension headers */
    CHECK_EQ(decode(1, f, 14 + 40 + 20, &d), PCAPL_SKIP_TRUNCATED);
    /* cut in the ports */
    CHECK_EQ(decode(1, f, 14 + 40 + 48 + 24 + 3, &d), PCAPL_SKIP_TRUNCATED);
    /* ICMPv6 after the chain is another protocol */
    spec_default(&s, 6, 58);
    s.ipv6_ext = 1;
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_OTHER_PROTO);
    CHECK_EQ(d.proto, 58);
    /* a hop-by-hop header whose length runs past the capture */
    spec_default(&s, 6, 6);
    s.ipv6_ext = 1;
    n = build_eth(f, &s);
    f[14 + 40 + 1] = 200;
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_TRUNCATED);
}

void test_ipv6_fragments(void)
{
    uint8_t f[512];
    pcapl_decoded d;
    frame_spec s;
    uint32_t n;
    spec_default(&s, 6, 17);
    s.ipv6_frag = 1;
    s.frag_field = 1; /* offset 0, M flag: first fragment */
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.sport, 1234);
    CHECK_EQ(d.l4_offset, 14 + 48);
    s.frag_field = (uint16_t)(100 << 3); /* offset 100 * 8 */
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_FRAGMENT);
    CHECK_EQ(d.proto, 17);
    /* a fragment behind other extension headers */
    s.ipv6_ext = 1;
    s.ipv6_ah = 1;
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_FRAGMENT);
    s.frag_field = 1;
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.l4_offset, 14 + 40 + 48 + 24 + 8);
}

void test_other_protocols_and_truncation(void)
{
    uint8_t f[512];
    pcapl_decoded d;
    frame_spec s;
    uint32_t n;
    spec_default(&s, 4, 1);
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_OTHER_PROTO);
    CHECK_EQ(d.proto, 1);
    CHECK_EQ(d.ip_version, 4);
    CHECK_EQ(d.src[0], 10);
    spec_default(&s, 4, 47); /* GRE */
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, n, &d), PCAPL_SKIP_OTHER_PROTO);
    spec_default(&s, 4, 6);
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, 13, &d), PCAPL_SKIP_TRUNCATED);          /* in the Ethernet header */
    CHECK_EQ(decode(1, f, 14 + 19, &d), PCAPL_SKIP_TRUNCATED);     /* in the IPv4 header */
    CHECK_EQ(decode(1, f, 14 + 20 + 3, &d), PCAPL_SKIP_TRUNCATED); /* in the ports */
    CHECK_EQ(decode(1, f, 14 + 20 + 4, &d), PCAPL_SKIP_NONE);      /* ports are enough */
    spec_default(&s, 6, 6);
    n = build_eth(f, &s);
    CHECK_EQ(decode(1, f, 14 + 39, &d), PCAPL_SKIP_TRUNCATED); /* in the IPv6 header */
    CHECK_EQ(decode(101, f, 0, &d), PCAPL_SKIP_TRUNCATED);
    CHECK_EQ(decode(0, f, 3, &d), PCAPL_SKIP_TRUNCATED);
    CHECK_EQ(decode(113, f, 15, &d), PCAPL_SKIP_TRUNCATED);
    CHECK_EQ(decode(276, f, 19, &d), PCAPL_SKIP_TRUNCATED);
    (void)n;
}

void test_ip_size_from_header(void)
{
    uint8_t f[512];
    pcapl_decoded d;
    frame_spec s;
    uint32_t n;
    spec_default(&s, 4, 17);
    s.ip_len_override = 1400; /* a snapped frame: the header says 1400 */
    n = build_eth(f, &s);
    CHECK_EQ(pcapl_decode_frame(1, f, n, 1414, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.ip_size, 1400);
    s.ip_len_override = 0xFFFF; /* total length 0 (TCP segmentation offload): the wire length */
    n = build_eth(f, &s);
    CHECK_EQ(pcapl_decode_frame(1, f, n, 3192, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.ip_size, 3178);
    spec_default(&s, 6, 6);
    s.ip_len_override = 1460;
    n = build_eth(f, &s);
    CHECK_EQ(pcapl_decode_frame(1, f, n, 1514, &d), PCAPL_SKIP_NONE);
    CHECK_EQ(d.ip_size, 1500);
}

void test_address_text(void)
{
    char out[64];
    uint8_t a[16];
    static const struct {
        const char *hex;
        const char *text;
    } cases[] = {
        {"20010db8000000000000000000000001", "2001:db8::1"},
        {"00000000000000000000000000000001", "::1"},
        {"00000000000000000000000000000000", "::"},
        {"20010db8000000010000000000000001", "2001:db8:0:1::1"}, /* longest run wins */
        {"20010db8000000000001000000000001", "2001:db8::1:0:0:1"}, /* first of equal runs */
        {"20010db800010001000100010001000a", "2001:db8:1:1:1:1:1:a"},
        {"20010db8000100000001000100010001", "2001:db8:1:0:1:1:1:1"}, /* one zero: no :: */
        {"fe800000000000000000000000000abc", "fe80::abc"},
        {"00000000000000000000ffffc0a80001", "::ffff:192.168.0.1"},
        {"ff020000000000000000000000000001", "ff02::1"},
    };
    size_t i;
    int k;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (k = 0; k < 16; k++) {
            unsigned v;
            sscanf(cases[i].hex + 2 * k, "%2x", &v);
            a[k] = (uint8_t)v;
        }
        pcapl_format_address(6, a, out);
        CHECK_STR(out, cases[i].text);
    }
    a[0] = 192;
    a[1] = 168;
    a[2] = 0;
    a[3] = 255;
    pcapl_format_address(4, a, out);
    CHECK_STR(out, "192.168.0.255");
}

/* ---- malformed input: each error with its record and offset ---------------------------------- */

void test_errors_file_header(void)
{
    cb b;
    pcapl_reader r;
    cb_init(&b, 0);
    CHECK(expect_error(&b, PCAPL_ERR_EMPTY, 0, 0, 0));
    cb_u16(&b, 0xC3D4);
    CHECK(expect_error(&b, PCAPL_ERR_SHORT_HEADER, 0, 0, 0));
    b.len = 0;
    cb_u32(&b, 0x12345678u);
    cb_zeros(&b, 20);
    CHECK(expect_error(&b, PCAPL_ERR_NOT_CAPTURE, 0, 0, 0));
    CHECK_EQ(pcapl_open_memory(&r, b.data, b.len), PCAPL_ERR_NOT_CAPTURE);
    CHECK_STR(r.error.reason, "not a pcap or pcapng file (magic 0x78563412)");
    b.len = 0;
    cb_pcap_header(&b, 0, 1, 65535);
    b.len = 20; /* truncated pcap header */
    CHECK(expect_error(&b, PCAPL_ERR_SHORT_HEADER, 0, 0, 0));
    b.len = 0;
    cb_pcap_header(&b, 0, 1, 65535);
    b.data[4] = 3; /* version 3.4 */
    CHECK(expect_error(&b, PCAPL_ERR_VERSION, 0, 0, 0));
    CHECK_EQ(pcapl_open_memory(&r, b.data, b.len), PCAPL_ERR_VERSION);
    CHECK_STR(r.error.reason, "unsupported pcap version 3.4");
    /* pcapng that ends inside its first block */
    b.len = 0;
    cb_ng_shb(&b);
    b.len = 20;
    CHECK(expect_error(&b, PCAPL_ERR_TRUNCATED, 1, 0, 0));
    b.len = 0;
    cb_ng_shb(&b);
    b.len = 8; /* not even 12 bytes */
    CHECK(expect_error(&b, PCAPL_ERR_TRUNCATED, 1, 0, 0));
    cb_free(&b);
}

void test_errors_pcap_records(void)
{
    cb b;
    int before;
    uint32_t len = udp4_frame();
    size_t second;
    cb_init(&b, 0);
    cb_pcap_header(&b, 0, 1, 65535);
    cb_pcap_record(&b, 1, 0, frame_buf, len, len);
    second = b.len;
    cb_pcap_record(&b, 2, 0, frame_buf, len, len);
    b.len = second + 10; /* truncated record header */
    CHECK(expect_error(&b, PCAPL_ERR_TRUNCATED, 2, second, &before));
    CHECK_EQ(before, 1); /* the complete packet before it was delivered */
    b.len = second + 16 + len - 1; /* truncated record data */
    CHECK(expect_error(&b, PCAPL_ERR_TRUNCATED, 2, second, &before));
    CHECK_EQ(before, 1);
    b.len = second;
    cb_pcap_record(&b, 2, 0, frame_buf, 0, 0);
    cb_put_u32(&b, second + 8, PCAPL_MAX_CAPLEN + 1); /* caplen beyond the limit */
    CHECK(expect_error(&b, PCAPL_ERR_CAPLEN, 2, second, &before));
    CHECK_EQ(before, 1);
    /* a record whose caplen is 4 GiB - 1 must not make the reader allocate it */
    cb_put_u32(&b, second + 8, 0xFFFFFFFFu);
    CHECK(expect_error(&b, PCAPL_ERR_CAPLEN, 2, second, &before));
    cb_free(&b);
}

void test_errors_pcapng_blocks(void)
{
    cb b;
    int before;
    uint32_t len = udp4_frame();
    size_t epb;
    cb_init(&b, 0);
    cb_ng_shb(&b);
    cb_ng_idb(&b, 1, 0, -1, 0, 0);
    cb_ng_epb(&b, 0, 1, frame_buf, len, len);
    epb = b.len;
    cb_ng_epb(&b, 0, 2, frame_buf, len, len);
    /* length < 12 */
    cb_put_u32(&b, epb + 4, 8);
    CHECK(expect_error(&b, PCAPL_ERR_BLOCK_SMALL, 4, epb, &before));
    CHECK_EQ(before, 1);
    /* not a multiple of 4 */
    cb_put_u32(&b, epb + 4, 13);
    CHECK(expect_error(&b, PCAPL_ERR_BLOCK_ALIGN, 4, epb, &before));
    /* larger than the limit (checked before anything is allocated or read) */
    cb_put_u32(&b, epb + 4, PCAPL_MAX_BLOCK + 4);
    CHECK(expect_error(&b, PCAPL_ERR_BLOCK_LARGE, 4, epb, &before));
    cb_put_u32(&b, epb + 4, 0xFFFFFFFCu);
    CHECK(expect_error(&b, PCAPL_ERR_BLOCK_LARGE, 4, epb, &before));
    /* longer than the file */
    cb_put_u32(&b, epb + 4, (uint32_t)(b.len - epb + 8));
    CHECK(expect_error(&b, PCAPL_ERR_TRUNCATED, 4, epb, &before));
    CHECK_EQ(before, 1);
    /* trailer differs */
    cb_put_u32(&b, epb + 4, (uint32_t)(b.len - epb));
    cb_put_u32(&b, b.len - 4, (uint32_t)(b.len - epb) + 4);
    CHECK(expect_error(&b, PCAPL_ERR_BLOCK_TRAILER, 4, epb, &before));
    cb_put_u32(&b, b.len - 4, (uint32_t)(b.len - epb));
    /* EPB too short for its fields */
    b.len = epb;
    cb_u32(&b, 6);
    cb_u32(&b, 28);
    cb_zeros(&b, 16);
    cb_u32(&b, 28);
    CHECK(expect_error(&b, PCAPL_ERR_BLOCK_SMALL, 4, epb, &before));
    /* EPB whose caplen exceeds its body */
    b.len = epb;
    cb_ng_epb(&b, 0, 2, frame_buf, len, len);
    cb_put_u32(&b, epb + 20, len + 8);
    CHECK(expect_error(&b, PCAPL_ERR_BLOCK_BODY, 4, epb, &before));
    cb_put_u32(&b, epb + 20, 0xFFFFFFF0u);
    CHECK(expect_error(&b, PCAPL_ERR_BLOCK_BODY, 4, epb, &before));
    /* a truncated block header at the end */
    b.len = epb + 6;
    CHECK(expect_error(&b, PCAPL_ERR_TRUNCATED, 4, epb, &before));
    CHECK_EQ(before, 1);
    /* section header: bad byte-order magic, too short, version 2 */
    b.len = 0;
    cb_ng_shb(&b);
    cb_put_u32(&b, 8, 0x11223344u);
    CHECK(expect_error(&b, PCAPL_ERR_BYTE_ORDER, 1, 0, 0));
    b.len = 0;
    cb_u32(&b, 0x0A0D0D0Au);
    cb_u32(&b, 24);
    cb_u32(&b, 0x1A2B3C4Du);
    cb_u16(&b, 1);
    cb_u16(&b, 0);
    cb_u32(&b, 0);
    cb_u32(&b, 24);
    CHECK(expect_error(&b, PCAPL_ERR_BLOCK_SMALL, 1, 0, 0));
    b.len = 0;
    cb_ng_shb(&b);
    b.data[12] = 2;
    CHECK(expect_error(&b, PCAPL_ERR_VERSION, 1, 0, 0));
    /* a second section with a bad byte order after a good packet */
    b.len = 0;
    cb_ng_shb(&b);
    cb_ng_idb(&b, 1, 0, -1, 0, 0);
    cb_ng_epb(&b, 0, 1, frame_buf, len, len);
    epb = b.len;
    cb_ng_shb(&b);
    cb_put_u32(&b, epb + 8, 0x4D3C2B1Bu);
    CHECK(expect_error(&b, PCAPL_ERR_BYTE_ORDER, 4, epb, &before));
    CHECK_EQ(before, 1);
    cb_free(&b);
}

/* An IDB with raw option bytes. */
static void idb_with_options(cb *b, const uint8_t *opts, uint32_t n)
{
    uint8_t body[64];
    memset(body, 0, 8);
    body[0] = 1; /* ethernet, little-endian */
    memcpy(body + 8, opts, n);
    cb_ng_block(b, 1, body, 8 + n);
}

void test_errors_pcapng_options(void)
{
    cb b;
    static const uint8_t overrun[] = {9, 0, 40, 0, 6, 0, 0, 0};
    static const uint8_t resol_len2[] = {9, 0, 2, 0, 6, 6, 0, 0};
    static const uint8_t resol_twice[] = {9, 0, 1, 0, 6, 0, 0, 0, 9, 0, 1, 0, 9, 0, 0, 0};
    static const uint8_t resol_huge[] = {9, 0, 1, 0, 20, 0, 0, 0};
    static const uint8_t resol_huge2[] = {9, 0, 1, 0, 0xC0, 0, 0, 0};
    static const uint8_t offset_len4[] = {14, 0, 4, 0, 1, 0, 0, 0};
    static const uint8_t offset_twice[] = {14, 0, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0,
                                           14, 0, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t fine[] = {2, 0, 3, 0, 'e', 't', 'h', 0, 0, 0, 0, 0}; /* if_name, end */
    static const struct {
        const uint8_t *opts;
        uint32_t n;
        pcapl_result code;
    } cases[] = {
        {overrun, sizeof overrun, PCAPL_ERR_OPTION},
        {resol_len2, sizeof resol_len2, PCAPL_ERR_TSRESOL},
        {resol_twice, sizeof resol_twice, PCAPL_ERR_TSRESOL},
        {resol_huge, sizeof resol_huge, PCAPL_ERR_TSRESOL},
        {resol_huge2, sizeof resol_huge2, PCAPL_ERR_TSRESOL},
        {offset_len4, sizeof offset_len4, PCAPL_ERR_OPTION},
        {offset_twice, sizeof offset_twice, PCAPL_ERR_OPTION},
        {fine, sizeof fine, PCAPL_END},
    };
    size_t i;
    cb_init(&b, 0);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        b.len = 0;
        cb_ng_shb(&b);
        idb_with_options(&b, cases[i].opts, cases[i].n);
        if (cases[i].code == PCAPL_END) {
            pcapl_result end;
            CHECK_EQ(read_all(&b, 0, &end, 0), 0);
            CHECK_EQ(end, PCAPL_END);
        } else {
            CHECK(expect_error(&b, cases[i].code, 2, 28, 0));
        }
    }
    cb_free(&b);
}

void test_errors_pcapng_interfaces(void)
{
    cb b;
    uint32_t i, len = udp4_frame();
    size_t at;
    cb_init(&b, 0);
    cb_ng_shb(&b);
    /* a packet before any interface */
    cb_ng_epb(&b, 0, 1, frame_buf, len, len);
    CHECK(expect_error(&b, PCAPL_ERR_INTERFACE, 2, 28, 0));
    b.len = 0;
    cb_ng_shb(&b);
    cb_ng_spb(&b, frame_buf, len, len);
    CHECK(expect_error(&b, PCAPL_ERR_INTERFACE, 2, 28, 0));
    /* an IDB shorter than its fields */
    b.len = 0;
    cb_ng_shb(&b);
    cb_u32(&b, 1);
    cb_u32(&b, 16);
    cb_u32(&b, 1);
    cb_u32(&b, 16);
    CHECK(expect_error(&b, PCAPL_ERR_BLOCK_SMALL, 2, 28, 0));
    /* more interfaces than the limit: the table does not grow without bound */
    b.len = 0;
    cb_ng_shb(&b);
    for (i = 0; i < PCAPL_MAX_INTERFACES; i++) cb_ng_idb(&b, 1, 0, -1, 0, 0);
    at = b.len;
    cb_ng_idb(&b, 1, 0, -1, 0, 0);
    CHECK(expect_error(&b, PCAPL_ERR_INTERFACE_LIMIT, PCAPL_MAX_INTERFACES + 2, at, 0));
    cb_free(&b);
}

static long failing_read(void *user, void *buf, size_t size)
{
    int *calls = (int *)user;
    (void)buf;
    (void)size;
    if ((*calls)++ == 0) {
        memcpy(buf, "\xd4\xc3\xb2\xa1\x02\x00\x04\x00", 8);
        return 8;
    }
    return -1;
}

static long lying_read(void *user, void *buf, size_t size)
{
    (void)user;
    (void)buf;
    return (long)size + 1; /* claims more than it was asked for */
}

void test_errors_read_callback(void)
{
    pcapl_reader r;
    int calls = 0;
    CHECK_EQ(pcapl_open_callback(&r, failing_read, &calls), PCAPL_ERR_READ);
    CHECK_EQ(r.error.offset, 8);
    CHECK_EQ(pcapl_open_callback(&r, lying_read, 0), PCAPL_ERR_READ);
    CHECK_EQ(pcapl_open_callback(&r, 0, 0), PCAPL_ERR_ARG);
    CHECK_EQ(pcapl_open_memory(&r, 0, 10), PCAPL_ERR_ARG);
    CHECK_EQ(pcapl_open_path(&r, "/nonexistent/dir/x.pcap"), PCAPL_ERR_OPEN);
}

void test_result_strings(void)
{
    int i;
    for (i = 0; i < PCAPL_RESULT_COUNT; i++) CHECK(strlen(pcapl_result_string((pcapl_result)i)) > 3);
    for (i = 0; i < PCAPL_SKIP_COUNT; i++) CHECK(strlen(pcapl_skip_string((pcapl_skip)i)) > 3);
    CHECK_STR(pcapl_result_string(PCAPL_RESULT_COUNT), "unknown result");
    CHECK_STR(pcapl_result_string((pcapl_result)-1), "unknown result");
    CHECK_STR(pcapl_skip_string(PCAPL_SKIP_COUNT), "unknown reason");
    for (i = 0; i < FLOWPIC_RESULT_COUNT; i++) CHECK(strlen(flowpic_result_string((flowpic_result)i)) > 3);
    CHECK_STR(flowpic_result_string(FLOWPIC_RESULT_COUNT), "unknown result");
}
