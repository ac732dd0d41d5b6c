/* pcap_lite.h - a minimal, complete, hostile-input-proof pcap/pcapng reader and packet decoder.
 *
 * Single header, C99 + libc. In ONE translation unit:
 *
 *     #define PCAPL_IMPLEMENTATION
 *     #include "pcap_lite.h"
 *
 * (flowpic.h includes this header and compiles it in with FLOWPIC_IMPLEMENTATION unless
 * FLOWPIC_NO_PCAP_LITE_IMPLEMENTATION is defined.)
 *
 * Usage
 * -----
 *     pcapl_reader r;
 *     pcapl_packet pkt;
 *     pcapl_decoded d;
 *     pcapl_result res = pcapl_open_path(&r, "trace.pcapng");
 *     if (res != PCAPL_OK) { fprintf(stderr, "%s\n", r.error.reason); return 1; }
 *     while ((res = pcapl_next(&r, &pkt)) == PCAPL_OK) {
 *         if (pcapl_decode(&pkt, &d) != PCAPL_SKIP_NONE) continue;   // not IPv4/IPv6 TCP/UDP
 *         printf("%llu ns  proto %u  %u -> %u  %u bytes\n", (unsigned long long)pkt.ts_ns,
 *                d.proto, d.sport, d.dport, d.ip_size);
 *     }
 *     if (res != PCAPL_END)   // every packet before the bad record was delivered
 *         fprintf(stderr, "record %llu, offset %llu: %s\n", (unsigned long long)r.error.record,
 *                 (unsigned long long)r.error.offset, r.error.reason);
 *     pcapl_close(&r);
 *
 * Contents (grep '>>' for the map)
 *   >>config      configuration macros and limits
 *   >>results     result codes and error struct
 *   >>types       packet, decoded packet, reader
 *   >>api         public functions
 *   >>impl        implementation: byte helpers, source buffer, classic pcap, pcapng, decoder
 *
 * Sources: a path, a FILE*, a memory buffer, or a read callback (a pipe: the reader never seeks;
 * any chunk size gives identical packets). Formats: classic pcap (both byte orders, µs and ns
 * magic) and pcapng (both byte orders, several sections, several interfaces each with its own
 * link type, if_tsresol decimal and binary, if_tsoffset; EPB, SPB and the obsolete packet block;
 * other blocks skipped). Link types: Ethernet (802.1Q/802.1ad/QinQ tags, PPPoE session, MPLS),
 * raw IP (12, 14, 101, 228, 229), Linux SLL (113), SLL2 (276), NULL (0), LOOP (108).
 *
 * Every byte sequence gives packets or a specific error (code, record number, byte offset,
 * reason): never a crash, hang, leak or out-of-bounds read. No global state.
 *
 * Configuration (define before including)
 *   PCAPL_MALLOC(sz) / PCAPL_REALLOC(p, sz) / PCAPL_FREE(p)   allocator (all three or none)
 *   PCAPL_FREAD(f, buf, n) reads up to n bytes of FILE f: the count, 0 at the end, -1 on an
 *                          error (default: fread + ferror)
 *   PCAPL_FOPEN(path, mode) opens a file as fopen does (default: fopen). With PCAPL_FREAD,
 *                          the hooks for fault-injection tests.
 *   PCAPL_ASSERT(x)        assertion (default: assert)
 *   PCAPL_STATIC           make every function static
 *   PCAPL_NO_STDIO         no FILE* / path sources
 *   PCAPL_MAX_CAPLEN       largest classic pcap record payload   (default 262144, as libpcap)
 *   PCAPL_MAX_BLOCK        largest pcapng block                  (default 16 MiB, as libpcap)
 *   PCAPL_MAX_INTERFACES   most interfaces in one pcapng section (default 65536)
 *   PCAPL_BUFFER_SIZE      stream buffer size                    (default 1 MiB)
 *
 * License: MIT (see the end of the file).
 */
#ifndef PCAP_LITE_H
#define PCAP_LITE_H

#include <stddef.h>
#include <stdint.h>
#ifndef PCAPL_NO_STDIO
#include <stdio.h>
#endif

/* >>config ------------------------------------------------------------------------------------ */

#define PCAPL_VERSION_STRING "0.1.0"

#ifdef PCAPL_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define PCAPL_DEF static __attribute__((unused)) /* a program uses only some of them */
#else
#define PCAPL_DEF static
#endif
#else
#define PCAPL_DEF extern
#endif

#ifndef PCAPL_MAX_CAPLEN
#define PCAPL_MAX_CAPLEN 262144u /* libpcap's MAXIMUM_SNAPLEN: larger records are corrupt */
#endif
#ifndef PCAPL_MAX_BLOCK
#define PCAPL_MAX_BLOCK (16u * 1024u * 1024u) /* libpcap's MAX_BLOCKSIZE for pcapng */
#endif
#ifndef PCAPL_MAX_INTERFACES
#define PCAPL_MAX_INTERFACES 65536u /* bounds the interface table a hostile file can grow */
#endif
#ifndef PCAPL_BUFFER_SIZE
#define PCAPL_BUFFER_SIZE (1u << 20) /* one read() per MiB: the kernel copy dominates */
#endif
#define PCAPL_MAX_VLAN_TAGS 8 /* deeper tag stacks are reported as malformed */

#ifdef __cplusplus
extern "C" {
#endif

/* >>results ----------------------------------------------------------------------------------- */

/* X(name, message): one list gives the enum and the messages. */
#define PCAPL_RESULT_LIST(X)                                                                   \
    X(PCAPL_OK, "success")                                                                     \
    X(PCAPL_END, "end of capture")                                                             \
    X(PCAPL_ERR_ARG, "invalid argument")                                                       \
    X(PCAPL_ERR_NOMEM, "out of memory")                                                        \
    X(PCAPL_ERR_OPEN, "cannot open file")                                                      \
    X(PCAPL_ERR_READ, "read error")                                                            \
    X(PCAPL_ERR_EMPTY, "empty file")                                                           \
    X(PCAPL_ERR_NOT_CAPTURE, "not a pcap or pcapng file")                                      \
    X(PCAPL_ERR_SHORT_HEADER, "file header truncated")                                         \
    X(PCAPL_ERR_VERSION, "unsupported format version")                                         \
    X(PCAPL_ERR_TRUNCATED, "truncated record at end of file")                                  \
    X(PCAPL_ERR_CAPLEN, "record capture length too large")                                     \
    X(PCAPL_ERR_BLOCK_SMALL, "block length too small")                                         \
    X(PCAPL_ERR_BLOCK_ALIGN, "block length not a multiple of 4")                               \
    X(PCAPL_ERR_BLOCK_LARGE, "block length too large")                                         \
    X(PCAPL_ERR_BLOCK_TRAILER, "block trailer length differs from header")                     \
    X(PCAPL_ERR_BLOCK_BODY, "block body inconsistent with its length")                         \
    X(PCAPL_ERR_BYTE_ORDER, "bad byte-order magic in section header")                          \
    X(PCAPL_ERR_INTERFACE, "packet refers to an undefined interface")                          \
    X(PCAPL_ERR_INTERFACE_LIMIT, "too many interfaces")                                        \
    X(PCAPL_ERR_OPTION, "malformed option")                                                    \
    X(PCAPL_ERR_TSRESOL, "bad if_tsresol option")

typedef enum pcapl_result {
#define PCAPL_X_ENUM(name, msg) name,
    PCAPL_RESULT_LIST(PCAPL_X_ENUM)
#undef PCAPL_X_ENUM
        PCAPL_RESULT_COUNT
} pcapl_result;

/* Where and why reading failed. record: 1-based number of the record (pcap) or block (pcapng,
 * the section header counts) where the problem is; 0 = the file header. offset: byte offset of
 * that record's first byte in the input. */
typedef struct pcapl_error {
    pcapl_result code;
    uint64_t record;
    uint64_t offset;
    char reason[192];
} pcapl_error;

/* >>types ------------------------------------------------------------------------------------- */

typedef enum pcapl_format { PCAPL_FORMAT_NONE, PCAPL_FORMAT_PCAP, PCAPL_FORMAT_PCAPNG } pcapl_format;

/* Common link types (LINKTYPE_* values of tcpdump.org). */
enum {
    PCAPL_LINK_NULL = 0,
    PCAPL_LINK_ETHERNET = 1,
    PCAPL_LINK_RAW_12 = 12,
    PCAPL_LINK_RAW_14 = 14,
    PCAPL_LINK_RAW = 101,
    PCAPL_LINK_LOOP = 108,
    PCAPL_LINK_SLL = 113,
    PCAPL_LINK_IPV4 = 228,
    PCAPL_LINK_IPV6 = 229,
    PCAPL_LINK_SLL2 = 276
};

enum {
    PCAPL_PKT_NO_TIMESTAMP = 1u, /* simple packet block: the format carries no time (ts_ns = 0) */
    PCAPL_PKT_TS_CLAMPED = 2u    /* timestamp outside 0 .. 2^64-1 ns: clamped to the nearer end */
};

/* One captured record. data points into the reader's buffer: valid until the next call. */
typedef struct pcapl_packet {
    uint64_t ts_ns;        /* capture time, ns since the epoch (after if_tsoffset) */
    uint32_t caplen;       /* bytes captured (available at data) */
    uint32_t origlen;      /* bytes on the wire */
    uint32_t interface;    /* pcapng interface id within its section; 0 for classic pcap */
    uint32_t linktype;     /* LINKTYPE_* of the interface */
    uint32_t flags;        /* PCAPL_PKT_* */
    const uint8_t *data;
    uint64_t record;       /* 1-based record (pcap) / block (pcapng) number */
    uint64_t offset;       /* byte offset of the record in the input */
} pcapl_packet;

/* Why a packet is not an IPv4/IPv6 TCP/UDP packet (FLOWPIC.md section 1). */
#define PCAPL_SKIP_LIST(X)                                                                     \
    X(PCAPL_SKIP_NONE, "tcp/udp")                                                              \
    X(PCAPL_SKIP_LINKTYPE, "unknown link type")                                                \
    X(PCAPL_SKIP_NOT_IP, "not IP")                                                             \
    X(PCAPL_SKIP_TRUNCATED, "truncated header")                                                \
    X(PCAPL_SKIP_MALFORMED, "malformed header")                                                \
    X(PCAPL_SKIP_FRAGMENT, "non-first fragment")                                               \
    X(PCAPL_SKIP_OTHER_PROTO, "other protocol")

typedef enum pcapl_skip {
#define PCAPL_X_ENUM(name, msg) name,
    PCAPL_SKIP_LIST(PCAPL_X_ENUM)
#undef PCAPL_X_ENUM
        PCAPL_SKIP_COUNT
} pcapl_skip;

/* A decoded packet. Fields are filled as far as decoding got: a fragment or an ICMP packet has
 * its addresses and protocol, a TCP/UDP packet also its ports. */
typedef struct pcapl_decoded {
    uint8_t ip_version; /* 4 or 6; 0 when no IP header was found */
    uint8_t proto;      /* IP protocol number of the transport header (6 TCP, 17 UDP, 1 ICMP...) */
    uint16_t sport;     /* TCP/UDP ports, host order */
    uint16_t dport;
    uint32_t ip_size;   /* IPv4 total length (when 0, as TCP segmentation offload leaves it, the
                           wire length from the IP header on, as Wireshark does), IPv6 payload
                           length + 40: independent of caplen */
    uint32_t l3_offset; /* offset of the IP header in the frame */
    uint32_t l4_offset; /* offset of the transport header in the frame */
    uint8_t src[16];    /* IPv4: first 4 bytes, the rest zero */
    uint8_t dst[16];
} pcapl_decoded;

typedef struct pcapl_interface {
    uint32_t linktype;
    uint32_t snaplen;
    uint64_t ts_mult;      /* ns per tick when the resolution is 10^-k, k <= 9; else 0 */
    uint64_t ts_per_sec;   /* ticks per second (10^k or 2^k) */
    int64_t ts_offset_s;   /* if_tsoffset */
} pcapl_interface;

/* Read callback: copy up to size bytes into buf; return the number of bytes (> 0), 0 at the end
 * of the input, or a negative value on error. Short reads are fine. */
typedef long (*pcapl_read_fn)(void *user, void *buf, size_t size);

typedef struct pcapl_reader {
    /* public, read-only */
    pcapl_format format;
    int swapped;              /* file byte order differs from the host's */
    int nanosecond;           /* classic pcap: ns magic */
    uint32_t version_major, version_minor;
    uint32_t linktype;        /* classic pcap; pcapng: link type of interface 0 of the first section */
    uint32_t snaplen;         /* classic pcap */
    uint64_t records;         /* records / blocks read so far (pcapng: all blocks) */
    uint64_t packets;         /* packet records delivered */
    uint64_t sections;        /* pcapng section header blocks */
    uint64_t skipped_blocks;  /* pcapng blocks of other types */
    uint64_t bytes;           /* input bytes consumed */
    pcapl_error error;
    /* private */
    pcapl_read_fn read_fn;
    void *read_user;
#ifndef PCAPL_NO_STDIO
    FILE *file;
    int owns_file;
#endif
    const uint8_t *mem;       /* memory source (no copy) */
    uint8_t *buf;             /* stream buffer */
    size_t buf_cap;
    size_t pos, end;          /* unread bytes are data[pos .. end) */
    const uint8_t *data;      /* mem or buf */
    uint64_t data_offset;     /* input offset of data[0] */
    int at_eof;
    pcapl_interface *ifaces;
    uint32_t n_ifaces, cap_ifaces;
    uint32_t ts_mult;         /* classic pcap: 1000 (µs) or 1 (ns) */
} pcapl_reader;

/* >>api --------------------------------------------------------------------------------------- */

/* Open a capture; the file header (pcap) or first section header (pcapng) is read and checked.
 * On failure the reader holds nothing to free and r->error says why. Not thread-safe per
 * reader; different readers are independent. */
#ifndef PCAPL_NO_STDIO
PCAPL_DEF pcapl_result pcapl_open_path(pcapl_reader *r, const char *path);
PCAPL_DEF pcapl_result pcapl_open_file(pcapl_reader *r, FILE *f); /* f stays the caller's */
#endif
PCAPL_DEF pcapl_result pcapl_open_memory(pcapl_reader *r, const void *data, size_t size);
PCAPL_DEF pcapl_result pcapl_open_callback(pcapl_reader *r, pcapl_read_fn fn, void *user);

/* Next packet record: PCAPL_OK (pkt filled), PCAPL_END, or an error (r->error filled; every
 * packet before the bad record has been delivered; later calls return the same error). */
PCAPL_DEF pcapl_result pcapl_next(pcapl_reader *r, pcapl_packet *pkt);
PCAPL_DEF void pcapl_close(pcapl_reader *r);

/* Decode a frame to IP addresses, protocol, ports and IP size. Returns PCAPL_SKIP_NONE for an
 * IPv4/IPv6 TCP/UDP packet (the first IP header; only the first fragment carries ports). */
PCAPL_DEF pcapl_skip pcapl_decode(const pcapl_packet *pkt, pcapl_decoded *d);
PCAPL_DEF pcapl_skip pcapl_decode_frame(uint32_t linktype, const uint8_t *frame, uint32_t caplen,
                                        uint32_t origlen, pcapl_decoded *d);

PCAPL_DEF const char *pcapl_result_string(pcapl_result res);
PCAPL_DEF const char *pcapl_skip_string(pcapl_skip skip);
PCAPL_DEF const char *pcapl_format_string(pcapl_format format);
/* Text form of an address: dotted quad, or RFC 5952 IPv6. out needs 46 bytes. */
PCAPL_DEF void pcapl_format_address(int ip_version, const uint8_t *addr, char *out);

#ifdef __cplusplus
}
#endif
#endif /* PCAP_LITE_H */

/* >>impl ====================================================================================== */
#ifdef PCAPL_IMPLEMENTATION
#ifndef PCAPL_IMPLEMENTATION_DONE
#define PCAPL_IMPLEMENTATION_DONE

#include <string.h>

#if defined(PCAPL_MALLOC) && defined(PCAPL_REALLOC) && defined(PCAPL_FREE)
/* all three given */
#elif !defined(PCAPL_MALLOC) && !defined(PCAPL_REALLOC) && !defined(PCAPL_FREE)
#include <stdlib.h>
#define PCAPL_MALLOC(sz) malloc(sz)
#define PCAPL_REALLOC(p, sz) realloc(p, sz)
#define PCAPL_FREE(p) free(p)
#else
#error "pcap_lite.h: define all of PCAPL_MALLOC, PCAPL_REALLOC and PCAPL_FREE, or none"
#endif
#ifndef PCAPL_ASSERT
#include <assert.h>
#define PCAPL_ASSERT(x) assert(x)
#endif
/* A hint that memory will be read soon (no effect on results; nothing where unsupported). */
#if defined(__GNUC__) || defined(__clang__)
#define PCAPL__PREFETCH(addr) __builtin_prefetch(addr)
#else
#define PCAPL__PREFETCH(addr) ((void)0)
#endif
#if !defined(PCAPL_NO_STDIO) && !defined(PCAPL_FREAD)
#define PCAPL_FREAD(f, buf, n) pcapl__fread(f, buf, n)
#define PCAPL__DEFAULT_FREAD
#endif
#if !defined(PCAPL_NO_STDIO) && !defined(PCAPL_FOPEN)
#define PCAPL_FOPEN(path, mode) fopen(path, mode)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- byte helpers ---------------------------------------------------------------------------- */

static uint16_t pcapl__be16(const uint8_t *p) { return (uint16_t)((unsigned)p[0] << 8 | p[1]); }
static uint32_t pcapl__le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint32_t pcapl__be32(const uint8_t *p)
{
    return (uint32_t)p[3] | (uint32_t)p[2] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[0] << 24;
}
/* Integers in the file's byte order (swapped: the file is big-endian). */
static uint32_t pcapl__u32(const pcapl_reader *r, const uint8_t *p)
{
    return r->swapped ? pcapl__be32(p) : pcapl__le32(p);
}
static uint16_t pcapl__u16(const pcapl_reader *r, const uint8_t *p)
{
    return r->swapped ? pcapl__be16(p) : (uint16_t)(p[0] | (unsigned)p[1] << 8);
}
static uint64_t pcapl__u64(const pcapl_reader *r, const uint8_t *p)
{
    uint64_t a = pcapl__u32(r, p), b = pcapl__u32(r, p + 4);
    return r->swapped ? (a << 32 | b) : (b << 32 | a);
}

static const char *const pcapl__result_msgs[] = {
#define PCAPL_X_MSG(name, msg) msg,
    PCAPL_RESULT_LIST(PCAPL_X_MSG)
#undef PCAPL_X_MSG
};
static const char *const pcapl__skip_msgs[] = {
#define PCAPL_X_MSG(name, msg) msg,
    PCAPL_SKIP_LIST(PCAPL_X_MSG)
#undef PCAPL_X_MSG
};

PCAPL_DEF const char *pcapl_result_string(pcapl_result res)
{
    return (unsigned)res < PCAPL_RESULT_COUNT ? pcapl__result_msgs[res] : "unknown result";
}

PCAPL_DEF const char *pcapl_skip_string(pcapl_skip skip)
{
    return (unsigned)skip < PCAPL_SKIP_COUNT ? pcapl__skip_msgs[skip] : "unknown reason";
}

PCAPL_DEF const char *pcapl_format_string(pcapl_format format)
{
    switch (format) {
    case PCAPL_FORMAT_PCAP: return "pcap";
    case PCAPL_FORMAT_PCAPNG: return "pcapng";
    default: return "none";
    }
}

/* Formats a reason without stdio (so PCAPL_NO_STDIO builds keep their messages): '%u' and '%x'
 * take the next uint64_t (decimal, hex), '%s' the string; nothing else. */
static void pcapl__vformat(char *out, size_t cap, const char *fmt, const uint64_t *nums,
                           const char *str)
{
    size_t n = 0;
    for (; *fmt && n + 1 < cap; fmt++) {
        if (fmt[0] == '%' && (fmt[1] == 'u' || fmt[1] == 'x')) {
            char digits[24];
            int k = 0;
            unsigned base = fmt[1] == 'u' ? 10u : 16u;
            uint64_t v = *nums++;
            do {
                digits[k++] = "0123456789abcdef"[v % base];
                v /= base;
            } while (v);
            while (k > 0 && n + 1 < cap) out[n++] = digits[--k];
            fmt++;
        } else if (fmt[0] == '%' && fmt[1] == 's') {
            const char *s = str ? str : "";
            while (*s && n + 1 < cap) out[n++] = *s++;
            fmt++;
        } else {
            out[n++] = *fmt;
        }
    }
    out[n] = '\0';
}

/* Records the error (the first one sticks) and returns its code. A NULL fmt gives the code's
 * own message. */
static pcapl_result pcapl__fail(pcapl_reader *r, pcapl_result code, uint64_t record, uint64_t offset,
                                const char *fmt, uint64_t a, uint64_t b)
{
    uint64_t nums[2];
    if (r->error.code != PCAPL_OK) return r->error.code;
    nums[0] = a;
    nums[1] = b;
    r->error.code = code;
    r->error.record = record;
    r->error.offset = offset;
    pcapl__vformat(r->error.reason, sizeof r->error.reason, fmt ? fmt : "%s", nums,
                   pcapl_result_string(code));
    return code;
}

/* ---- source buffer ---------------------------------------------------------------------------
 * Unread input is data[pos .. end). A memory source points data at the caller's bytes; stream
 * sources refill buf, moving the unread tail to the front, and grow it (up to the record limits
 * the callers check first) when one record is larger than the buffer. */

#ifdef PCAPL__DEFAULT_FREAD
static long pcapl__fread(FILE *f, void *buf, size_t n)
{
    size_t got = fread(buf, 1, n, f);
    return got == 0 && ferror(f) ? -1 : (long)got;
}
#endif

static long pcapl__read_source(pcapl_reader *r, uint8_t *dst, size_t want)
{
#ifndef PCAPL_NO_STDIO
    if (r->file) return PCAPL_FREAD(r->file, dst, want);
#endif
    return r->read_fn(r->read_user, dst, want);
}

static int pcapl__grow(pcapl_reader *r, size_t need)
{
    size_t cap = r->buf_cap ? r->buf_cap : PCAPL_BUFFER_SIZE;
    uint8_t *nb;
    while (cap < need) cap *= 2;
    nb = (uint8_t *)PCAPL_REALLOC(r->buf, cap);
    if (!nb) {
        pcapl__fail(r, PCAPL_ERR_NOMEM, r->records + 1, r->data_offset, 0, 0, 0);
        return -1;
    }
    r->buf = nb;
    r->buf_cap = cap;
    r->data = nb;
    return 1;
}

/* Where the unread tail goes when the buffer is refilled: at most 63 bytes in, so that the
 * next read() writes to a 64-byte boundary. The kernel's copy into an unaligned destination
 * runs at a fraction of the speed (measured: 1.3x to 3x slower per byte on this project's
 * machine), and that copy is a third of the time of a whole extraction. */
#define PCAPL__READ_ALIGN 64u

static size_t pcapl__tail_lead(const uint8_t *buf, size_t tail)
{
    size_t misalign = (size_t)(((uintptr_t)buf + tail) % PCAPL__READ_ALIGN);
    return misalign ? PCAPL__READ_ALIGN - misalign : 0;
}

/* Makes need bytes available at data + pos. 1 = available, 0 = the input ends first (what
 * remains stays available), -1 = error recorded (read error or out of memory). */
static int pcapl__fill(pcapl_reader *r, size_t need)
{
    size_t tail = r->end - r->pos, lead;
    if (tail >= need) return 1;
    if (r->mem || r->at_eof) return 0;
    if (need + PCAPL__READ_ALIGN > r->buf_cap && pcapl__grow(r, need + PCAPL__READ_ALIGN) < 0) return -1;
    lead = pcapl__tail_lead(r->buf, tail);
    if (r->pos != lead) {
        if (tail) memmove(r->buf + lead, r->buf + r->pos, tail);
        r->data_offset += r->pos; /* unsigned: wraps and unwraps exactly */
        r->data_offset -= lead;
        r->pos = lead;
        r->end = lead + tail;
    }
    need += lead;
    while (r->end < need) {
        long got = pcapl__read_source(r, r->buf + r->end, r->buf_cap - r->end);
        if (got < 0 || (size_t)got > r->buf_cap - r->end) {
            pcapl__fail(r, PCAPL_ERR_READ, r->records + 1, r->data_offset + r->end,
                        "read error at offset %u", r->data_offset + r->end, 0);
            return -1;
        }
        if (got == 0) {
            r->at_eof = 1;
            return 0;
        }
        r->end += (size_t)got;
    }
    return 1;
}

static uint64_t pcapl__offset(const pcapl_reader *r) { return r->data_offset + r->pos; }

static void pcapl__consume(pcapl_reader *r, size_t n)
{
    r->pos += n;
    r->bytes += n;
}

/* ---- timestamps ------------------------------------------------------------------------------ */

/* floor(a * b / c) for a < c, without overflow: long division of the 128-bit product. */
static uint64_t pcapl__muldiv(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t a0 = a & 0xFFFFFFFFu, a1 = a >> 32, b0 = b & 0xFFFFFFFFu, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xFFFFFFFFu) + (p10 & 0xFFFFFFFFu);
    uint64_t lo = (p00 & 0xFFFFFFFFu) | (mid << 32);
    uint64_t hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
    uint64_t q = 0, rem = 0;
    int i;
    for (i = 127; i >= 0; i--) {
        uint64_t bit = i >= 64 ? (hi >> (i - 64)) & 1u : (lo >> i) & 1u;
        int carry = (rem >> 63) != 0;
        rem = rem << 1 | bit;
        q <<= 1;
        if (carry || rem >= c) {
            rem -= c;
            q |= 1u;
        }
    }
    return q;
}

/* ns = ticks / ts_per_sec + ts_offset_s seconds, clamped (and flagged) outside 0 .. 2^64-1. */
static uint64_t pcapl__ticks_to_ns(const pcapl_interface *ifc, uint64_t ticks, uint32_t *flags)
{
    const uint64_t ns_per_s = 1000000000u;
    uint64_t ns, part;
    if (ifc->ts_mult) {
        if (ticks > UINT64_MAX / ifc->ts_mult) goto clamp_high;
        ns = ticks * ifc->ts_mult;
    } else {
        part = ticks / ifc->ts_per_sec;
        if (part > UINT64_MAX / ns_per_s) goto clamp_high;
        ns = part * ns_per_s;
        part = pcapl__muldiv(ticks % ifc->ts_per_sec, ns_per_s, ifc->ts_per_sec);
        if (ns > UINT64_MAX - part) goto clamp_high;
        ns += part;
    }
    if (ifc->ts_offset_s > 0) {
        uint64_t off = (uint64_t)ifc->ts_offset_s;
        if (off > UINT64_MAX / ns_per_s || ns > UINT64_MAX - off * ns_per_s) goto clamp_high;
        ns += off * ns_per_s;
    } else if (ifc->ts_offset_s < 0) {
        uint64_t off = (uint64_t)(-(ifc->ts_offset_s + 1)) + 1u;
        if (off > UINT64_MAX / ns_per_s || ns < off * ns_per_s) {
            *flags |= PCAPL_PKT_TS_CLAMPED;
            return 0;
        }
        ns -= off * ns_per_s;
    }
    return ns;
clamp_high:
    *flags |= PCAPL_PKT_TS_CLAMPED;
    return UINT64_MAX;
}

/* ---- opening --------------------------------------------------------------------------------- */

static pcapl_result pcapl__read_header(pcapl_reader *r);

static pcapl_result pcapl__start(pcapl_reader *r)
{
    pcapl_result res = pcapl__read_header(r);
    if (res != PCAPL_OK) {
        pcapl_error saved = r->error;
        pcapl_close(r);
        r->error = saved;
    }
    return res;
}

PCAPL_DEF pcapl_result pcapl_open_memory(pcapl_reader *r, const void *data, size_t size)
{
    if (!r) return PCAPL_ERR_ARG;
    memset(r, 0, sizeof *r);
    if (!data && size) return pcapl__fail(r, PCAPL_ERR_ARG, 0, 0, "null buffer", 0, 0);
    r->mem = data ? (const uint8_t *)data : (const uint8_t *)"";
    r->data = r->mem;
    r->end = size;
    r->at_eof = 1;
    return pcapl__start(r);
}

PCAPL_DEF pcapl_result pcapl_open_callback(pcapl_reader *r, pcapl_read_fn fn, void *user)
{
    if (!r) return PCAPL_ERR_ARG;
    memset(r, 0, sizeof *r);
    if (!fn) return pcapl__fail(r, PCAPL_ERR_ARG, 0, 0, "null read callback", 0, 0);
    r->read_fn = fn;
    r->read_user = user;
    return pcapl__start(r);
}

#ifndef PCAPL_NO_STDIO
PCAPL_DEF pcapl_result pcapl_open_file(pcapl_reader *r, FILE *f)
{
    if (!r) return PCAPL_ERR_ARG;
    memset(r, 0, sizeof *r);
    if (!f) return pcapl__fail(r, PCAPL_ERR_ARG, 0, 0, "null FILE", 0, 0);
    r->file = f;
    return pcapl__start(r);
}

PCAPL_DEF pcapl_result pcapl_open_path(pcapl_reader *r, const char *path)
{
    FILE *f;
    pcapl_result res;
    if (!r) return PCAPL_ERR_ARG;
    memset(r, 0, sizeof *r);
    if (!path) return pcapl__fail(r, PCAPL_ERR_ARG, 0, 0, "null path", 0, 0);
    f = PCAPL_FOPEN(path, "rb");
    if (!f) return pcapl__fail(r, PCAPL_ERR_OPEN, 0, 0, 0, 0, 0);
    /* The reader has its own large buffer: unbuffered, each refill is one read() straight into
     * it, instead of a read() of whole stdio blocks plus one more through stdio's buffer. */
    setvbuf(f, 0, _IONBF, 0);
    res = pcapl_open_file(r, f);
    if (res != PCAPL_OK) {
        fclose(f);
        return res;
    }
    r->owns_file = 1;
    return PCAPL_OK;
}
#endif

PCAPL_DEF void pcapl_close(pcapl_reader *r)
{
    if (!r) return;
#ifndef PCAPL_NO_STDIO
    if (r->file && r->owns_file) fclose(r->file);
    r->file = 0;
    r->owns_file = 0;
#endif
    PCAPL_FREE(r->buf);
    PCAPL_FREE(r->ifaces);
    r->buf = 0;
    r->ifaces = 0;
    r->data = 0;
    r->mem = 0;
    r->n_ifaces = r->cap_ifaces = 0;
    r->pos = r->end = r->buf_cap = 0;
}

/* ---- classic pcap ---------------------------------------------------------------------------- */

#define PCAPL_MAGIC_US 0xA1B2C3D4u
#define PCAPL_MAGIC_NS 0xA1B23C4Du
#define PCAPL_MAGIC_NG 0x0A0D0D0Au
#define PCAPL_NG_BYTE_ORDER 0x1A2B3C4Du

static pcapl_result pcapl__pcap_header(pcapl_reader *r, uint32_t magic_le)
{
    const uint8_t *h;
    int got = pcapl__fill(r, 24);
    if (got < 0) return r->error.code;
    if (!got)
        return pcapl__fail(r, PCAPL_ERR_SHORT_HEADER, 0, 0,
                           "file header truncated: %u of 24 bytes", r->end - r->pos, 0);
    h = r->data + r->pos;
    r->format = PCAPL_FORMAT_PCAP;
    r->swapped = magic_le != PCAPL_MAGIC_US && magic_le != PCAPL_MAGIC_NS;
    r->nanosecond = magic_le == PCAPL_MAGIC_NS || pcapl__be32(h) == PCAPL_MAGIC_NS;
    r->ts_mult = r->nanosecond ? 1u : 1000u;
    r->version_major = pcapl__u16(r, h + 4);
    r->version_minor = pcapl__u16(r, h + 6);
    r->snaplen = pcapl__u32(r, h + 16);
    /* the upper bits may hold FCS information (LT_FCS_DATALEN_PRESENT); the type is the low 16 */
    r->linktype = pcapl__u32(r, h + 20) & 0xFFFFu;
    if (r->version_major != 2)
        return pcapl__fail(r, PCAPL_ERR_VERSION, 0, 0, "unsupported pcap version %u.%u",
                           r->version_major, r->version_minor);
    pcapl__consume(r, 24);
    return PCAPL_OK;
}

static uint32_t pcapl__swap32(uint32_t v)
{
    return v >> 24 | (v >> 8 & 0xFF00u) | (v << 8 & 0xFF0000u) | v << 24;
}

/* The four words of a record header (seconds, fraction, caplen, origlen), swapped once for the
 * whole header rather than tested field by field: this runs for every record. */
static void pcapl__record_words(const pcapl_reader *r, const uint8_t *h, uint32_t w[4])
{
    int i;
    for (i = 0; i < 4; i++) w[i] = pcapl__le32(h + 4 * i);
    if (r->swapped)
        for (i = 0; i < 4; i++) w[i] = pcapl__swap32(w[i]);
}

static pcapl_result pcapl__pcap_next(pcapl_reader *r, pcapl_packet *pkt)
{
    uint32_t caplen, w[4];
    uint64_t offset = pcapl__offset(r), record = r->records + 1;
    int got = pcapl__fill(r, 16);
    if (got < 0) return r->error.code;
    if (!got) {
        if (r->end == r->pos) return PCAPL_END;
        return pcapl__fail(r, PCAPL_ERR_TRUNCATED, record, offset,
                           "truncated record header: %u of 16 bytes", r->end - r->pos, 0);
    }
    pcapl__record_words(r, r->data + r->pos, w);
    caplen = w[2];
    if (caplen > PCAPL_MAX_CAPLEN)
        return pcapl__fail(r, PCAPL_ERR_CAPLEN, record, offset,
                           "capture length %u exceeds the limit of %u", caplen, PCAPL_MAX_CAPLEN);
    got = pcapl__fill(r, 16u + (size_t)caplen);
    if (got < 0) return r->error.code;
    if (!got)
        return pcapl__fail(r, PCAPL_ERR_TRUNCATED, record, offset, "truncated record: %u of %u bytes",
                           r->end - r->pos, 16u + (uint64_t)caplen);
    pkt->ts_ns = (uint64_t)w[0] * 1000000000u + (uint64_t)w[1] * r->ts_mult;
    pkt->caplen = caplen;
    pkt->origlen = w[3];
    pkt->interface = 0;
    pkt->linktype = r->linktype;
    pkt->flags = 0;
    pkt->data = r->data + r->pos + 16;
    pkt->record = record;
    pkt->offset = offset;
    pcapl__consume(r, 16u + (size_t)caplen);
    /* The next record's header and its frame's first bytes: the reader follows a chain of
     * lengths, which the hardware prefetcher does not, so each header would be a cache miss. */
    if (r->end - r->pos >= 64) {
        PCAPL__PREFETCH(r->data + r->pos);
        PCAPL__PREFETCH(r->data + r->pos + 63);
    }
    r->records++;
    r->packets++;
    return PCAPL_OK;
}

/* ---- pcapng ---------------------------------------------------------------------------------- */

enum {
    PCAPL_NG_SHB = 0x0A0D0D0A,
    PCAPL_NG_IDB = 1,
    PCAPL_NG_PB = 2, /* the obsolete packet block */
    PCAPL_NG_SPB = 3,
    PCAPL_NG_EPB = 6,
    PCAPL_NG_OPT_ENDOFOPT = 0,
    PCAPL_NG_OPT_TSRESOL = 9,
    PCAPL_NG_OPT_TSOFFSET = 14
};

static pcapl_result pcapl__ng_tsresol(pcapl_reader *r, pcapl_interface *ifc, uint32_t v, uint64_t record,
                                      uint64_t offset)
{
    uint32_t k = v & 0x7Fu, i;
    uint64_t per = 1;
    if (v & 0x80u) { /* 2^-k */
        if (k > 63)
            return pcapl__fail(r, PCAPL_ERR_TSRESOL, record, offset,
                               "if_tsresol 2^-%u is finer than 64 bits can count", k, 0);
        ifc->ts_per_sec = (uint64_t)1 << k;
        ifc->ts_mult = k == 0 ? 1000000000u : 0;
        return PCAPL_OK;
    }
    if (k > 19)
        return pcapl__fail(r, PCAPL_ERR_TSRESOL, record, offset,
                           "if_tsresol 10^-%u is finer than 64 bits can count", k, 0);
    for (i = 0; i < k; i++) per *= 10u;
    ifc->ts_per_sec = per;
    ifc->ts_mult = k <= 9 ? 1000000000u / per : 0;
    return PCAPL_OK;
}

/* Options of an IDB: one bounds-checked cursor over [p, end). */
static pcapl_result pcapl__ng_idb_options(pcapl_reader *r, pcapl_interface *ifc, const uint8_t *p,
                                          const uint8_t *end, uint64_t record, uint64_t offset)
{
    int seen_resol = 0, seen_offset = 0;
    pcapl_result res;
    while (end - p >= 4) {
        uint32_t code = pcapl__u16(r, p), len = pcapl__u16(r, p + 2);
        uint32_t padded = (len + 3u) & ~3u;
        const uint8_t *val = p + 4;
        if (code == PCAPL_NG_OPT_ENDOFOPT) break;
        if ((size_t)(end - val) < padded)
            return pcapl__fail(r, PCAPL_ERR_OPTION, record, offset,
                               "option %u of length %u runs past the end of the block", code, len);
        if (code == PCAPL_NG_OPT_TSRESOL) {
            if (len != 1)
                return pcapl__fail(r, PCAPL_ERR_TSRESOL, record, offset,
                                   "if_tsresol has length %u, not 1", len, 0);
            if (seen_resol++)
                return pcapl__fail(r, PCAPL_ERR_TSRESOL, record, offset,
                                   "more than one if_tsresol option", 0, 0);
            res = pcapl__ng_tsresol(r, ifc, val[0], record, offset);
            if (res != PCAPL_OK) return res;
        } else if (code == PCAPL_NG_OPT_TSOFFSET) {
            if (len != 8)
                return pcapl__fail(r, PCAPL_ERR_OPTION, record, offset,
                                   "if_tsoffset has length %u, not 8", len, 0);
            if (seen_offset++)
                return pcapl__fail(r, PCAPL_ERR_OPTION, record, offset,
                                   "more than one if_tsoffset option", 0, 0);
            ifc->ts_offset_s = (int64_t)pcapl__u64(r, val);
        }
        p = val + padded;
    }
    return PCAPL_OK;
}

static pcapl_result pcapl__ng_section(pcapl_reader *r, const uint8_t *b, uint32_t len, uint64_t record,
                                      uint64_t offset)
{
    if (len < 28)
        return pcapl__fail(r, PCAPL_ERR_BLOCK_SMALL, record, offset,
                           "section header block length %u is less than 28", len, 0);
    r->version_major = pcapl__u16(r, b + 12);
    r->version_minor = pcapl__u16(r, b + 14);
    if (r->version_major != 1)
        return pcapl__fail(r, PCAPL_ERR_VERSION, record, offset, "unsupported pcapng version %u.%u",
                           r->version_major, r->version_minor);
    r->n_ifaces = 0; /* interface ids are per section */
    r->sections++;
    return PCAPL_OK;
}

static pcapl_result pcapl__ng_interface(pcapl_reader *r, const uint8_t *b, uint32_t len, uint64_t record,
                                        uint64_t offset)
{
    pcapl_interface ifc;
    pcapl_result res;
    if (len < 20)
        return pcapl__fail(r, PCAPL_ERR_BLOCK_SMALL, record, offset,
                           "interface description block length %u is less than 20", len, 0);
    if (r->n_ifaces >= PCAPL_MAX_INTERFACES)
        return pcapl__fail(r, PCAPL_ERR_INTERFACE_LIMIT, record, offset,
                           "more than %u interfaces in one section", PCAPL_MAX_INTERFACES, 0);
    memset(&ifc, 0, sizeof ifc);
    ifc.linktype = pcapl__u16(r, b + 8);
    ifc.snaplen = pcapl__u32(r, b + 12);
    ifc.ts_mult = 1000u; /* default resolution: microseconds */
    ifc.ts_per_sec = 1000000u;
    res = pcapl__ng_idb_options(r, &ifc, b + 16, b + len - 4, record, offset);
    if (res != PCAPL_OK) return res;
    if (r->n_ifaces == r->cap_ifaces) {
        uint32_t cap = r->cap_ifaces ? r->cap_ifaces * 2 : 8;
        pcapl_interface *ni = (pcapl_interface *)PCAPL_REALLOC(r->ifaces, (size_t)cap * sizeof *ni);
        if (!ni) return pcapl__fail(r, PCAPL_ERR_NOMEM, record, offset, 0, 0, 0);
        r->ifaces = ni;
        r->cap_ifaces = cap;
    }
    if (r->sections == 1 && r->n_ifaces == 0) r->linktype = ifc.linktype;
    r->ifaces[r->n_ifaces++] = ifc;
    return PCAPL_OK;
}

/* EPB, SPB or obsolete PB -> pkt. */
static pcapl_result pcapl__ng_packet(pcapl_reader *r, uint32_t type, const uint8_t *b, uint32_t len,
                                     uint64_t record, uint64_t offset, pcapl_packet *pkt)
{
    uint32_t iface, caplen, origlen, header, room;
    uint64_t ticks = 0;
    const pcapl_interface *ifc;
    pkt->flags = 0;
    if (type == PCAPL_NG_SPB) {
        header = 12;
        if (len < 16)
            return pcapl__fail(r, PCAPL_ERR_BLOCK_SMALL, record, offset,
                               "simple packet block length %u is less than 16", len, 0);
        iface = 0;
        origlen = caplen = pcapl__u32(r, b + 8);
        pkt->flags = PCAPL_PKT_NO_TIMESTAMP;
    } else {
        header = 28;
        if (len < 32)
            return pcapl__fail(r, PCAPL_ERR_BLOCK_SMALL, record, offset,
                               "packet block length %u is less than 32", len, 0);
        iface = type == PCAPL_NG_EPB ? pcapl__u32(r, b + 8) : pcapl__u16(r, b + 8);
        ticks = (uint64_t)pcapl__u32(r, b + 12) << 32 | pcapl__u32(r, b + 16);
        caplen = pcapl__u32(r, b + 20);
        origlen = pcapl__u32(r, b + 24);
    }
    room = len - 4 - header;
    if (iface >= r->n_ifaces)
        return pcapl__fail(r, PCAPL_ERR_INTERFACE, record, offset,
                           "packet on interface %u, but the section defines %u", iface, r->n_ifaces);
    ifc = &r->ifaces[iface];
    if (type == PCAPL_NG_SPB) {
        /* the captured length is implied: the least of wire length, snap length and block room */
        if (ifc->snaplen && caplen > ifc->snaplen) caplen = ifc->snaplen;
        if (caplen > room) caplen = room;
    } else if (caplen > room) {
        return pcapl__fail(r, PCAPL_ERR_BLOCK_BODY, record, offset,
                           "capture length %u exceeds the %u bytes of the block body", caplen, room);
    }
    pkt->ts_ns = type == PCAPL_NG_SPB ? 0 : pcapl__ticks_to_ns(ifc, ticks, &pkt->flags);
    pkt->caplen = caplen;
    pkt->origlen = origlen;
    pkt->interface = iface;
    pkt->linktype = ifc->linktype;
    pkt->data = b + header;
    pkt->record = record;
    pkt->offset = offset;
    return PCAPL_OK;
}

/* The block header checks in libpcap's order; returns the checked length or 0 on error. */
static uint32_t pcapl__ng_block_length(pcapl_reader *r, const uint8_t *b, uint64_t record, uint64_t offset)
{
    uint32_t len;
    if (pcapl__le32(b) == PCAPL_NG_SHB) {
        /* each section sets its own byte order */
        uint32_t bom = pcapl__le32(b + 8);
        if (bom == PCAPL_NG_BYTE_ORDER)
            r->swapped = 0;
        else if (pcapl__be32(b + 8) == PCAPL_NG_BYTE_ORDER)
            r->swapped = 1;
        else
            return pcapl__fail(r, PCAPL_ERR_BYTE_ORDER, record, offset,
                               "section header byte-order magic is 0x%x, not 0x1a2b3c4d", bom, 0),
                   0;
    }
    len = pcapl__u32(r, b + 4);
    if (len < 12)
        pcapl__fail(r, PCAPL_ERR_BLOCK_SMALL, record, offset, "block length %u is less than 12", len, 0);
    else if (len % 4)
        pcapl__fail(r, PCAPL_ERR_BLOCK_ALIGN, record, offset, "block length %u is not a multiple of 4",
                    len, 0);
    else if (len > PCAPL_MAX_BLOCK)
        pcapl__fail(r, PCAPL_ERR_BLOCK_LARGE, record, offset, "block length %u exceeds the limit of %u",
                    len, PCAPL_MAX_BLOCK);
    else
        return len;
    return 0;
}

/* Reads one block; PCAPL_OK with *is_packet set when pkt was filled. */
static pcapl_result pcapl__ng_block(pcapl_reader *r, pcapl_packet *pkt, int *is_packet)
{
    const uint8_t *b;
    uint32_t type, len;
    uint64_t offset = pcapl__offset(r), record = r->records + 1;
    pcapl_result res = PCAPL_OK;
    int got = pcapl__fill(r, 12);
    *is_packet = 0;
    if (got < 0) return r->error.code;
    if (!got) {
        if (r->end == r->pos) return PCAPL_END;
        return pcapl__fail(r, PCAPL_ERR_TRUNCATED, record, offset,
                           "truncated block header: %u of 12 bytes", r->end - r->pos, 0);
    }
    len = pcapl__ng_block_length(r, r->data + r->pos, record, offset);
    if (!len) return r->error.code;
    got = pcapl__fill(r, len);
    if (got < 0) return r->error.code;
    if (!got)
        return pcapl__fail(r, PCAPL_ERR_TRUNCATED, record, offset, "truncated block: %u of %u bytes",
                           r->end - r->pos, len);
    b = r->data + r->pos;
    type = pcapl__u32(r, b);
    if (pcapl__u32(r, b + len - 4) != len)
        return pcapl__fail(r, PCAPL_ERR_BLOCK_TRAILER, record, offset,
                           "block trailer length %u differs from header length %u",
                           pcapl__u32(r, b + len - 4), len);
    switch (type) {
    case PCAPL_NG_SHB: res = pcapl__ng_section(r, b, len, record, offset); break;
    case PCAPL_NG_IDB: res = pcapl__ng_interface(r, b, len, record, offset); break;
    case PCAPL_NG_EPB:
    case PCAPL_NG_SPB:
    case PCAPL_NG_PB:
        res = pcapl__ng_packet(r, type, b, len, record, offset, pkt);
        *is_packet = res == PCAPL_OK;
        break;
    default: r->skipped_blocks++; break;
    }
    if (res != PCAPL_OK) return res;
    pcapl__consume(r, len);
    r->records++;
    return PCAPL_OK;
}

static pcapl_result pcapl__read_header(pcapl_reader *r)
{
    uint32_t le, be;
    int got = pcapl__fill(r, 4);
    if (got < 0) return r->error.code;
    if (!got) {
        if (r->end == r->pos) return pcapl__fail(r, PCAPL_ERR_EMPTY, 0, 0, 0, 0, 0);
        return pcapl__fail(r, PCAPL_ERR_SHORT_HEADER, 0, 0, "file is only %u bytes long",
                           r->end - r->pos, 0);
    }
    le = pcapl__le32(r->data + r->pos);
    be = pcapl__be32(r->data + r->pos);
    if (le == PCAPL_MAGIC_NG) {
        pcapl_packet unused;
        int is_packet;
        r->format = PCAPL_FORMAT_PCAPNG;
        return pcapl__ng_block(r, &unused, &is_packet);
    }
    if (le == PCAPL_MAGIC_US || le == PCAPL_MAGIC_NS || be == PCAPL_MAGIC_US || be == PCAPL_MAGIC_NS)
        return pcapl__pcap_header(r, le);
    return pcapl__fail(r, PCAPL_ERR_NOT_CAPTURE, 0, 0, "not a pcap or pcapng file (magic 0x%x)", be, 0);
}

PCAPL_DEF pcapl_result pcapl_next(pcapl_reader *r, pcapl_packet *pkt)
{
    if (!r || !pkt) return PCAPL_ERR_ARG;
    if (r->error.code != PCAPL_OK) return r->error.code;
    if (r->format == PCAPL_FORMAT_PCAP) return pcapl__pcap_next(r, pkt);
    if (r->format == PCAPL_FORMAT_PCAPNG) {
        for (;;) {
            int is_packet;
            pcapl_result res = pcapl__ng_block(r, pkt, &is_packet);
            if (res != PCAPL_OK) return res;
            if (is_packet) {
                r->packets++;
                return PCAPL_OK;
            }
        }
    }
    return PCAPL_ERR_ARG;
}

/* ---- decoder --------------------------------------------------------------------------------- */

enum {
    PCAPL_ETH_IPV4 = 0x0800,
    PCAPL_ETH_IPV6 = 0x86DD,
    PCAPL_ETH_VLAN = 0x8100,
    PCAPL_ETH_QINQ = 0x88A8,
    PCAPL_ETH_QINQ_OLD = 0x9100,
    PCAPL_ETH_PPPOE = 0x8864,
    PCAPL_ETH_MPLS = 0x8847,
    PCAPL_ETH_MPLS_MC = 0x8848
};

/* Link results besides the IP version 4 / 6. */
enum { PCAPL__NOT_IP = 0, PCAPL__TRUNCATED = -1, PCAPL__MALFORMED = -2, PCAPL__UNKNOWN_LINK = -3 };

/* IP version after an MPLS label stack at off (guessed from the first nibble, as tshark does). */
static int pcapl__walk_mpls(const uint8_t *f, uint32_t caplen, uint32_t off, uint32_t *ip_off)
{
    int labels = 0;
    for (;;) {
        int bottom;
        if (++labels > PCAPL_MAX_VLAN_TAGS) return PCAPL__MALFORMED;
        if (caplen - off < 4) return PCAPL__TRUNCATED;
        bottom = f[off + 2] & 1;
        off += 4;
        if (bottom) break;
    }
    if (caplen - off < 1) return PCAPL__TRUNCATED;
    *ip_off = off;
    return f[off] >> 4 == 4 ? 4 : f[off] >> 4 == 6 ? 6 : PCAPL__NOT_IP;
}

/* The ethertype that precedes offset off -> IP version and offset, through VLAN tags, a PPPoE
 * session header and MPLS labels. */
static int pcapl__walk_ethertype(const uint8_t *f, uint32_t caplen, uint32_t ethertype, uint32_t off,
                                 uint32_t *ip_off)
{
    int tags = 0;
    for (;;) {
        switch (ethertype) {
        case PCAPL_ETH_IPV4: *ip_off = off; return 4;
        case PCAPL_ETH_IPV6: *ip_off = off; return 6;
        case PCAPL_ETH_VLAN:
        case PCAPL_ETH_QINQ:
        case PCAPL_ETH_QINQ_OLD:
            if (++tags > PCAPL_MAX_VLAN_TAGS) return PCAPL__MALFORMED;
            if (caplen - off < 4) return PCAPL__TRUNCATED;
            ethertype = pcapl__be16(f + off + 2);
            off += 4;
            break;
        case PCAPL_ETH_PPPOE: {
            uint32_t ppp;
            if (caplen - off < 8) return PCAPL__TRUNCATED;
            ppp = pcapl__be16(f + off + 6);
            off += 8;
            if (ppp == 0x0021) ethertype = PCAPL_ETH_IPV4;
            else if (ppp == 0x0057) ethertype = PCAPL_ETH_IPV6;
            else return PCAPL__NOT_IP;
            break;
        }
        case PCAPL_ETH_MPLS:
        case PCAPL_ETH_MPLS_MC: return pcapl__walk_mpls(f, caplen, off, ip_off);
        default: return PCAPL__NOT_IP;
        }
    }
}

static int pcapl__bsd_family(uint32_t family)
{
    if (family == 2) return 4;                                                   /* AF_INET */
    if (family == 10 || family == 24 || family == 28 || family == 30) return 6; /* AF_INET6 */
    return PCAPL__NOT_IP;
}

/* DLT_NULL: a BSD address family in the capturing host's byte order, sometimes only 16 bits
 * of it, or a Linux tun header (flags, ethertype). Decided as Wireshark's packet-null.c does,
 * so that flowpic and tshark agree on the same files: a value above 1500 is an ethertype. */
static int pcapl__null_header(const uint8_t *f, uint32_t caplen, uint32_t *ip_off)
{
    uint32_t h;
    if (caplen < 4) return PCAPL__TRUNCATED;
    h = pcapl__le32(f);
    if (h & 0xFFFF0000u) {
        if ((h & 0xFF000000u) == 0 && (h & 0x00FF0000u) < 0x00060000u) h >>= 16;
        else h = pcapl__be32(f);
    } else if ((h & 0xFFu) == 0 && (h & 0xFF00u) < 0x0600u) {
        h = (h >> 8) & 0xFFu;
    }
    if (h > 1500) return pcapl__walk_ethertype(f, caplen, h & 0xFFFFu, 4, ip_off);
    *ip_off = 4;
    return pcapl__bsd_family(h);
}

/* Link-layer header -> IP version (4, 6) and offset, or a PCAPL__ code. */
static int pcapl__link(uint32_t linktype, const uint8_t *f, uint32_t caplen, uint32_t *ip_off)
{
    switch (linktype) {
    case PCAPL_LINK_ETHERNET:
        if (caplen < 14) return PCAPL__TRUNCATED;
        return pcapl__walk_ethertype(f, caplen, pcapl__be16(f + 12), 14, ip_off);
    case PCAPL_LINK_RAW_12:
    case PCAPL_LINK_RAW_14:
    case PCAPL_LINK_RAW:
    case PCAPL_LINK_IPV4:
    case PCAPL_LINK_IPV6:
        if (caplen < 1) return PCAPL__TRUNCATED;
        *ip_off = 0;
        return f[0] >> 4 == 4 ? 4 : f[0] >> 4 == 6 ? 6 : PCAPL__NOT_IP;
    case PCAPL_LINK_SLL:
        if (caplen < 16) return PCAPL__TRUNCATED;
        return pcapl__walk_ethertype(f, caplen, pcapl__be16(f + 14), 16, ip_off);
    case PCAPL_LINK_SLL2:
        if (caplen < 20) return PCAPL__TRUNCATED;
        return pcapl__walk_ethertype(f, caplen, pcapl__be16(f), 20, ip_off);
    case PCAPL_LINK_NULL: return pcapl__null_header(f, caplen, ip_off);
    case PCAPL_LINK_LOOP:
        if (caplen < 4) return PCAPL__TRUNCATED;
        *ip_off = 4;
        return pcapl__bsd_family(pcapl__be32(f)); /* network byte order */
    default: return PCAPL__UNKNOWN_LINK;
    }
}

static pcapl_skip pcapl__ports(const uint8_t *f, uint32_t caplen, uint32_t l4, pcapl_decoded *d)
{
    d->l4_offset = l4;
    if (d->proto != 6 && d->proto != 17) return PCAPL_SKIP_OTHER_PROTO;
    if (l4 > caplen || caplen - l4 < 4) return PCAPL_SKIP_TRUNCATED;
    d->sport = pcapl__be16(f + l4);
    d->dport = pcapl__be16(f + l4 + 2);
    return PCAPL_SKIP_NONE;
}

static pcapl_skip pcapl__ipv4(const uint8_t *f, uint32_t caplen, uint32_t origlen, uint32_t off,
                              pcapl_decoded *d)
{
    const uint8_t *ip = f + off;
    uint32_t ihl;
    if (caplen - off < 20) return PCAPL_SKIP_TRUNCATED;
    if (ip[0] >> 4 != 4) return PCAPL_SKIP_MALFORMED;
    ihl = (ip[0] & 15u) * 4u;
    if (ihl < 20) return PCAPL_SKIP_MALFORMED;
    d->ip_version = 4;
    d->ip_size = pcapl__be16(ip + 2);
    if (d->ip_size == 0 && origlen > off) d->ip_size = origlen - off;
    d->proto = ip[9];
    memcpy(d->src, ip + 12, 4);
    memcpy(d->dst, ip + 16, 4);
    if (pcapl__be16(ip + 6) & 0x1FFFu) return PCAPL_SKIP_FRAGMENT;
    return pcapl__ports(f, caplen, off + ihl, d);
}

static pcapl_skip pcapl__ipv6(const uint8_t *f, uint32_t caplen, uint32_t off, pcapl_decoded *d)
{
    const uint8_t *ip = f + off;
    uint32_t next, l4 = off + 40;
    int headers = 0;
    if (caplen - off < 40) return PCAPL_SKIP_TRUNCATED;
    if (ip[0] >> 4 != 6) return PCAPL_SKIP_MALFORMED;
    d->ip_version = 6;
    d->ip_size = pcapl__be16(ip + 4) + 40u;
    memcpy(d->src, ip + 8, 16);
    memcpy(d->dst, ip + 24, 16);
    next = ip[6];
    /* hop-by-hop 0, routing 43, fragment 44, AH 51, destination options 60 */
    while (next == 0 || next == 43 || next == 44 || next == 51 || next == 60) {
        const uint8_t *h = f + l4;
        d->proto = (uint8_t)next;
        if (++headers > 16) return PCAPL_SKIP_MALFORMED;
        if (l4 > caplen || caplen - l4 < 8) return PCAPL_SKIP_TRUNCATED;
        if (next == 44) {
            if (pcapl__be16(h + 2) & 0xFFF8u) { /* non-first fragment: no transport header */
                d->proto = h[0];
                return PCAPL_SKIP_FRAGMENT;
            }
            l4 += 8;
        } else if (next == 51) {
            l4 += (h[1] + 2u) * 4u;
        } else {
            l4 += (h[1] + 1u) * 8u;
        }
        next = h[0];
    }
    d->proto = (uint8_t)next;
    return pcapl__ports(f, caplen, l4, d);
}

PCAPL_DEF pcapl_skip pcapl_decode_frame(uint32_t linktype, const uint8_t *frame, uint32_t caplen,
                                        uint32_t origlen, pcapl_decoded *d)
{
    uint32_t ip_off = 0;
    int version;
    memset(d, 0, sizeof *d);
    version = pcapl__link(linktype, frame, caplen, &ip_off);
    switch (version) {
    case 4: d->l3_offset = ip_off; return pcapl__ipv4(frame, caplen, origlen, ip_off, d);
    case 6: d->l3_offset = ip_off; return pcapl__ipv6(frame, caplen, ip_off, d);
    case PCAPL__UNKNOWN_LINK: return PCAPL_SKIP_LINKTYPE;
    case PCAPL__MALFORMED: return PCAPL_SKIP_MALFORMED;
    case PCAPL__TRUNCATED: return PCAPL_SKIP_TRUNCATED;
    default: return PCAPL_SKIP_NOT_IP;
    }
}

PCAPL_DEF pcapl_skip pcapl_decode(const pcapl_packet *pkt, pcapl_decoded *d)
{
    return pcapl_decode_frame(pkt->linktype, pkt->data, pkt->caplen, pkt->origlen, d);
}

/* ---- address text ---------------------------------------------------------------------------- */

static char *pcapl__put_dec(char *o, unsigned v)
{
    char tmp[4];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    while (n) *o++ = tmp[--n];
    return o;
}

static char *pcapl__put_hex(char *o, unsigned v)
{
    int shift = 12;
    while (shift > 0 && ((v >> shift) & 15u) == 0) shift -= 4;
    for (; shift >= 0; shift -= 4) *o++ = "0123456789abcdef"[(v >> shift) & 15u];
    return o;
}

PCAPL_DEF void pcapl_format_address(int ip_version, const uint8_t *addr, char *out)
{
    char *o = out;
    unsigned g[8];
    int i, best = -1, best_len = 0, run = 0;
    if (ip_version == 4) {
        for (i = 0; i < 4; i++) {
            if (i) *o++ = '.';
            o = pcapl__put_dec(o, addr[i]);
        }
        *o = '\0';
        return;
    }
    /* RFC 5952: lower case, no leading zeros, the longest run (>= 2) of zero groups as "::"
     * (the first one if tied), IPv4-mapped addresses (::ffff:0:0/96) in dotted form */
    for (i = 0; i < 8; i++) g[i] = (unsigned)addr[2 * i] << 8 | addr[2 * i + 1];
    for (i = 0; i < 8; i++) {
        run = g[i] == 0 ? run + 1 : 0;
        if (run > best_len) {
            best_len = run;
            best = i - run + 1;
        }
    }
    if (best_len < 2) best = -1;
    if (best == 0 && best_len == 5 && g[5] == 0xFFFFu) {
        memcpy(o, "::ffff:", 7);
        pcapl_format_address(4, addr + 12, o + 7);
        return;
    }
    for (i = 0; i < 8; i++) {
        if (i == best) {
            *o++ = ':';
            *o++ = ':';
            i += best_len - 1;
            continue;
        }
        if (i && o[-1] != ':') *o++ = ':';
        o = pcapl__put_hex(o, g[i]);
    }
    *o = '\0';
}

#ifdef __cplusplus
}
#endif
#endif /* PCAPL_IMPLEMENTATION_DONE */
#endif /* PCAPL_IMPLEMENTATION */

/*
MIT License

Copyright (c) 2026 the flowpic authors

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
*/
