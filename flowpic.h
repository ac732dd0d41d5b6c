/* flowpic.h - encrypted traffic classification the FlowPic way, in one C99 header.
 *
 * Every flow's packets become a picture (a 2-D histogram of packet size against arrival time)
 * and a LeNet-5 style CNN names what the flow is, without looking at payloads.
 *
 * In ONE translation unit:
 *
 *     #define FLOWPIC_IMPLEMENTATION
 *     #include "flowpic.h"       // also compiles pcap_lite.h in (see FLOWPIC_NO_PCAP_LITE_IMPL)
 *
 * Example: count the packets of every unidirectional flow of a capture.
 *
 *     pcapl_reader r;  pcapl_packet pkt;  pcapl_decoded d;
 *     flowpic_flowtable ft;  flowpic_packet p;  size_t i;
 *     if (pcapl_open_path(&r, "trace.pcap") != PCAPL_OK) return 1;
 *     flowpic_flowtable_init(&ft, 0, FLOWPIC_DEFAULT_MAX_FLOWS);
 *     while (pcapl_next(&r, &pkt) == PCAPL_OK) {
 *         if (pcapl_decode(&pkt, &d) != PCAPL_SKIP_NONE) continue;
 *         flowpic_packet_from_decoded(&p, pkt.ts_ns, &d);
 *         if (flowpic_flowtable_add(&ft, &p, 0) != FLOWPIC_OK) break;
 *     }
 *     for (i = 0; i < ft.count; i++)
 *         printf("%llu packets\n", (unsigned long long)ft.flows[i].packets);
 *     flowpic_flowtable_free(&ft);
 *     pcapl_close(&r);
 *
 * Contents (grep '>>' for the map)
 *   >>config      configuration macros, version, limits
 *   >>results     result codes
 *   >>packets     the packet a flow table takes (from pcap_lite or the caller's own loop)
 *   >>flowtable   flows keyed by 5-tuple, uni- or bidirectional
 *   >>impl        implementation, in the same order
 *
 * Configuration (define before including)
 *   FLOWPIC_MALLOC(sz) / FLOWPIC_REALLOC(p, sz) / FLOWPIC_FREE(p)   allocator (all or none;
 *                                 also used by pcap_lite unless PCAPL_MALLOC... are defined)
 *   FLOWPIC_ASSERT(x)             assertion (default: assert)
 *   FLOWPIC_STATIC                every function static (also makes pcap_lite static)
 *   FLOWPIC_NO_STDIO              no FILE* / path functions (also PCAPL_NO_STDIO)
 *   FLOWPIC_NO_PCAP_LITE_IMPL     do not compile pcap_lite.h's implementation here
 *   FLOWPIC_DEFAULT_MAX_FLOWS     default cap on live flows (16 M)
 *
 * Thread safety: no global state; every object is the caller's. Functions on different objects
 * may run concurrently; one object is used by one thread at a time.
 *
 * License: MIT (see the end of pcap_lite.h; the same terms apply).
 */
#ifndef FLOWPIC_H
#define FLOWPIC_H

/* >>config ------------------------------------------------------------------------------------ */

#define FLOWPIC_VERSION_MAJOR 0
#define FLOWPIC_VERSION_MINOR 1
#define FLOWPIC_VERSION_PATCH 0
#define FLOWPIC_VERSION_STRING "0.1.0"

#ifdef FLOWPIC_STATIC
#define FLOWPIC_DEF static
#ifndef PCAPL_STATIC
#define PCAPL_STATIC
#endif
#else
#define FLOWPIC_DEF extern
#endif

#if defined(FLOWPIC_NO_STDIO) && !defined(PCAPL_NO_STDIO)
#define PCAPL_NO_STDIO
#endif

#if defined(FLOWPIC_MALLOC) && !defined(PCAPL_MALLOC)
#define PCAPL_MALLOC(sz) FLOWPIC_MALLOC(sz)
#define PCAPL_REALLOC(p, sz) FLOWPIC_REALLOC(p, sz)
#define PCAPL_FREE(p) FLOWPIC_FREE(p)
#endif

#include "pcap_lite.h"

#ifndef FLOWPIC_DEFAULT_MAX_FLOWS
#define FLOWPIC_DEFAULT_MAX_FLOWS (16u * 1024u * 1024u) /* 16 M flows: about 1.5 GB of table */
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* >>results ----------------------------------------------------------------------------------- */

/* Result codes in ranges: general, I/O, format, limits. */
#define FLOWPIC_RESULT_LIST(X)                                                                 \
    X(FLOWPIC_OK, "success")                                                                   \
    X(FLOWPIC_ERR_ARG, "invalid argument")                                                     \
    X(FLOWPIC_ERR_NOMEM, "out of memory")                                                      \
    X(FLOWPIC_ERR_IO, "input/output error")                                                    \
    X(FLOWPIC_ERR_FORMAT, "bad file format")                                                   \
    X(FLOWPIC_ERR_LIMIT, "limit exceeded")                                                     \
    X(FLOWPIC_ERR_FLOW_LIMIT, "too many live flows")

typedef enum flowpic_result {
#define FLOWPIC_X_ENUM(name, msg) name,
    FLOWPIC_RESULT_LIST(FLOWPIC_X_ENUM)
#undef FLOWPIC_X_ENUM
        FLOWPIC_RESULT_COUNT
} flowpic_result;

FLOWPIC_DEF const char *flowpic_result_string(flowpic_result res);
FLOWPIC_DEF const char *flowpic_version_string(void);

/* >>packets ----------------------------------------------------------------------------------- */

/* A flow key: (protocol, source address, source port, destination address, destination port).
 * IPv4 addresses use the first 4 bytes; unused bytes are zero so keys compare with memcmp. */
typedef struct flowpic_key {
    uint8_t src[16];
    uint8_t dst[16];
    uint16_t sport;
    uint16_t dport;
    uint8_t proto;      /* 6 TCP, 17 UDP */
    uint8_t ip_version; /* 4 or 6 */
    uint8_t reserved[2];
} flowpic_key;

/* What flowpic needs of a packet: two numbers and a key. A sensor with its own capture loop
 * fills this directly. */
typedef struct flowpic_packet {
    uint64_t ts_ns;   /* capture time, ns */
    uint32_t size;    /* IP packet size (IPv4 total length, IPv6 payload length + 40) */
    flowpic_key key;
} flowpic_packet;

FLOWPIC_DEF void flowpic_packet_from_decoded(flowpic_packet *p, uint64_t ts_ns, const pcapl_decoded *d);
FLOWPIC_DEF void flowpic_key_reverse(flowpic_key *out, const flowpic_key *in);

/* >>flowtable --------------------------------------------------------------------------------- */

typedef struct flowpic_flow {
    flowpic_key key;    /* the key of the flow's first packet */
    uint64_t packets;
    uint64_t bytes;     /* sum of IP packet sizes */
    uint64_t first_ns;  /* time of the first and last packet in capture order */
    uint64_t last_ns;
} flowpic_flow;

/* Flows in first-seen order (flows[0 .. count)), indexed by an open-addressing hash table.
 * Memory grows with the number of flows (about 100 bytes each), never beyond max_flows. */
typedef struct flowpic_flowtable {
    flowpic_flow *flows;
    size_t count;
    size_t cap;
    uint32_t *slots;    /* flow index + 1; 0 = empty */
    size_t slot_mask;
    int bidirectional;  /* a packet of the reverse direction joins the flow of its first packet */
    size_t max_flows;
} flowpic_flowtable;

FLOWPIC_DEF flowpic_result flowpic_flowtable_init(flowpic_flowtable *ft, int bidirectional, size_t max_flows);
FLOWPIC_DEF void flowpic_flowtable_free(flowpic_flowtable *ft);
/* Counts p in its flow (created when new). *flow_index (optional) receives the flow's index.
 * FLOWPIC_ERR_FLOW_LIMIT when a new flow would exceed max_flows (nothing is counted). */
FLOWPIC_DEF flowpic_result flowpic_flowtable_add(flowpic_flowtable *ft, const flowpic_packet *p,
                                                 size_t *flow_index);

/* >>blocks ------------------------------------------------------------------------------------
 * A block is one time window of one flow's packets (FLOWPIC.md section 2). Its packets are
 * stored as (time offset from the window start, size) in 8 bytes each. */

typedef enum flowpic_preset {
    FLOWPIC_PRESET_PAPER,    /* windows [t0 + kS, t0 + kS + L), >= min_packets, fixed time axis */
    FLOWPIC_PRESET_ORIGINAL, /* the authors' code: closed 60 s windows, > 10 packets, > 50 s span,
                                time axis stretched to the window's own span, tail dropped */
    FLOWPIC_PRESET_TCBENCH,  /* both directions, first 15 s only, sizes clipped, counts clip 255 */
    FLOWPIC_PRESET_COUNT
} flowpic_preset;

typedef enum flowpic_size_policy { FLOWPIC_SIZE_DROP, FLOWPIC_SIZE_CLIP } flowpic_size_policy;

typedef struct flowpic_block_config {
    flowpic_preset preset;
    uint64_t block_ns;        /* L: window length */
    uint64_t step_ns;         /* S: step between window starts (S < L overlaps) */
    uint32_t min_packets;     /* a window is a block when it holds at least this many */
    uint32_t max_size;        /* larger packets are dropped or clipped first (1500) */
    flowpic_size_policy size_policy;
    int bidirectional;
    uint64_t idle_timeout_ns; /* 0: none; a silence this long ends a flow, the next packet
                                 starts it again (flow_generation + 1) */
    size_t max_flows;         /* cap on flows: FLOWPIC_ERR_FLOW_LIMIT beyond it */
} flowpic_block_config;

/* Limits, with the reason. */
#define FLOWPIC_MAX_OFFSET_NS ((1ull << 48) - 1) /* 48-bit offsets: windows up to 78 hours */
#define FLOWPIC_MAX_OPEN_WINDOWS 4096            /* L / S: overlapping windows open at once */
#define FLOWPIC_MAX_BLOCK_PACKETS (1u << 28)     /* packets in one block (2 GB of pairs) */

/* One packet of a block: time offset (ns) in the high 48 bits, size in the low 16. */
typedef uint64_t flowpic_pkt;
#define FLOWPIC_PKT(offset_ns, size) ((uint64_t)(offset_ns) << 16 | (uint64_t)(size))
#define FLOWPIC_PKT_OFFSET(p) ((uint64_t)(p) >> 16)
#define FLOWPIC_PKT_SIZE(p) ((uint32_t)((p) & 0xFFFFu))

typedef enum flowpic_block_state {
    FLOWPIC_BLOCK_COLLECTING, /* open, fewer than min_packets so far */
    FLOWPIC_BLOCK_PARTIAL,    /* open, enough packets to classify early */
    FLOWPIC_BLOCK_FINAL       /* its window closed (or the capture ended) */
} flowpic_block_state;

typedef struct flowpic_block {
    flowpic_key key;          /* the flow's key (its first packet's direction) */
    size_t flow;              /* the flow's index in the cutter's flow table */
    uint32_t flow_generation; /* 0, then + 1 each time an idle timeout restarts the flow */
    uint32_t index;           /* window number k */
    uint64_t start_ns;        /* window start, capture time */
    uint64_t length_ns;       /* the picture's time axis (L) */
    flowpic_preset preset;
    flowpic_block_state state;
    uint32_t n_packets;
    const flowpic_pkt *packets; /* valid until the next call on the cutter */
} flowpic_block;

typedef void (*flowpic_block_fn)(void *user, const flowpic_block *block);

/* The per-flow cutter state (internal). */
typedef struct flowpic_cutflow {
    uint64_t t0;              /* window origin: the first kept packet */
    uint64_t last_ns;         /* last packet, for the idle timeout */
    uint64_t next_k;          /* oldest window not yet emitted */
    uint64_t cur_k;           /* newest window opened */
    uint64_t *times;          /* kept packets of the open windows: time since t0 ... */
    uint16_t *sizes;          /* ... and size */
    uint32_t n, cap;
    uint32_t generation;
    int started, done;
} flowpic_cutflow;

typedef struct flowpic_cutter {
    flowpic_block_config config;
    flowpic_flowtable flows;    /* every packet of every flow, for whole-flow statistics */
    flowpic_cutflow *state;     /* parallel to flows.flows */
    size_t state_cap;
    flowpic_block_fn emit;
    void *user;
    flowpic_pkt *scratch;       /* the block being emitted */
    size_t scratch_cap;
    uint64_t packets_kept, packets_dropped, packets_skipped, blocks;
} flowpic_cutter;

FLOWPIC_DEF void flowpic_block_config_preset(flowpic_block_config *c, flowpic_preset preset);
FLOWPIC_DEF flowpic_result flowpic_block_config_check(const flowpic_block_config *c);
FLOWPIC_DEF const char *flowpic_preset_name(flowpic_preset preset);
FLOWPIC_DEF int flowpic_preset_from_name(const char *name, flowpic_preset *preset); /* 1 if known */

FLOWPIC_DEF flowpic_result flowpic_cutter_init(flowpic_cutter *c, const flowpic_block_config *config,
                                               flowpic_block_fn emit, void *user);
/* Feeds one packet; blocks whose window closes are emitted (state FINAL) before it returns. */
FLOWPIC_DEF flowpic_result flowpic_cutter_add(flowpic_cutter *c, const flowpic_packet *p);
/* Emits every remaining block (FINAL), flow after flow in first-seen order. */
FLOWPIC_DEF flowpic_result flowpic_cutter_flush(flowpic_cutter *c);
/* The oldest open window of a live flow as it is now (COLLECTING or PARTIAL), without closing
 * it: for early classification. FLOWPIC_ERR_ARG when the flow has no open window. */
FLOWPIC_DEF flowpic_result flowpic_cutter_partial(flowpic_cutter *c, size_t flow, flowpic_block *out);
FLOWPIC_DEF void flowpic_cutter_free(flowpic_cutter *c);

/* >>picture -----------------------------------------------------------------------------------
 * A FlowPic in sparse form: the non-zero pixels sorted by (row, column). Memory is proportional
 * to the block's packets, never to res * res. */

typedef struct flowpic_pixel {
    uint32_t index; /* row * res + column; row 0 = the smallest sizes, column 0 = the window start */
    uint32_t count;
} flowpic_pixel;

typedef struct flowpic_picture {
    uint32_t res;
    uint32_t n;             /* non-zero pixels */
    uint32_t packets;       /* packets in the picture */
    flowpic_pixel *pixels;
    size_t cap;
    uint32_t *scratch;      /* pixel index per packet, while building */
    size_t scratch_cap;
} flowpic_picture;

typedef enum flowpic_transform {
    FLOWPIC_VALUE_RAW,     /* counts */
    FLOWPIC_VALUE_CLIP255, /* min(count, 255) */
    FLOWPIC_VALUE_SCALE,   /* min(count, 255) / 255 */
    FLOWPIC_VALUE_BINARY,  /* 1 where count > 0 */
    FLOWPIC_VALUE_LOG1P,   /* log(1 + count) */
    FLOWPIC_VALUE_COUNT
} flowpic_transform;

#define FLOWPIC_MAX_RES 16384u

/* Builds the picture of packets[0 .. n) of a block (time offsets from its start) at res x res,
 * with the preset's mapping (FLOWPIC.md sections 2-3). pic starts zeroed; its memory is reused. */
FLOWPIC_DEF flowpic_result flowpic_picture_build(flowpic_picture *pic, flowpic_preset preset,
                                                 uint64_t length_ns, const flowpic_pkt *packets,
                                                 uint32_t n, uint32_t res);
FLOWPIC_DEF flowpic_result flowpic_picture_from_block(flowpic_picture *pic, const flowpic_block *b,
                                                      uint32_t res);
/* Dense render into out[res * res] (row-major, row 0 first), with a value transform. */
FLOWPIC_DEF void flowpic_picture_render(const flowpic_picture *pic, flowpic_transform transform, float *out);
FLOWPIC_DEF float flowpic_transform_value(flowpic_transform transform, uint32_t count);
FLOWPIC_DEF const char *flowpic_transform_name(flowpic_transform transform);
FLOWPIC_DEF int flowpic_transform_from_name(const char *name, flowpic_transform *transform);
FLOWPIC_DEF void flowpic_picture_free(flowpic_picture *pic);

#ifdef __cplusplus
}
#endif
#endif /* FLOWPIC_H */

/* >>impl ====================================================================================== */
#ifdef FLOWPIC_IMPLEMENTATION
#ifndef FLOWPIC_IMPLEMENTATION_DONE
#define FLOWPIC_IMPLEMENTATION_DONE

#ifndef FLOWPIC_NO_PCAP_LITE_IMPL
#define PCAPL_IMPLEMENTATION
#include "pcap_lite.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(FLOWPIC_MALLOC) && defined(FLOWPIC_REALLOC) && defined(FLOWPIC_FREE)
/* all three given */
#elif !defined(FLOWPIC_MALLOC) && !defined(FLOWPIC_REALLOC) && !defined(FLOWPIC_FREE)
#include <stdlib.h>
#define FLOWPIC_MALLOC(sz) malloc(sz)
#define FLOWPIC_REALLOC(p, sz) realloc(p, sz)
#define FLOWPIC_FREE(p) free(p)
#else
#error "flowpic.h: define all of FLOWPIC_MALLOC, FLOWPIC_REALLOC and FLOWPIC_FREE, or none"
#endif
#ifndef FLOWPIC_ASSERT
#include <assert.h>
#define FLOWPIC_ASSERT(x) assert(x)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- results --------------------------------------------------------------------------------- */

static const char *const flowpic__result_msgs[] = {
#define FLOWPIC_X_MSG(name, msg) msg,
    FLOWPIC_RESULT_LIST(FLOWPIC_X_MSG)
#undef FLOWPIC_X_MSG
};

FLOWPIC_DEF const char *flowpic_result_string(flowpic_result res)
{
    return (unsigned)res < FLOWPIC_RESULT_COUNT ? flowpic__result_msgs[res] : "unknown result";
}

FLOWPIC_DEF const char *flowpic_version_string(void) { return FLOWPIC_VERSION_STRING; }

/* Grows *ptr (elements of size elem) to hold at least need; doubles, checks the multiplication. */
static flowpic_result flowpic__reserve(void **ptr, size_t *cap, size_t need, size_t elem)
{
    size_t n = *cap ? *cap : 16;
    void *np;
    if (need <= *cap) return FLOWPIC_OK;
    while (n < need) {
        if (n > (size_t)-1 / 2) return FLOWPIC_ERR_NOMEM;
        n *= 2;
    }
    if (n > (size_t)-1 / elem) return FLOWPIC_ERR_NOMEM;
    np = FLOWPIC_REALLOC(*ptr, n * elem);
    if (!np) return FLOWPIC_ERR_NOMEM;
    *ptr = np;
    *cap = n;
    return FLOWPIC_OK;
}

/* ---- packets --------------------------------------------------------------------------------- */

FLOWPIC_DEF void flowpic_packet_from_decoded(flowpic_packet *p, uint64_t ts_ns, const pcapl_decoded *d)
{
    memset(p, 0, sizeof *p);
    p->ts_ns = ts_ns;
    p->size = d->ip_size;
    memcpy(p->key.src, d->src, 16);
    memcpy(p->key.dst, d->dst, 16);
    p->key.sport = d->sport;
    p->key.dport = d->dport;
    p->key.proto = d->proto;
    p->key.ip_version = d->ip_version;
}

FLOWPIC_DEF void flowpic_key_reverse(flowpic_key *out, const flowpic_key *in)
{
    flowpic_key k = *in;
    memcpy(k.src, in->dst, 16);
    memcpy(k.dst, in->src, 16);
    k.sport = in->dport;
    k.dport = in->sport;
    *out = k;
}

/* ---- flow table ------------------------------------------------------------------------------ */

static uint64_t flowpic__mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    return x ^ (x >> 31);
}

static uint64_t flowpic__key_hash(const flowpic_key *k)
{
    uint64_t w[5], h = 0;
    int i;
    memcpy(w, k, sizeof w);
    for (i = 0; i < 5; i++) h = flowpic__mix64(h ^ w[i]);
    return h;
}

FLOWPIC_DEF flowpic_result flowpic_flowtable_init(flowpic_flowtable *ft, int bidirectional, size_t max_flows)
{
    memset(ft, 0, sizeof *ft);
    ft->bidirectional = bidirectional != 0;
    ft->max_flows = max_flows ? max_flows : FLOWPIC_DEFAULT_MAX_FLOWS;
    if (ft->max_flows > 0x7FFFFFFFu) ft->max_flows = 0x7FFFFFFFu; /* slots hold 32-bit indices */
    return FLOWPIC_OK;
}

FLOWPIC_DEF void flowpic_flowtable_free(flowpic_flowtable *ft)
{
    FLOWPIC_FREE(ft->flows);
    FLOWPIC_FREE(ft->slots);
    memset(ft, 0, sizeof *ft);
}

/* Index of the flow with this key, or (size_t)-1; *slot receives where the probe stopped. */
static size_t flowpic__find(const flowpic_flowtable *ft, const flowpic_key *k, size_t *slot)
{
    size_t s;
    if (!ft->slots) return (size_t)-1;
    s = (size_t)flowpic__key_hash(k) & ft->slot_mask;
    for (;;) {
        uint32_t v = ft->slots[s];
        if (!v) break;
        if (!memcmp(&ft->flows[v - 1].key, k, sizeof *k)) {
            *slot = s;
            return v - 1;
        }
        s = (s + 1) & ft->slot_mask;
    }
    *slot = s;
    return (size_t)-1;
}

/* Rebuilds the index at twice the size when it would pass half full. */
static flowpic_result flowpic__rehash(flowpic_flowtable *ft)
{
    size_t n = ft->slots ? (ft->slot_mask + 1) * 2 : 1024, i;
    uint32_t *slots;
    if (n > (size_t)-1 / sizeof *slots) return FLOWPIC_ERR_NOMEM;
    slots = (uint32_t *)FLOWPIC_MALLOC(n * sizeof *slots);
    if (!slots) return FLOWPIC_ERR_NOMEM;
    memset(slots, 0, n * sizeof *slots);
    for (i = 0; i < ft->count; i++) {
        size_t s = (size_t)flowpic__key_hash(&ft->flows[i].key) & (n - 1);
        while (slots[s]) s = (s + 1) & (n - 1);
        slots[s] = (uint32_t)(i + 1);
    }
    FLOWPIC_FREE(ft->slots);
    ft->slots = slots;
    ft->slot_mask = n - 1;
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_flowtable_add(flowpic_flowtable *ft, const flowpic_packet *p,
                                                 size_t *flow_index)
{
    size_t slot = 0, idx = flowpic__find(ft, &p->key, &slot);
    flowpic_flow *f;
    if (idx == (size_t)-1 && ft->bidirectional) {
        flowpic_key rev;
        size_t rslot;
        flowpic_key_reverse(&rev, &p->key);
        idx = flowpic__find(ft, &rev, &rslot);
    }
    if (idx == (size_t)-1) {
        flowpic_result res;
        if (ft->count >= ft->max_flows) return FLOWPIC_ERR_FLOW_LIMIT;
        if (!ft->slots || (ft->count + 1) * 2 > ft->slot_mask + 1) {
            res = flowpic__rehash(ft);
            if (res != FLOWPIC_OK) return res;
            flowpic__find(ft, &p->key, &slot);
        }
        res = flowpic__reserve((void **)&ft->flows, &ft->cap, ft->count + 1, sizeof *ft->flows);
        if (res != FLOWPIC_OK) return res;
        idx = ft->count++;
        ft->slots[slot] = (uint32_t)(idx + 1);
        f = &ft->flows[idx];
        memset(f, 0, sizeof *f);
        f->key = p->key;
        f->first_ns = p->ts_ns;
    }
    f = &ft->flows[idx];
    f->packets++;
    f->bytes += p->size;
    f->last_ns = p->ts_ns;
    if (flow_index) *flow_index = idx;
    return FLOWPIC_OK;
}

/* ---- blocks: configuration -------------------------------------------------------------------- */

static const uint64_t flowpic__ns_per_s = 1000000000u;

FLOWPIC_DEF void flowpic_block_config_preset(flowpic_block_config *c, flowpic_preset preset)
{
    memset(c, 0, sizeof *c);
    c->preset = preset;
    c->block_ns = 60 * flowpic__ns_per_s;
    c->step_ns = c->block_ns;
    c->min_packets = 10;
    c->max_size = 1500;
    c->size_policy = FLOWPIC_SIZE_DROP;
    c->max_flows = FLOWPIC_DEFAULT_MAX_FLOWS;
    if (preset == FLOWPIC_PRESET_ORIGINAL) {
        c->min_packets = 11; /* "more than 10 packets" */
    } else if (preset == FLOWPIC_PRESET_TCBENCH) {
        c->block_ns = c->step_ns = 15 * flowpic__ns_per_s;
        c->size_policy = FLOWPIC_SIZE_CLIP;
        c->bidirectional = 1;
    }
}

FLOWPIC_DEF flowpic_result flowpic_block_config_check(const flowpic_block_config *c)
{
    if ((unsigned)c->preset >= FLOWPIC_PRESET_COUNT) return FLOWPIC_ERR_ARG;
    if (c->block_ns == 0 || c->block_ns > FLOWPIC_MAX_OFFSET_NS) return FLOWPIC_ERR_ARG;
    if (c->step_ns == 0 || c->step_ns > c->block_ns) return FLOWPIC_ERR_ARG;
    if (c->block_ns / c->step_ns > FLOWPIC_MAX_OPEN_WINDOWS) return FLOWPIC_ERR_LIMIT;
    if (c->min_packets == 0 || c->max_size == 0 || c->max_size > 65535) return FLOWPIC_ERR_ARG;
    if (c->preset == FLOWPIC_PRESET_ORIGINAL &&
        (c->block_ns != 60 * flowpic__ns_per_s || c->step_ns != c->block_ns))
        return FLOWPIC_ERR_ARG; /* the authors' rules are fixed */
    return FLOWPIC_OK;
}

static const char *const flowpic__preset_names[FLOWPIC_PRESET_COUNT] = {"paper", "original", "tcbench"};

FLOWPIC_DEF const char *flowpic_preset_name(flowpic_preset preset)
{
    return (unsigned)preset < FLOWPIC_PRESET_COUNT ? flowpic__preset_names[preset] : "unknown";
}

FLOWPIC_DEF int flowpic_preset_from_name(const char *name, flowpic_preset *preset)
{
    int i;
    for (i = 0; i < FLOWPIC_PRESET_COUNT; i++)
        if (!strcmp(name, flowpic__preset_names[i])) {
            *preset = (flowpic_preset)i;
            return 1;
        }
    return 0;
}

/* ---- blocks: the cutter ------------------------------------------------------------------------
 * Each flow keeps the kept packets of its open windows as times since t0. A packet earlier than
 * the start of the newest open window counts at that start (column 0). When a packet passes the
 * end of the oldest open window, the windows that ended are emitted, oldest first, and packets
 * no remaining window holds are dropped. The "original" preset needs a session's last packet
 * before it can cut anything, so it keeps the whole session and cuts at flush. */

FLOWPIC_DEF flowpic_result flowpic_cutter_init(flowpic_cutter *c, const flowpic_block_config *config,
                                               flowpic_block_fn emit, void *user)
{
    flowpic_result res;
    memset(c, 0, sizeof *c);
    res = flowpic_block_config_check(config);
    if (res != FLOWPIC_OK) return res;
    c->config = *config;
    c->emit = emit;
    c->user = user;
    return flowpic_flowtable_init(&c->flows, config->bidirectional, config->max_flows);
}

FLOWPIC_DEF void flowpic_cutter_free(flowpic_cutter *c)
{
    size_t i;
    for (i = 0; i < c->flows.count && c->state; i++) {
        FLOWPIC_FREE(c->state[i].times);
        FLOWPIC_FREE(c->state[i].sizes);
    }
    FLOWPIC_FREE(c->state);
    FLOWPIC_FREE(c->scratch);
    flowpic_flowtable_free(&c->flows);
    memset(c, 0, sizeof *c);
}

static flowpic_result flowpic__cutflow_push(flowpic_cutflow *st, uint64_t rel, uint32_t size)
{
    if (st->n == st->cap) {
        uint32_t cap = st->cap ? st->cap * 2 : 16;
        uint64_t *t;
        uint16_t *z;
        if (st->cap >= FLOWPIC_MAX_BLOCK_PACKETS) return FLOWPIC_ERR_LIMIT;
        t = (uint64_t *)FLOWPIC_REALLOC(st->times, (size_t)cap * sizeof *t);
        if (!t) return FLOWPIC_ERR_NOMEM;
        st->times = t;
        z = (uint16_t *)FLOWPIC_REALLOC(st->sizes, (size_t)cap * sizeof *z);
        if (!z) return FLOWPIC_ERR_NOMEM;
        st->sizes = z;
        st->cap = cap;
    }
    st->times[st->n] = rel;
    st->sizes[st->n] = (uint16_t)(size > 65535 ? 65535 : size);
    st->n++;
    return FLOWPIC_OK;
}

/* Copies the packets of window [lo, lo + L) of flow idx (closed at both ends when closed_end)
 * into c->scratch as (offset, size); their number goes to *n. */
static flowpic_result flowpic__gather_window(flowpic_cutter *c, size_t idx, uint64_t lo, int closed_end,
                                             uint32_t *n)
{
    const flowpic_cutflow *st = &c->state[idx];
    uint64_t len = c->config.block_ns;
    uint32_t i;
    flowpic_result res = flowpic__reserve((void **)&c->scratch, &c->scratch_cap, st->n, sizeof *c->scratch);
    if (res != FLOWPIC_OK) return res;
    *n = 0;
    for (i = 0; i < st->n; i++) {
        uint64_t t = st->times[i];
        if (t < lo || t - lo > len || (t - lo == len && !closed_end)) continue;
        c->scratch[(*n)++] = FLOWPIC_PKT(t - lo, st->sizes[i]);
    }
    return FLOWPIC_OK;
}

/* The original preset keeps a window only when its packets span more than 50 s. */
static int flowpic__spans_50s(const flowpic_pkt *packets, uint32_t n)
{
    uint64_t first = UINT64_MAX, last = 0;
    uint32_t i;
    for (i = 0; i < n; i++) {
        uint64_t t = FLOWPIC_PKT_OFFSET(packets[i]);
        if (t < first) first = t;
        if (t > last) last = t;
    }
    return n > 0 && last - first > 50 * flowpic__ns_per_s;
}

static void flowpic__describe_block(const flowpic_cutter *c, size_t idx, uint64_t k, uint64_t lo, uint32_t n,
                                    flowpic_block_state state, flowpic_block *b)
{
    const flowpic_cutflow *st = &c->state[idx];
    memset(b, 0, sizeof *b);
    b->key = c->flows.flows[idx].key;
    b->flow = idx;
    b->flow_generation = st->generation;
    b->index = (uint32_t)k;
    b->start_ns = st->t0 + lo;
    b->length_ns = c->config.block_ns;
    b->preset = c->config.preset;
    b->state = state;
    b->n_packets = n;
    b->packets = c->scratch;
}

/* Emits window k = [lo, lo + L) of flow idx as a final block if it qualifies. */
static flowpic_result flowpic__emit_window(flowpic_cutter *c, size_t idx, uint64_t k, uint64_t lo, int closed_end)
{
    flowpic_block b;
    uint32_t n;
    flowpic_result res = flowpic__gather_window(c, idx, lo, closed_end, &n);
    if (res != FLOWPIC_OK || n < c->config.min_packets) return res;
    if (c->config.preset == FLOWPIC_PRESET_ORIGINAL && !flowpic__spans_50s(c->scratch, n)) return FLOWPIC_OK;
    flowpic__describe_block(c, idx, k, lo, n, FLOWPIC_BLOCK_FINAL, &b);
    c->blocks++;
    if (c->emit) c->emit(c->user, &b);
    return FLOWPIC_OK;
}

/* The first window at or after next_k that holds the buffer's earliest packet. */
static uint64_t flowpic__first_window(const flowpic_cutter *c, const flowpic_cutflow *st)
{
    uint64_t m = UINT64_MAX, k;
    uint32_t i;
    for (i = 0; i < st->n; i++)
        if (st->times[i] < m) m = st->times[i];
    k = m >= c->config.block_ns ? (m - c->config.block_ns) / c->config.step_ns + 1 : 0;
    return k < st->next_k ? st->next_k : k;
}

/* Emits, oldest first, the windows that end at or before now (time since t0). */
static flowpic_result flowpic__close_windows(flowpic_cutter *c, size_t idx, uint64_t now)
{
    flowpic_cutflow *st = &c->state[idx];
    const uint64_t step = c->config.step_ns, len = c->config.block_ns;
    while (st->n > 0) {
        uint64_t k = flowpic__first_window(c, st), lo = k * step;
        uint32_t i, kept = 0;
        flowpic_result res;
        if (now < lo || now - lo < len) break; /* still open */
        res = flowpic__emit_window(c, idx, k, lo, 0);
        if (res != FLOWPIC_OK) return res;
        st->next_k = k + 1;
        for (i = 0; i < st->n; i++) /* keep what a later window holds */
            if (st->times[i] >= st->next_k * step) {
                st->times[kept] = st->times[i];
                st->sizes[kept++] = st->sizes[i];
            }
        st->n = kept;
        if (c->config.preset == FLOWPIC_PRESET_TCBENCH) { /* one block per flow */
            st->done = 1;
            st->n = 0;
        }
    }
    return FLOWPIC_OK;
}

/* The authors' windows over a whole session: k = 0 .. max(1, floor(T / 60)) - 1, closed. */
static flowpic_result flowpic__cut_original(flowpic_cutter *c, size_t idx)
{
    const flowpic_cutflow *st = &c->state[idx];
    uint64_t windows, k, last = st->last_ns > st->t0 ? st->last_ns - st->t0 : 0;
    if (!st->started || c->flows.flows[idx].packets <= 10) return FLOWPIC_OK;
    windows = last / c->config.block_ns;
    if (windows < 1) windows = 1;
    for (k = 0; k < windows; k++) {
        flowpic_result res = flowpic__emit_window(c, idx, k, k * c->config.block_ns, 1);
        if (res != FLOWPIC_OK) return res;
    }
    return FLOWPIC_OK;
}

/* Emits every remaining block of a flow and empties its buffer. */
static flowpic_result flowpic__finish_flow(flowpic_cutter *c, size_t idx)
{
    flowpic_result res = c->config.preset == FLOWPIC_PRESET_ORIGINAL ? flowpic__cut_original(c, idx)
                                                                    : flowpic__close_windows(c, idx, UINT64_MAX);
    c->state[idx].n = 0;
    return res;
}

/* Starts the flow again after an idle timeout: new origin, next generation. */
static void flowpic__restart_flow(flowpic_cutflow *st)
{
    st->generation++;
    st->started = st->done = 0;
    st->next_k = st->cur_k = 0;
    st->n = 0;
}

/* Counts p in the flow table and returns its flow's index, growing the state array with it. */
static flowpic_result flowpic__cutter_track(flowpic_cutter *c, const flowpic_packet *p, size_t *idx)
{
    size_t before = c->flows.count;
    flowpic_result res = flowpic__reserve((void **)&c->state, &c->state_cap, before + 1, sizeof *c->state);
    if (res != FLOWPIC_OK) return res;
    res = flowpic_flowtable_add(&c->flows, p, idx);
    if (res != FLOWPIC_OK) return res;
    if (c->flows.count > before) memset(&c->state[*idx], 0, sizeof *c->state);
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_cutter_add(flowpic_cutter *c, const flowpic_packet *p)
{
    const flowpic_block_config *cfg = &c->config;
    flowpic_cutflow *st;
    flowpic_result res;
    uint32_t size = p->size;
    uint64_t rel;
    size_t idx;
    if (cfg->preset == FLOWPIC_PRESET_ORIGINAL && p->key.ip_version != 4) {
        c->packets_skipped++;
        return FLOWPIC_OK;
    }
    res = flowpic__cutter_track(c, p, &idx);
    if (res != FLOWPIC_OK) return res;
    st = &c->state[idx];
    if (cfg->preset != FLOWPIC_PRESET_ORIGINAL && size > cfg->max_size) {
        if (cfg->size_policy == FLOWPIC_SIZE_DROP) {
            c->packets_dropped++;
            return FLOWPIC_OK;
        }
        size = cfg->max_size;
    }
    if (st->started && cfg->idle_timeout_ns && p->ts_ns > st->last_ns &&
        p->ts_ns - st->last_ns >= cfg->idle_timeout_ns) {
        res = flowpic__finish_flow(c, idx);
        if (res != FLOWPIC_OK) return res;
        flowpic__restart_flow(st);
    }
    if (!st->started) {
        st->started = 1;
        st->t0 = p->ts_ns;
    }
    st->last_ns = p->ts_ns;
    if (st->done) return FLOWPIC_OK;
    c->packets_kept++;
    rel = p->ts_ns > st->t0 ? p->ts_ns - st->t0 : 0;
    if (cfg->preset == FLOWPIC_PRESET_ORIGINAL) {
        if (p->ts_ns < st->t0) return FLOWPIC_OK; /* before the session's first packet: no window */
        return flowpic__cutflow_push(st, rel, size);
    }
    if (rel < st->cur_k * cfg->step_ns) rel = st->cur_k * cfg->step_ns; /* time went back */
    if (rel / cfg->step_ns > st->cur_k) {
        st->cur_k = rel / cfg->step_ns;
        res = flowpic__close_windows(c, idx, rel);
        if (res != FLOWPIC_OK || st->done) return res;
    }
    return flowpic__cutflow_push(st, rel, size);
}

FLOWPIC_DEF flowpic_result flowpic_cutter_flush(flowpic_cutter *c)
{
    size_t i;
    for (i = 0; i < c->flows.count; i++) {
        flowpic_result res = flowpic__finish_flow(c, i);
        if (res != FLOWPIC_OK) return res;
    }
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_cutter_partial(flowpic_cutter *c, size_t flow, flowpic_block *out)
{
    const flowpic_cutflow *st;
    uint64_t k;
    uint32_t n;
    flowpic_result res;
    if (flow >= c->flows.count) return FLOWPIC_ERR_ARG;
    st = &c->state[flow];
    if (!st->n || c->config.preset == FLOWPIC_PRESET_ORIGINAL) return FLOWPIC_ERR_ARG;
    k = flowpic__first_window(c, st);
    res = flowpic__gather_window(c, flow, k * c->config.step_ns, 0, &n);
    if (res != FLOWPIC_OK) return res;
    flowpic__describe_block(c, flow, k, k * c->config.step_ns, n,
                            n >= c->config.min_packets ? FLOWPIC_BLOCK_PARTIAL : FLOWPIC_BLOCK_COLLECTING, out);
    return FLOWPIC_OK;
}

/* ---- picture ---------------------------------------------------------------------------------- */

static const char *const flowpic__transform_names[FLOWPIC_VALUE_COUNT] = {"raw", "clip255", "scale", "binary",
                                                                          "log1p"};

FLOWPIC_DEF const char *flowpic_transform_name(flowpic_transform transform)
{
    return (unsigned)transform < FLOWPIC_VALUE_COUNT ? flowpic__transform_names[transform] : "unknown";
}

FLOWPIC_DEF int flowpic_transform_from_name(const char *name, flowpic_transform *transform)
{
    int i;
    for (i = 0; i < FLOWPIC_VALUE_COUNT; i++)
        if (!strcmp(name, flowpic__transform_names[i])) {
            *transform = (flowpic_transform)i;
            return 1;
        }
    return 0;
}

FLOWPIC_DEF float flowpic_transform_value(flowpic_transform transform, uint32_t count)
{
    switch (transform) {
    case FLOWPIC_VALUE_CLIP255: return (float)(count > 255 ? 255 : count);
    case FLOWPIC_VALUE_SCALE: return (float)(count > 255 ? 255 : count) / 255.0f;
    case FLOWPIC_VALUE_BINARY: return count ? 1.0f : 0.0f;
    case FLOWPIC_VALUE_LOG1P: return (float)log1p((double)count);
    default: return (float)count;
    }
}

static int flowpic__cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Pixel index of one packet, or UINT32_MAX when the preset leaves it out of the picture.
 * first/span: the original preset's stretch (the window's own first packet and span). */
static uint32_t flowpic__pixel_index(flowpic_preset preset, uint64_t length_ns, uint32_t res, flowpic_pkt p,
                                     uint64_t first, uint64_t span)
{
    uint64_t off = FLOWPIC_PKT_OFFSET(p), row, col;
    uint32_t size = FLOWPIC_PKT_SIZE(p);
    if (preset == FLOWPIC_PRESET_ORIGINAL) {
        if (size > 1500) return UINT32_MAX;
        row = (uint64_t)size * res / 1500;
        col = span ? (off - first) * res / span : 0;
    } else if (preset == FLOWPIC_PRESET_TCBENCH) {
        row = (uint64_t)(size > 1500 ? 1500 : size) * res / 1500;
        col = off * res / length_ns;
    } else {
        row = size ? (uint64_t)(size > 1500 ? 1499 : size - 1) * res / 1500 : 0;
        col = off * res / length_ns;
    }
    if (row >= res) row = res - 1;
    if (col >= res) col = res - 1;
    return (uint32_t)(row * res + col);
}

FLOWPIC_DEF flowpic_result flowpic_picture_build(flowpic_picture *pic, flowpic_preset preset,
                                                 uint64_t length_ns, const flowpic_pkt *packets,
                                                 uint32_t n, uint32_t res)
{
    uint32_t *idx, i, m = 0;
    uint64_t first = UINT64_MAX, last = 0;
    flowpic_result r;
    if (res == 0 || res > FLOWPIC_MAX_RES || length_ns == 0 || (n && !packets)) return FLOWPIC_ERR_ARG;
    r = flowpic__reserve((void **)&pic->pixels, &pic->cap, n ? n : 1, sizeof *pic->pixels);
    if (r != FLOWPIC_OK) return r;
    pic->res = res;
    pic->n = pic->packets = 0;
    if (preset == FLOWPIC_PRESET_ORIGINAL)
        for (i = 0; i < n; i++) {
            uint64_t t = FLOWPIC_PKT_OFFSET(packets[i]);
            if (t < first) first = t;
            if (t > last) last = t;
        }
    r = flowpic__reserve((void **)&pic->scratch, &pic->scratch_cap, n ? n : 1, sizeof *pic->scratch);
    if (r != FLOWPIC_OK) return r;
    idx = pic->scratch;
    for (i = 0; i < n; i++) {
        uint32_t ix = flowpic__pixel_index(preset, length_ns, res, packets[i], first, last - first);
        if (ix != UINT32_MAX) idx[m++] = ix;
    }
    qsort(idx, m, sizeof *idx, flowpic__cmp_u32);
    pic->packets = m;
    for (i = 0; i < m; i++) {
        if (pic->n && pic->pixels[pic->n - 1].index == idx[i]) {
            pic->pixels[pic->n - 1].count++;
        } else {
            pic->pixels[pic->n].index = idx[i];
            pic->pixels[pic->n++].count = 1;
        }
    }
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_picture_from_block(flowpic_picture *pic, const flowpic_block *b, uint32_t res)
{
    return flowpic_picture_build(pic, b->preset, b->length_ns, b->packets, b->n_packets, res);
}

FLOWPIC_DEF void flowpic_picture_render(const flowpic_picture *pic, flowpic_transform transform, float *out)
{
    uint32_t i;
    memset(out, 0, (size_t)pic->res * pic->res * sizeof *out);
    for (i = 0; i < pic->n; i++) out[pic->pixels[i].index] = flowpic_transform_value(transform, pic->pixels[i].count);
}

FLOWPIC_DEF void flowpic_picture_free(flowpic_picture *pic)
{
    FLOWPIC_FREE(pic->pixels);
    FLOWPIC_FREE(pic->scratch);
    memset(pic, 0, sizeof *pic);
}

#ifdef __cplusplus
}
#endif
#endif /* FLOWPIC_IMPLEMENTATION_DONE */
#endif /* FLOWPIC_IMPLEMENTATION */
