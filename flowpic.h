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

#ifdef __cplusplus
}
#endif
#endif /* FLOWPIC_IMPLEMENTATION_DONE */
#endif /* FLOWPIC_IMPLEMENTATION */
