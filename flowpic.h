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
 *   >>blocks      presets and the block cutter: flows -> time windows, streaming
 *   >>picture     the sparse FlowPic, dense render, value transforms
 *   >>dataset     labelled data sets in memory and on disk (docs/DATASET.md)
 *   >>images      PNG / PGM pictures, NumPy headers
 *   >>extract     a capture into a labelled data set, with a per-flow label callback
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
    uint64_t *slots;    /* hash tag << 32 | flow index + 1; 0 = empty */
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

/* >>dataset -----------------------------------------------------------------------------------
 * A labelled data set: class names, source files, flows, and per block its label, flow, window
 * number, start time and packets, 8 bytes a packet in memory (flowpic_pkt). The file format
 * (docs/DATASET.md) is versioned, little-endian, CRC-32 checked and smaller than 8 bytes a
 * packet on disk. Readers validate everything and say where a file is wrong. */

#define FLOWPIC_MAX_CLASSES 65535u        /* labels are 16-bit */
#define FLOWPIC_MAX_NAME 4096u            /* bytes of a class or source name */
#define FLOWPIC_MAX_DATASET_BYTES (1ull << 40) /* largest data-set file read */

/* Where and why a file was rejected. */
typedef struct flowpic_error {
    flowpic_result code;
    uint64_t offset;      /* byte offset in the file */
    char reason[192];
} flowpic_error;

typedef struct flowpic_ds_flow {
    flowpic_key key;
    uint32_t source;      /* index into sources */
    uint32_t generation;  /* idle-timeout restarts of the same 5-tuple */
} flowpic_ds_flow;

typedef struct flowpic_ds_block {
    uint64_t start_ns;    /* window start, capture time */
    uint64_t first;       /* index of its first packet in packets[] */
    uint32_t flow;        /* index into flows */
    uint32_t index;       /* window number k */
    uint32_t n_packets;
    uint16_t label;       /* index into classes */
    uint16_t reserved;
} flowpic_ds_block;

typedef struct flowpic_dataset {
    flowpic_block_config config; /* how the blocks were cut */
    char **classes;
    uint32_t n_classes;
    char **sources;
    uint32_t n_sources;
    flowpic_ds_flow *flows;
    size_t n_flows, cap_flows;
    flowpic_ds_block *blocks;
    size_t n_blocks, cap_blocks;
    flowpic_pkt *packets;
    size_t n_packets, cap_packets;
    size_t cap_classes, cap_sources;
} flowpic_dataset;

FLOWPIC_DEF void flowpic_dataset_init(flowpic_dataset *ds, const flowpic_block_config *config);
FLOWPIC_DEF void flowpic_dataset_free(flowpic_dataset *ds);
/* The label / source id of a name, added when new. */
FLOWPIC_DEF flowpic_result flowpic_dataset_class(flowpic_dataset *ds, const char *name, uint16_t *label);
FLOWPIC_DEF flowpic_result flowpic_dataset_source(flowpic_dataset *ds, const char *path, uint32_t *source);
FLOWPIC_DEF flowpic_result flowpic_dataset_add_flow(flowpic_dataset *ds, const flowpic_key *key, uint32_t source,
                                                    uint32_t generation, uint32_t *flow);
FLOWPIC_DEF flowpic_result flowpic_dataset_add_block(flowpic_dataset *ds, uint32_t flow, uint16_t label,
                                                     const flowpic_block *b);
/* Appends src (same cutting configuration); classes are matched by name. */
FLOWPIC_DEF flowpic_result flowpic_dataset_merge(flowpic_dataset *dst, const flowpic_dataset *src,
                                                 flowpic_error *err);
FLOWPIC_DEF const flowpic_pkt *flowpic_dataset_block_packets(const flowpic_dataset *ds, size_t block);

/* Serialise to a malloc'd buffer (free with FLOWPIC_FREE) / parse from memory. */
FLOWPIC_DEF flowpic_result flowpic_dataset_to_memory(const flowpic_dataset *ds, uint8_t **data, size_t *size);
FLOWPIC_DEF flowpic_result flowpic_dataset_from_memory(flowpic_dataset *ds, const uint8_t *data, size_t size,
                                                       flowpic_error *err);
/* A checksum of IEEE 802.3 / zlib, as the files use it; start with crc = 0. */
FLOWPIC_DEF uint32_t flowpic_crc32(uint32_t crc, const void *data, size_t size);
#ifndef FLOWPIC_NO_STDIO
/* Written to PATH.tmp and renamed over PATH, so PATH is never half-written. */
FLOWPIC_DEF flowpic_result flowpic_dataset_save(const flowpic_dataset *ds, const char *path, flowpic_error *err);
FLOWPIC_DEF flowpic_result flowpic_dataset_load(flowpic_dataset *ds, const char *path, flowpic_error *err);
/* Reads a whole file (at most max bytes) into a malloc'd buffer. */
FLOWPIC_DEF flowpic_result flowpic_read_file(const char *path, uint64_t max, uint8_t **data, size_t *size,
                                             flowpic_error *err);
/* Writes size bytes to PATH.tmp, then renames it over PATH. */
FLOWPIC_DEF flowpic_result flowpic_write_file_atomic(const char *path, const void *data, size_t size,
                                                     flowpic_error *err);
#endif

/* >>images ------------------------------------------------------------------------------------
 * Pictures as files people and other tools can open. Orientation: time left to right, size
 * bottom to top; every non-zero pixel black on white (the paper's figures), each scale x scale. */

/* dot: extra pixels painted around each non-zero pixel (on each side), so that single packets
 * stay visible on large images; 0 for exact pixels. */
FLOWPIC_DEF flowpic_result flowpic_picture_png(const flowpic_picture *pic, uint32_t scale, uint32_t dot,
                                               uint8_t **data, size_t *size);
FLOWPIC_DEF flowpic_result flowpic_picture_pgm(const flowpic_picture *pic, uint32_t scale, uint32_t dot,
                                               uint8_t **data, size_t *size);
/* The header of a NumPy .npy file (format 1.0, C order) for an array of the given shape and
 * dtype ("<f4", "|u1", "<i4"...): header is FLOWPIC_NPY_HEADER bytes; returns its length. */
#define FLOWPIC_NPY_HEADER 128
FLOWPIC_DEF size_t flowpic_npy_header(char *header, const char *dtype, const uint64_t *shape, int ndim);

/* >>extract -----------------------------------------------------------------------------------
 * A capture into a labelled data set, in one call: packets -> flows -> blocks -> labels. */

/* The class of a flow, decided once its totals are known (the capture has ended): a class name,
 * or NULL to leave the flow out. */
typedef const char *(*flowpic_label_fn)(void *user, const flowpic_flow *flow);
/* Called about every 65536 packets with the input bytes read so far. */
typedef void (*flowpic_progress_fn)(void *user, uint64_t packets, uint64_t bytes);

/* Reads every packet of r, cuts the flows into blocks with ds->config, and adds to ds, flow
 * after flow in first-seen order, the blocks of the flows label() names (every flow, as class
 * "unlabelled", when label is NULL), under the source name `source`. Blocks are held until the
 * capture ends (memory: 8 bytes a packet in a block). On a reader error the blocks of the
 * packets before it are added and FLOWPIC_ERR_FORMAT is returned with r->error filled. */
FLOWPIC_DEF flowpic_result flowpic_dataset_add_capture(flowpic_dataset *ds, pcapl_reader *r, const char *source,
                                                       flowpic_label_fn label, void *label_user,
                                                       flowpic_progress_fn progress, void *progress_user);

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
#include <stdio.h>
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

/* The five key words multiplied by odd constants (independent, so they run in parallel), then
 * one finalizer: a per-packet cost of a few cycles. */
static uint64_t flowpic__key_hash(const flowpic_key *k)
{
    uint64_t w[5];
    memcpy(w, k, sizeof w);
    return flowpic__mix64(w[0] * 0x9E3779B97F4A7C15u ^ w[1] * 0xC2B2AE3D27D4EB4Fu ^ w[2] * 0x165667B19E3779F9u ^
                          w[3] * 0xD6E8FEB86659FD93u ^ w[4] * 0xFF51AFD7ED558CCDu);
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

/* Index of the flow with this key (hash h), or (size_t)-1; *slot receives where the probe
 * stopped. The tag in each slot spares reading the flow of a different key. */
static size_t flowpic__find(const flowpic_flowtable *ft, const flowpic_key *k, uint64_t h, size_t *slot)
{
    size_t s;
    uint64_t tag = h >> 32 << 32;
    if (!ft->slots) return (size_t)-1;
    s = (size_t)h & ft->slot_mask;
    for (;;) {
        uint64_t v = ft->slots[s];
        if (!v) break;
        if ((v & 0xFFFFFFFF00000000u) == tag && !memcmp(&ft->flows[(uint32_t)v - 1].key, k, sizeof *k)) {
            *slot = s;
            return (uint32_t)v - 1;
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
    uint64_t *slots;
    if (n > (size_t)-1 / sizeof *slots) return FLOWPIC_ERR_NOMEM;
    slots = (uint64_t *)FLOWPIC_MALLOC(n * sizeof *slots);
    if (!slots) return FLOWPIC_ERR_NOMEM;
    memset(slots, 0, n * sizeof *slots);
    for (i = 0; i < ft->count; i++) {
        uint64_t h = flowpic__key_hash(&ft->flows[i].key);
        size_t s = (size_t)h & (n - 1);
        while (slots[s]) s = (s + 1) & (n - 1);
        slots[s] = (h >> 32 << 32) | (uint64_t)(i + 1);
    }
    FLOWPIC_FREE(ft->slots);
    ft->slots = slots;
    ft->slot_mask = n - 1;
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_flowtable_add(flowpic_flowtable *ft, const flowpic_packet *p,
                                                 size_t *flow_index)
{
    uint64_t h = flowpic__key_hash(&p->key);
    size_t slot = 0, idx = flowpic__find(ft, &p->key, h, &slot);
    flowpic_flow *f;
    if (idx == (size_t)-1 && ft->bidirectional) {
        flowpic_key rev;
        size_t rslot;
        flowpic_key_reverse(&rev, &p->key);
        idx = flowpic__find(ft, &rev, flowpic__key_hash(&rev), &rslot);
    }
    if (idx == (size_t)-1) {
        flowpic_result res;
        if (ft->count >= ft->max_flows) return FLOWPIC_ERR_FLOW_LIMIT;
        if (!ft->slots || (ft->count + 1) * 2 > ft->slot_mask + 1) {
            res = flowpic__rehash(ft);
            if (res != FLOWPIC_OK) return res;
            flowpic__find(ft, &p->key, h, &slot);
        }
        res = flowpic__reserve((void **)&ft->flows, &ft->cap, ft->count + 1, sizeof *ft->flows);
        if (res != FLOWPIC_OK) return res;
        idx = ft->count++;
        ft->slots[slot] = (h >> 32 << 32) | (uint64_t)(idx + 1);
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

/* Index of name in names[0 .. n), or -1. */
static int flowpic__name_index(const char *const *names, int n, const char *name)
{
    int i;
    for (i = 0; i < n; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

FLOWPIC_DEF int flowpic_preset_from_name(const char *name, flowpic_preset *preset)
{
    int i = flowpic__name_index(flowpic__preset_names, FLOWPIC_PRESET_COUNT, name);
    if (i >= 0) *preset = (flowpic_preset)i;
    return i >= 0;
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
    int i = flowpic__name_index(flowpic__transform_names, FLOWPIC_VALUE_COUNT, name);
    if (i >= 0) *transform = (flowpic_transform)i;
    return i >= 0;
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

/* ---- dataset: memory ---------------------------------------------------------------------------- */

static const uint32_t flowpic__crc_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
    0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
    0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
    0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
    0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
    0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
    0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
    0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
    0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
    0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
    0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
    0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
    0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
    0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
    0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
    0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
    0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
    0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
    0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
    0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
    0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
    0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
    0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
    0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
    0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
    0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
    0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
    0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
    0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
    0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
    0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
    0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
    0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
    0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
    0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
    0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
    0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du
};

FLOWPIC_DEF uint32_t flowpic_crc32(uint32_t crc, const void *data, size_t size)
{
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
    while (size--) crc = flowpic__crc_table[(crc ^ *p++) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

FLOWPIC_DEF void flowpic_dataset_init(flowpic_dataset *ds, const flowpic_block_config *config)
{
    memset(ds, 0, sizeof *ds);
    if (config) ds->config = *config;
    else flowpic_block_config_preset(&ds->config, FLOWPIC_PRESET_PAPER);
}

static void flowpic__free_names(char **names, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++) FLOWPIC_FREE(names[i]);
    FLOWPIC_FREE(names);
}

FLOWPIC_DEF void flowpic_dataset_free(flowpic_dataset *ds)
{
    flowpic__free_names(ds->classes, ds->n_classes);
    flowpic__free_names(ds->sources, ds->n_sources);
    FLOWPIC_FREE(ds->flows);
    FLOWPIC_FREE(ds->blocks);
    FLOWPIC_FREE(ds->packets);
    memset(ds, 0, sizeof *ds);
}

/* Index of name in names[0 .. *n), appended (a copy) when absent. */
static flowpic_result flowpic__intern(char ***names, uint32_t *n, size_t *cap, uint32_t max, const char *name,
                                      uint32_t *id)
{
    uint32_t i;
    size_t len = strlen(name);
    char *copy;
    flowpic_result res;
    for (i = 0; i < *n; i++)
        if (!strcmp((*names)[i], name)) {
            *id = i;
            return FLOWPIC_OK;
        }
    if (*n >= max || len > FLOWPIC_MAX_NAME) return FLOWPIC_ERR_LIMIT;
    res = flowpic__reserve((void **)names, cap, (size_t)*n + 1, sizeof **names);
    if (res != FLOWPIC_OK) return res;
    copy = (char *)FLOWPIC_MALLOC(len + 1);
    if (!copy) return FLOWPIC_ERR_NOMEM;
    memcpy(copy, name, len + 1);
    (*names)[*n] = copy;
    *id = (*n)++;
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_dataset_class(flowpic_dataset *ds, const char *name, uint16_t *label)
{
    uint32_t id = 0;
    flowpic_result res;
    if (!name[0]) return FLOWPIC_ERR_ARG;
    res = flowpic__intern(&ds->classes, &ds->n_classes, &ds->cap_classes, FLOWPIC_MAX_CLASSES, name, &id);
    *label = (uint16_t)id;
    return res;
}

FLOWPIC_DEF flowpic_result flowpic_dataset_source(flowpic_dataset *ds, const char *path, uint32_t *source)
{
    return flowpic__intern(&ds->sources, &ds->n_sources, &ds->cap_sources, 0xFFFFFFFFu, path, source);
}

FLOWPIC_DEF flowpic_result flowpic_dataset_add_flow(flowpic_dataset *ds, const flowpic_key *key, uint32_t source,
                                                    uint32_t generation, uint32_t *flow)
{
    flowpic_result res;
    if (source >= ds->n_sources) return FLOWPIC_ERR_ARG;
    if (ds->n_flows >= 0xFFFFFFFFu) return FLOWPIC_ERR_LIMIT;
    res = flowpic__reserve((void **)&ds->flows, &ds->cap_flows, ds->n_flows + 1, sizeof *ds->flows);
    if (res != FLOWPIC_OK) return res;
    ds->flows[ds->n_flows].key = *key;
    ds->flows[ds->n_flows].source = source;
    ds->flows[ds->n_flows].generation = generation;
    *flow = (uint32_t)ds->n_flows++;
    return FLOWPIC_OK;
}

/* Appends a block record and room for its n packets; returns the record. */
static flowpic_result flowpic__ds_append(flowpic_dataset *ds, uint32_t flow, uint16_t label, uint32_t index,
                                         uint64_t start_ns, uint32_t n, flowpic_ds_block **out)
{
    flowpic_ds_block *b;
    flowpic_result res;
    if (flow >= ds->n_flows || label >= ds->n_classes || n > FLOWPIC_MAX_BLOCK_PACKETS) return FLOWPIC_ERR_ARG;
    res = flowpic__reserve((void **)&ds->blocks, &ds->cap_blocks, ds->n_blocks + 1, sizeof *ds->blocks);
    if (res != FLOWPIC_OK) return res;
    res = flowpic__reserve((void **)&ds->packets, &ds->cap_packets, ds->n_packets + n, sizeof *ds->packets);
    if (res != FLOWPIC_OK) return res;
    b = &ds->blocks[ds->n_blocks++];
    memset(b, 0, sizeof *b);
    b->start_ns = start_ns;
    b->first = ds->n_packets;
    b->flow = flow;
    b->index = index;
    b->n_packets = n;
    b->label = label;
    ds->n_packets += n;
    *out = b;
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_dataset_add_block(flowpic_dataset *ds, uint32_t flow, uint16_t label,
                                                     const flowpic_block *b)
{
    flowpic_ds_block *rec;
    flowpic_result res = flowpic__ds_append(ds, flow, label, b->index, b->start_ns, b->n_packets, &rec);
    if (res != FLOWPIC_OK) return res;
    if (b->n_packets) memcpy(ds->packets + rec->first, b->packets, (size_t)b->n_packets * sizeof *b->packets);
    return FLOWPIC_OK;
}

FLOWPIC_DEF const flowpic_pkt *flowpic_dataset_block_packets(const flowpic_dataset *ds, size_t block)
{
    return ds->packets + ds->blocks[block].first;
}

static int flowpic__same_config(const flowpic_block_config *a, const flowpic_block_config *b)
{
    return a->preset == b->preset && a->block_ns == b->block_ns && a->step_ns == b->step_ns &&
           a->min_packets == b->min_packets && a->max_size == b->max_size &&
           a->size_policy == b->size_policy && a->bidirectional == b->bidirectional &&
           a->idle_timeout_ns == b->idle_timeout_ns;
}

static void flowpic__error(flowpic_error *err, flowpic_result code, uint64_t offset, const char *reason)
{
    if (!err) return;
    err->code = code;
    err->offset = offset;
    strncpy(err->reason, reason, sizeof err->reason - 1);
    err->reason[sizeof err->reason - 1] = '\0';
}

FLOWPIC_DEF flowpic_result flowpic_dataset_merge(flowpic_dataset *dst, const flowpic_dataset *src,
                                                 flowpic_error *err)
{
    uint32_t *source_map = 0, flow_base;
    uint16_t *label_map = 0;
    flowpic_result res = FLOWPIC_OK;
    size_t i;
    if (dst->n_blocks == 0 && dst->n_flows == 0) dst->config = src->config;
    if (!flowpic__same_config(&dst->config, &src->config)) {
        flowpic__error(err, FLOWPIC_ERR_ARG, 0, "the data sets were cut with different block settings");
        return FLOWPIC_ERR_ARG;
    }
    source_map = (uint32_t *)FLOWPIC_MALLOC(((size_t)src->n_sources + 1) * sizeof *source_map);
    label_map = (uint16_t *)FLOWPIC_MALLOC(((size_t)src->n_classes + 1) * sizeof *label_map);
    if (!source_map || !label_map) res = FLOWPIC_ERR_NOMEM;
    for (i = 0; res == FLOWPIC_OK && i < src->n_sources; i++)
        res = flowpic_dataset_source(dst, src->sources[i], &source_map[i]);
    for (i = 0; res == FLOWPIC_OK && i < src->n_classes; i++)
        res = flowpic_dataset_class(dst, src->classes[i], &label_map[i]);
    flow_base = (uint32_t)dst->n_flows;
    if (res == FLOWPIC_OK && dst->n_flows + src->n_flows > 0xFFFFFFFFu) res = FLOWPIC_ERR_LIMIT;
    for (i = 0; res == FLOWPIC_OK && i < src->n_flows; i++) {
        uint32_t id;
        const flowpic_ds_flow *f = &src->flows[i];
        res = flowpic_dataset_add_flow(dst, &f->key, source_map[f->source], f->generation, &id);
    }
    for (i = 0; res == FLOWPIC_OK && i < src->n_blocks; i++) {
        const flowpic_ds_block *b = &src->blocks[i];
        flowpic_ds_block *rec;
        res = flowpic__ds_append(dst, flow_base + b->flow, label_map[b->label], b->index, b->start_ns, b->n_packets,
                                 &rec);
        if (res == FLOWPIC_OK && b->n_packets)
            memcpy(dst->packets + rec->first, src->packets + b->first, (size_t)b->n_packets * sizeof *dst->packets);
    }
    FLOWPIC_FREE(source_map);
    FLOWPIC_FREE(label_map);
    if (res != FLOWPIC_OK) flowpic__error(err, res, 0, flowpic_result_string(res));
    return res;
}

/* ---- dataset: file format (docs/DATASET.md) ----------------------------------------------------- */

#define FLOWPIC__DS_HEADER 80u
#define FLOWPIC__DS_FLOW 48u
#define FLOWPIC__DS_BLOCK 32u

/* A growable output buffer; an allocation failure sticks and is reported at the end. */
typedef struct flowpic__out {
    uint8_t *data;
    size_t len, cap;
    int failed;
} flowpic__out;

static void flowpic__put(flowpic__out *o, const void *p, size_t n)
{
    if (o->failed || n == 0) return;
    if (flowpic__reserve((void **)&o->data, &o->cap, o->len + n, 1) != FLOWPIC_OK) {
        o->failed = 1;
        return;
    }
    memcpy(o->data + o->len, p, n);
    o->len += n;
}

static uint64_t flowpic__zigzag(int64_t v) { return v < 0 ? ((uint64_t)(-(v + 1)) << 1) | 1u : (uint64_t)v << 1; }

static size_t flowpic__varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Writers into a buffer sized beforehand: each returns the advanced cursor. */
static uint8_t *flowpic__w_le(uint8_t *w, uint64_t v, int bytes)
{
    int i;
    for (i = 0; i < bytes; i++) *w++ = (uint8_t)(v >> (8 * i));
    return w;
}

static uint8_t *flowpic__w_varint(uint8_t *w, uint64_t v)
{
    while (v >= 0x80) {
        *w++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *w++ = (uint8_t)v;
    return w;
}

static uint8_t *flowpic__w_name(uint8_t *w, const char *s)
{
    size_t n = strlen(s);
    w = flowpic__w_le(w, n, 2);
    memcpy(w, s, n);
    return w + n;
}

/* A block's packets: zigzag varint of the offset delta, varint of the size. With w == NULL,
 * only their encoded length. */
static size_t flowpic__encode_packets(uint8_t *w, const flowpic_pkt *p, uint32_t n)
{
    uint64_t prev = 0;
    size_t len = 0;
    uint32_t i;
    for (i = 0; i < n; i++) {
        uint64_t off = FLOWPIC_PKT_OFFSET(p[i]), delta = flowpic__zigzag((int64_t)(off - prev));
        if (w) {
            uint8_t *end = flowpic__w_varint(flowpic__w_varint(w + len, delta), FLOWPIC_PKT_SIZE(p[i]));
            len = (size_t)(end - w);
        } else {
            len += flowpic__varint_len(delta) + flowpic__varint_len(FLOWPIC_PKT_SIZE(p[i]));
        }
        prev = off;
    }
    return len;
}

FLOWPIC_DEF flowpic_result flowpic_dataset_to_memory(const flowpic_dataset *ds, uint8_t **data, size_t *size)
{
    const flowpic_block_config *c = &ds->config;
    size_t i, total = FLOWPIC__DS_HEADER + 4, *bytes;
    uint8_t *out, *w;
    bytes = (size_t *)FLOWPIC_MALLOC((ds->n_blocks ? ds->n_blocks : 1) * sizeof *bytes);
    if (!bytes) return FLOWPIC_ERR_NOMEM;
    for (i = 0; i < ds->n_classes; i++) total += 2 + strlen(ds->classes[i]);
    for (i = 0; i < ds->n_sources; i++) total += 2 + strlen(ds->sources[i]);
    total += ds->n_flows * FLOWPIC__DS_FLOW + ds->n_blocks * FLOWPIC__DS_BLOCK;
    for (i = 0; i < ds->n_blocks; i++) {
        bytes[i] = flowpic__encode_packets(0, ds->packets + ds->blocks[i].first, ds->blocks[i].n_packets);
        total += bytes[i];
    }
    out = (uint8_t *)FLOWPIC_MALLOC(total);
    if (!out) {
        FLOWPIC_FREE(bytes);
        return FLOWPIC_ERR_NOMEM;
    }
    memcpy(out, "FPDS", 4);
    w = flowpic__w_le(out + 4, 1, 4);
    w = flowpic__w_le(w, (uint64_t)c->preset | (uint64_t)c->size_policy << 8 | (uint64_t)(c->bidirectional != 0) << 16, 4);
    w = flowpic__w_le(w, c->min_packets, 4);
    w = flowpic__w_le(w, c->max_size, 4);
    w = flowpic__w_le(w, 0, 4);
    w = flowpic__w_le(w, c->block_ns, 8);
    w = flowpic__w_le(w, c->step_ns, 8);
    w = flowpic__w_le(w, c->idle_timeout_ns, 8);
    w = flowpic__w_le(w, ds->n_classes, 4);
    w = flowpic__w_le(w, ds->n_sources, 4);
    w = flowpic__w_le(w, ds->n_flows, 8);
    w = flowpic__w_le(w, ds->n_blocks, 8);
    w = flowpic__w_le(w, ds->n_packets, 8);
    for (i = 0; i < ds->n_classes; i++) w = flowpic__w_name(w, ds->classes[i]);
    for (i = 0; i < ds->n_sources; i++) w = flowpic__w_name(w, ds->sources[i]);
    for (i = 0; i < ds->n_flows; i++) {
        const flowpic_ds_flow *f = &ds->flows[i];
        memcpy(w, f->key.src, 16);
        memcpy(w + 16, f->key.dst, 16);
        w = flowpic__w_le(w + 32, f->key.sport, 2);
        w = flowpic__w_le(w, f->key.dport, 2);
        w = flowpic__w_le(w, f->key.proto, 1);
        w = flowpic__w_le(w, f->key.ip_version, 1);
        w = flowpic__w_le(w, 0, 2);
        w = flowpic__w_le(w, f->source, 4);
        w = flowpic__w_le(w, f->generation, 4);
    }
    for (i = 0; i < ds->n_blocks; i++) {
        const flowpic_ds_block *b = &ds->blocks[i];
        w = flowpic__w_le(w, b->flow, 4);
        w = flowpic__w_le(w, b->label, 2);
        w = flowpic__w_le(w, 0, 2);
        w = flowpic__w_le(w, b->index, 4);
        w = flowpic__w_le(w, b->n_packets, 4);
        w = flowpic__w_le(w, b->start_ns, 8);
        w = flowpic__w_le(w, bytes[i], 8);
    }
    for (i = 0; i < ds->n_blocks; i++)
        w += flowpic__encode_packets(w, ds->packets + ds->blocks[i].first, ds->blocks[i].n_packets);
    w = flowpic__w_le(w, flowpic_crc32(0, out, (size_t)(w - out)), 4);
    FLOWPIC_ASSERT((size_t)(w - out) == total);
    FLOWPIC_FREE(bytes);
    *data = out;
    *size = total;
    return FLOWPIC_OK;
}

/* A bounds-checked cursor over a file in memory; the first failure sticks with its offset. */
typedef struct flowpic__in {
    const uint8_t *data;
    size_t len, pos;
    flowpic_error *err;
    int failed;
} flowpic__in;

static int flowpic__in_fail(flowpic__in *in, uint64_t offset, const char *what, uint64_t a, uint64_t b)
{
    if (!in->failed && in->err) {
        uint64_t nums[2];
        nums[0] = a;
        nums[1] = b;
        in->err->code = FLOWPIC_ERR_FORMAT;
        in->err->offset = offset;
        pcapl__vformat(in->err->reason, sizeof in->err->reason, what, nums, "");
    }
    in->failed = 1;
    return 0;
}

static uint64_t flowpic__get_le(flowpic__in *in, int bytes)
{
    uint64_t v = 0;
    int i;
    if (in->failed) return 0;
    if (in->len - in->pos < (size_t)bytes) {
        flowpic__in_fail(in, in->pos, "file ends inside a field", 0, 0);
        return 0;
    }
    for (i = 0; i < bytes; i++) v |= (uint64_t)in->data[in->pos + (size_t)i] << (8 * i);
    in->pos += (size_t)bytes;
    return v;
}

static uint64_t flowpic__get_varint(flowpic__in *in, size_t end)
{
    uint64_t v = 0;
    int shift = 0;
    size_t start = in->pos;
    while (!in->failed) {
        uint8_t b;
        if (in->pos >= end) {
            flowpic__in_fail(in, start, "packet data ends inside a number", 0, 0);
            return 0;
        }
        b = in->data[in->pos++];
        if (shift == 63 && b > 1) {
            flowpic__in_fail(in, start, "number longer than 64 bits", 0, 0);
            return 0;
        }
        v |= (uint64_t)(b & 0x7Fu) << shift;
        if (!(b & 0x80u)) break;
        shift += 7;
    }
    return v;
}

/* A name: u16 length and bytes, printable (no control characters: names go into TSV). */
static char *flowpic__get_name(flowpic__in *in, int allow_empty)
{
    size_t at = in->pos, n = (size_t)flowpic__get_le(in, 2), i;
    char *s;
    if (in->failed) return 0;
    if ((!n && !allow_empty) || n > in->len - in->pos) {
        flowpic__in_fail(in, at, "name of %u bytes does not fit", n, 0);
        return 0;
    }
    for (i = 0; i < n; i++)
        if (in->data[in->pos + i] < 0x20 || in->data[in->pos + i] == 0x7F) {
            flowpic__in_fail(in, in->pos + i, "control character 0x%x in a name", in->data[in->pos + i], 0);
            return 0;
        }
    s = (char *)FLOWPIC_MALLOC(n + 1);
    if (!s) return 0;
    memcpy(s, in->data + in->pos, n);
    s[n] = '\0';
    in->pos += n;
    return s;
}

static flowpic_result flowpic__get_names(flowpic__in *in, char ***names, uint32_t n, size_t *cap, int allow_empty)
{
    uint32_t i;
    if ((size_t)n > (in->len - in->pos) / 2) {
        flowpic__in_fail(in, in->pos, "%u names cannot fit in the file", n, 0);
        return FLOWPIC_ERR_FORMAT;
    }
    *names = (char **)FLOWPIC_MALLOC(((size_t)n + 1) * sizeof **names);
    if (!*names) return FLOWPIC_ERR_NOMEM;
    *cap = (size_t)n + 1;
    for (i = 0; i < n; i++) {
        (*names)[i] = flowpic__get_name(in, allow_empty);
        if (!(*names)[i]) {
            uint32_t k;
            for (k = 0; k < i; k++) FLOWPIC_FREE((*names)[k]);
            FLOWPIC_FREE(*names);
            *names = 0;
            return in->failed ? FLOWPIC_ERR_FORMAT : FLOWPIC_ERR_NOMEM;
        }
    }
    return FLOWPIC_OK;
}

/* The fixed header: magic, version, cutting configuration, counts (checked against the size). */
static flowpic_result flowpic__get_header(flowpic__in *in, flowpic_dataset *ds, uint64_t *counts)
{
    flowpic_block_config *c = &ds->config;
    uint64_t flags, version;
    size_t body;
    if (in->len < FLOWPIC__DS_HEADER + 4) {
        flowpic__in_fail(in, 0, "file of %u bytes is shorter than a data-set header", in->len, 0);
        return FLOWPIC_ERR_FORMAT;
    }
    if (memcmp(in->data, "FPDS", 4)) {
        flowpic__in_fail(in, 0, "not a flowpic data set (magic is not FPDS)", 0, 0);
        return FLOWPIC_ERR_FORMAT;
    }
    in->pos = 4;
    version = flowpic__get_le(in, 4);
    if (version != 1) {
        flowpic__in_fail(in, 4, "unsupported data-set version %u (this reader knows 1)", version, 0);
        return FLOWPIC_ERR_FORMAT;
    }
    if (flowpic_crc32(0, in->data, in->len - 4) != pcapl__le32(in->data + in->len - 4)) {
        flowpic__in_fail(in, in->len - 4, "checksum mismatch: the file is damaged", 0, 0);
        return FLOWPIC_ERR_FORMAT;
    }
    flags = flowpic__get_le(in, 4);
    c->preset = (flowpic_preset)(flags & 0xFFu);
    c->size_policy = (flowpic_size_policy)((flags >> 8) & 0xFFu);
    c->bidirectional = (int)((flags >> 16) & 0xFFu);
    c->min_packets = (uint32_t)flowpic__get_le(in, 4);
    c->max_size = (uint32_t)flowpic__get_le(in, 4);
    flowpic__get_le(in, 4);
    c->block_ns = flowpic__get_le(in, 8);
    c->step_ns = flowpic__get_le(in, 8);
    c->idle_timeout_ns = flowpic__get_le(in, 8);
    c->max_flows = FLOWPIC_DEFAULT_MAX_FLOWS;
    if ((flags >> 24) || c->size_policy > FLOWPIC_SIZE_CLIP || c->bidirectional > 1 ||
        flowpic_block_config_check(c) != FLOWPIC_OK) {
        flowpic__in_fail(in, 8, "invalid block configuration", 0, 0);
        return FLOWPIC_ERR_FORMAT;
    }
    counts[0] = flowpic__get_le(in, 4); /* classes */
    counts[1] = flowpic__get_le(in, 4); /* sources */
    counts[2] = flowpic__get_le(in, 8); /* flows */
    counts[3] = flowpic__get_le(in, 8); /* blocks */
    counts[4] = flowpic__get_le(in, 8); /* packets */
    body = in->len - 4 - in->pos;
    if (counts[0] > FLOWPIC_MAX_CLASSES) {
        flowpic__in_fail(in, 48, "%u classes exceed the limit of %u", counts[0], FLOWPIC_MAX_CLASSES);
        return FLOWPIC_ERR_FORMAT;
    }
    /* every record has a minimum size: no count can ask for more memory than the file holds */
    if (counts[2] > body / FLOWPIC__DS_FLOW || counts[3] > body / FLOWPIC__DS_BLOCK || counts[4] > body / 2) {
        flowpic__in_fail(in, 56, "counts (%u flows, %u blocks) cannot fit in the file", counts[2], counts[3]);
        return FLOWPIC_ERR_FORMAT;
    }
    return FLOWPIC_OK;
}

static flowpic_result flowpic__get_flows(flowpic__in *in, flowpic_dataset *ds, uint64_t n)
{
    size_t i;
    ds->flows = (flowpic_ds_flow *)FLOWPIC_MALLOC((size_t)(n ? n : 1) * sizeof *ds->flows);
    if (!ds->flows) return FLOWPIC_ERR_NOMEM;
    ds->cap_flows = (size_t)(n ? n : 1);
    for (i = 0; i < n && !in->failed; i++) {
        flowpic_ds_flow *f = &ds->flows[i];
        size_t at = in->pos;
        memset(f, 0, sizeof *f);
        memcpy(f->key.src, in->data + in->pos, 16);
        memcpy(f->key.dst, in->data + in->pos + 16, 16);
        in->pos += 32;
        f->key.sport = (uint16_t)flowpic__get_le(in, 2);
        f->key.dport = (uint16_t)flowpic__get_le(in, 2);
        f->key.proto = (uint8_t)flowpic__get_le(in, 1);
        f->key.ip_version = (uint8_t)flowpic__get_le(in, 1);
        flowpic__get_le(in, 2);
        f->source = (uint32_t)flowpic__get_le(in, 4);
        f->generation = (uint32_t)flowpic__get_le(in, 4);
        if (f->key.ip_version != 4 && f->key.ip_version != 6)
            flowpic__in_fail(in, at + 37, "flow %u has IP version %u", i, f->key.ip_version);
        else if (f->source >= ds->n_sources)
            flowpic__in_fail(in, at + 40, "flow %u refers to source %u", i, f->source);
        ds->n_flows = i + 1;
    }
    return in->failed ? FLOWPIC_ERR_FORMAT : FLOWPIC_OK;
}

/* Block records, then their packets. */
static flowpic_result flowpic__get_blocks(flowpic__in *in, flowpic_dataset *ds, uint64_t n, uint64_t n_packets)
{
    uint64_t *bytes, total = 0;
    size_t i, table = in->pos;
    ds->blocks = (flowpic_ds_block *)FLOWPIC_MALLOC((size_t)(n ? n : 1) * sizeof *ds->blocks);
    ds->packets = (flowpic_pkt *)FLOWPIC_MALLOC((size_t)(n_packets ? n_packets : 1) * sizeof *ds->packets);
    bytes = (uint64_t *)FLOWPIC_MALLOC((size_t)(n ? n : 1) * sizeof *bytes);
    if (!ds->blocks || !ds->packets || !bytes) {
        FLOWPIC_FREE(bytes);
        return FLOWPIC_ERR_NOMEM;
    }
    ds->cap_blocks = (size_t)(n ? n : 1);
    ds->cap_packets = (size_t)(n_packets ? n_packets : 1);
    for (i = 0; i < n && !in->failed; i++) {
        flowpic_ds_block *b = &ds->blocks[i];
        size_t at = table + i * FLOWPIC__DS_BLOCK;
        memset(b, 0, sizeof *b);
        b->flow = (uint32_t)flowpic__get_le(in, 4);
        b->label = (uint16_t)flowpic__get_le(in, 2);
        flowpic__get_le(in, 2);
        b->index = (uint32_t)flowpic__get_le(in, 4);
        b->n_packets = (uint32_t)flowpic__get_le(in, 4);
        b->start_ns = flowpic__get_le(in, 8);
        bytes[i] = flowpic__get_le(in, 8);
        b->first = total;
        if (b->flow >= ds->n_flows) flowpic__in_fail(in, at, "block %u refers to flow %u", i, b->flow);
        else if (b->label >= ds->n_classes) flowpic__in_fail(in, at + 4, "block %u has label %u", i, b->label);
        else if (b->n_packets > n_packets - total)
            flowpic__in_fail(in, at + 12, "block %u has more packets than the header counts", i, 0);
        else if (bytes[i] < 2ull * b->n_packets || bytes[i] > 20ull * b->n_packets)
            flowpic__in_fail(in, at + 24, "block %u: %u bytes cannot encode its packets", i, bytes[i]);
        total += b->n_packets;
        ds->n_blocks = i + 1;
    }
    if (!in->failed && total != n_packets)
        flowpic__in_fail(in, 72, "the header counts %u packets, the blocks %u", n_packets, total);
    for (i = 0; i < n && !in->failed; i++) {
        const flowpic_ds_block *b = &ds->blocks[i];
        size_t end = in->pos + (size_t)bytes[i], at = in->pos;
        uint64_t off = 0;
        uint32_t k;
        if (bytes[i] > in->len - 4 - in->pos) {
            flowpic__in_fail(in, at, "packets of block %u run past the end of the file", i, 0);
            break;
        }
        for (k = 0; k < b->n_packets && !in->failed; k++) {
            uint64_t z = flowpic__get_varint(in, end), size = flowpic__get_varint(in, end);
            uint64_t delta = z >> 1;
            if (z & 1u) {
                if (delta + 1 > off) flowpic__in_fail(in, at, "block %u: packet %u before the window start", i, k);
                off -= delta + 1;
            } else {
                if (delta > FLOWPIC_MAX_OFFSET_NS - off)
                    flowpic__in_fail(in, at, "block %u: packet %u beyond the largest offset", i, k);
                off += delta;
            }
            if (size > 65535) flowpic__in_fail(in, at, "block %u: packet size %u", i, size);
            ds->packets[b->first + k] = FLOWPIC_PKT(off, size);
        }
        if (!in->failed && in->pos != end)
            flowpic__in_fail(in, in->pos, "block %u: %u bytes left after its packets", i, end - in->pos);
        ds->n_packets = b->first + b->n_packets;
    }
    FLOWPIC_FREE(bytes);
    return in->failed ? FLOWPIC_ERR_FORMAT : FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_dataset_from_memory(flowpic_dataset *ds, const uint8_t *data, size_t size,
                                                       flowpic_error *err)
{
    flowpic__in in;
    uint64_t counts[5];
    flowpic_result res;
    flowpic_error local;
    memset(&in, 0, sizeof in);
    in.data = data;
    in.len = size;
    in.err = err ? err : &local;
    memset(in.err, 0, sizeof *in.err);
    flowpic_dataset_init(ds, 0);
    res = flowpic__get_header(&in, ds, counts);
    if (res == FLOWPIC_OK)
        res = flowpic__get_names(&in, &ds->classes, (uint32_t)counts[0], &ds->cap_classes, 0);
    if (res == FLOWPIC_OK) ds->n_classes = (uint32_t)counts[0];
    if (res == FLOWPIC_OK)
        res = flowpic__get_names(&in, &ds->sources, (uint32_t)counts[1], &ds->cap_sources, 1);
    if (res == FLOWPIC_OK) ds->n_sources = (uint32_t)counts[1];
    if (res == FLOWPIC_OK && counts[2] > (in.len - 4 - in.pos) / FLOWPIC__DS_FLOW) {
        flowpic__in_fail(&in, in.pos, "%u flows cannot fit in the file", counts[2], 0);
        res = FLOWPIC_ERR_FORMAT;
    }
    if (res == FLOWPIC_OK) res = flowpic__get_flows(&in, ds, counts[2]);
    if (res == FLOWPIC_OK && counts[3] > (in.len - 4 - in.pos) / FLOWPIC__DS_BLOCK) {
        flowpic__in_fail(&in, in.pos, "%u blocks cannot fit in the file", counts[3], 0);
        res = FLOWPIC_ERR_FORMAT;
    }
    if (res == FLOWPIC_OK) res = flowpic__get_blocks(&in, ds, counts[3], counts[4]);
    if (res == FLOWPIC_OK && in.pos != in.len - 4) {
        flowpic__in_fail(&in, in.pos, "%u bytes after the last block", in.len - 4 - in.pos, 0);
        res = FLOWPIC_ERR_FORMAT;
    }
    if (res != FLOWPIC_OK) {
        if (res == FLOWPIC_ERR_NOMEM) flowpic__error(in.err, res, in.pos, "out of memory");
        flowpic_dataset_free(ds);
    }
    return res;
}

#ifndef FLOWPIC_NO_STDIO
FLOWPIC_DEF flowpic_result flowpic_read_file(const char *path, uint64_t max, uint8_t **data, size_t *size,
                                             flowpic_error *err)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = 0;
    size_t len = 0, cap = 0;
    flowpic_result res = FLOWPIC_OK;
    if (!f) {
        flowpic__error(err, FLOWPIC_ERR_IO, 0, "cannot open");
        return FLOWPIC_ERR_IO;
    }
    for (;;) { /* no seeking: works on pipes too */
        size_t got;
        if (len == cap && (res = flowpic__reserve((void **)&buf, &cap, len + 65536, 1)) != FLOWPIC_OK) break;
        got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len > max) {
            res = FLOWPIC_ERR_LIMIT;
            flowpic__error(err, res, max, "file larger than the limit");
            break;
        }
        if (got == 0) {
            if (ferror(f)) {
                res = FLOWPIC_ERR_IO;
                flowpic__error(err, res, len, "read error");
            }
            break;
        }
    }
    fclose(f);
    if (res != FLOWPIC_OK) {
        if (res == FLOWPIC_ERR_NOMEM) flowpic__error(err, res, len, "out of memory");
        FLOWPIC_FREE(buf);
        return res;
    }
    *data = buf;
    *size = len;
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_write_file_atomic(const char *path, const void *data, size_t size,
                                                     flowpic_error *err)
{
    size_t n = strlen(path);
    char *tmp = (char *)FLOWPIC_MALLOC(n + 5);
    FILE *f;
    int ok;
    if (!tmp) {
        flowpic__error(err, FLOWPIC_ERR_NOMEM, 0, "out of memory");
        return FLOWPIC_ERR_NOMEM;
    }
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    f = fopen(tmp, "wb");
    if (!f) {
        FLOWPIC_FREE(tmp);
        flowpic__error(err, FLOWPIC_ERR_IO, 0, "cannot create the output file");
        return FLOWPIC_ERR_IO;
    }
    ok = fwrite(data, 1, size, f) == size;
    ok = (fflush(f) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) remove(tmp);
    FLOWPIC_FREE(tmp);
    if (!ok) {
        flowpic__error(err, FLOWPIC_ERR_IO, 0, "cannot write the output file (disk full?)");
        return FLOWPIC_ERR_IO;
    }
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_dataset_save(const flowpic_dataset *ds, const char *path, flowpic_error *err)
{
    uint8_t *data;
    size_t size;
    flowpic_result res = flowpic_dataset_to_memory(ds, &data, &size);
    if (res != FLOWPIC_OK) {
        flowpic__error(err, res, 0, flowpic_result_string(res));
        return res;
    }
    res = flowpic_write_file_atomic(path, data, size, err);
    FLOWPIC_FREE(data);
    return res;
}

FLOWPIC_DEF flowpic_result flowpic_dataset_load(flowpic_dataset *ds, const char *path, flowpic_error *err)
{
    uint8_t *data;
    size_t size;
    flowpic_result res = flowpic_read_file(path, FLOWPIC_MAX_DATASET_BYTES, &data, &size, err);
    if (res != FLOWPIC_OK) {
        flowpic_dataset_init(ds, 0);
        return res;
    }
    res = flowpic_dataset_from_memory(ds, data, size, err);
    FLOWPIC_FREE(data);
    return res;
}
#endif

/* ---- images ------------------------------------------------------------------------------------ */

/* The 8-bit gray image (0 = black) of a picture: rows top (largest sizes) to bottom. */
static flowpic_result flowpic__gray(const flowpic_picture *pic, uint32_t scale, uint32_t dot, uint8_t **gray,
                                    uint32_t *side)
{
    uint32_t i, s = pic->res * scale;
    if (!scale || !pic->res || scale > FLOWPIC_MAX_RES || s > 65536u || dot > 64) return FLOWPIC_ERR_ARG;
    *gray = (uint8_t *)FLOWPIC_MALLOC((size_t)s * s);
    if (!*gray) return FLOWPIC_ERR_NOMEM;
    memset(*gray, 255, (size_t)s * s);
    for (i = 0; i < pic->n; i++) {
        uint32_t row = pic->pixels[i].index / pic->res, col = pic->pixels[i].index % pic->res, y;
        uint32_t top = (pic->res - 1 - row) * scale, left = col * scale;
        uint32_t y0 = top > dot ? top - dot : 0, x0 = left > dot ? left - dot : 0;
        uint32_t y1 = top + scale + dot < s ? top + scale + dot : s, x1 = left + scale + dot < s ? left + scale + dot : s;
        for (y = y0; y < y1; y++) memset(*gray + (size_t)y * s + x0, 0, x1 - x0);
    }
    *side = s;
    return FLOWPIC_OK;
}

static void flowpic__put_be32(flowpic__out *o, uint32_t v)
{
    uint8_t b[4];
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
    flowpic__put(o, b, 4);
}

/* One PNG chunk: length, type, data, CRC of type and data. */
static void flowpic__png_chunk(flowpic__out *o, const char *type, const uint8_t *data, size_t n)
{
    size_t at;
    flowpic__put_be32(o, (uint32_t)n);
    at = o->len;
    flowpic__put(o, type, 4);
    flowpic__put(o, data, n);
    if (!o->failed) flowpic__put_be32(o, flowpic_crc32(0, o->data + at, n + 4));
}

FLOWPIC_DEF flowpic_result flowpic_picture_png(const flowpic_picture *pic, uint32_t scale, uint32_t dot,
                                               uint8_t **data, size_t *size)
{
    uint8_t *gray, ihdr[13];
    uint32_t side, y, a = 1, b = 0;
    flowpic__out o, z;
    size_t raw, done = 0, i;
    flowpic_result res = flowpic__gray(pic, scale, dot, &gray, &side);
    if (res != FLOWPIC_OK) return res;
    memset(&o, 0, sizeof o);
    memset(&z, 0, sizeof z);
    /* zlib stream of stored deflate blocks over the filtered rows (filter byte 0 each) */
    raw = (size_t)side * (side + 1);
    flowpic__put(&z, "\x78\x01", 2);
    while (done < raw) {
        size_t n = raw - done > 65535 ? 65535 : raw - done;
        uint8_t hdr[5];
        hdr[0] = done + n == raw ? 1 : 0;
        hdr[1] = (uint8_t)n;
        hdr[2] = (uint8_t)(n >> 8);
        hdr[3] = (uint8_t)~n;
        hdr[4] = (uint8_t)(~n >> 8);
        flowpic__put(&z, hdr, 5);
        for (i = done; i < done + n; i++) {
            size_t row = i / (side + 1), col = i % (side + 1);
            uint8_t v = col == 0 ? 0 : gray[row * side + col - 1];
            flowpic__put(&z, &v, 1);
            a = (a + v) % 65521u;
            b = (b + a) % 65521u;
        }
        done += n;
    }
    flowpic__put_be32(&z, b << 16 | a);
    flowpic__put(&o, "\x89PNG\r\n\x1a\n", 8);
    for (y = 0; y < 4; y++) {
        ihdr[y] = (uint8_t)(side >> (24 - 8 * y));
        ihdr[4 + y] = ihdr[y];
    }
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 0;  /* grayscale */
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    flowpic__png_chunk(&o, "IHDR", ihdr, 13);
    if (!z.failed) flowpic__png_chunk(&o, "IDAT", z.data, z.len);
    flowpic__png_chunk(&o, "IEND", 0, 0);
    FLOWPIC_FREE(gray);
    FLOWPIC_FREE(z.data);
    if (o.failed || z.failed) {
        FLOWPIC_FREE(o.data);
        return FLOWPIC_ERR_NOMEM;
    }
    *data = o.data;
    *size = o.len;
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_picture_pgm(const flowpic_picture *pic, uint32_t scale, uint32_t dot,
                                               uint8_t **data, size_t *size)
{
    uint8_t *gray;
    uint32_t side;
    char head[64];
    flowpic__out o;
    int n;
    flowpic_result res = flowpic__gray(pic, scale, dot, &gray, &side);
    if (res != FLOWPIC_OK) return res;
    memset(&o, 0, sizeof o);
    n = snprintf(head, sizeof head, "P5\n%u %u\n255\n", side, side);
    flowpic__put(&o, head, (size_t)n);
    flowpic__put(&o, gray, (size_t)side * side);
    FLOWPIC_FREE(gray);
    if (o.failed) {
        FLOWPIC_FREE(o.data);
        return FLOWPIC_ERR_NOMEM;
    }
    *data = o.data;
    *size = o.len;
    return FLOWPIC_OK;
}

FLOWPIC_DEF size_t flowpic_npy_header(char *header, const char *dtype, const uint64_t *shape, int ndim)
{
    char dims[96];
    size_t len = 0, total;
    int i;
    dims[0] = '\0';
    for (i = 0; i < ndim; i++)
        len += (size_t)snprintf(dims + len, sizeof dims - len, "%llu%s", (unsigned long long)shape[i],
                                ndim == 1 || i + 1 < ndim ? "," : "");
    memcpy(header, "\x93NUMPY\x01\x00", 8);
    len = (size_t)snprintf(header + 10, FLOWPIC_NPY_HEADER - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                           dtype, dims);
    total = FLOWPIC_NPY_HEADER; /* padded with spaces, ending in a newline: 64-byte aligned data */
    memset(header + 10 + len, ' ', total - 10 - len);
    header[total - 1] = '\n';
    header[8] = (char)((total - 10) & 0xFF);
    header[9] = (char)((total - 10) >> 8);
    return total;
}

/* ---- extract ----------------------------------------------------------------------------------- */

/* The blocks of one capture, kept until the flows' totals are known. */
typedef struct flowpic__held {
    flowpic_dataset *ds;     /* the destination */
    flowpic_dataset held;    /* blocks go here first, one flow record per (flow, generation) */
    size_t *flow_of;         /* held flow -> cutter flow */
    size_t cap_flow_of;
    uint32_t *held_of;       /* cutter flow -> its latest held flow, or UINT32_MAX */
    size_t n_held_of, cap_held_of;
    flowpic_result error;
} flowpic__held;

/* The held flow record of a block's (flow, generation), created when new. */
static flowpic_result flowpic__held_flow(flowpic__held *h, const flowpic_block *b, uint32_t *id)
{
    flowpic_result res;
    while (h->n_held_of <= b->flow) {
        res = flowpic__reserve((void **)&h->held_of, &h->cap_held_of, h->n_held_of + 1, sizeof *h->held_of);
        if (res != FLOWPIC_OK) return res;
        h->held_of[h->n_held_of++] = UINT32_MAX;
    }
    *id = h->held_of[b->flow];
    if (*id != UINT32_MAX && h->held.flows[*id].generation == b->flow_generation) return FLOWPIC_OK;
    res = flowpic_dataset_add_flow(&h->held, &b->key, 0, b->flow_generation, id);
    if (res == FLOWPIC_OK) res = flowpic__reserve((void **)&h->flow_of, &h->cap_flow_of, *id + 1u, sizeof *h->flow_of);
    if (res != FLOWPIC_OK) return res;
    h->flow_of[*id] = b->flow;
    h->held_of[b->flow] = *id;
    return FLOWPIC_OK;
}

static void flowpic__hold_block(void *user, const flowpic_block *b)
{
    flowpic__held *h = (flowpic__held *)user;
    uint32_t id;
    if (h->error != FLOWPIC_OK) return;
    h->error = flowpic__held_flow(h, b, &id);
    if (h->error == FLOWPIC_OK) h->error = flowpic_dataset_add_block(&h->held, id, 0, b);
}

/* A held flow's place in the output: by the cutter's first-seen order, then generation. */
typedef struct flowpic__flow_rank {
    uint64_t cutter_flow;
    uint32_t generation;
    uint32_t held;
} flowpic__flow_rank;

static int flowpic__cmp_rank(const void *a, const void *b)
{
    const flowpic__flow_rank *x = (const flowpic__flow_rank *)a, *y = (const flowpic__flow_rank *)b;
    if (x->cutter_flow != y->cutter_flow) return x->cutter_flow < y->cutter_flow ? -1 : 1;
    return x->generation < y->generation ? -1 : x->generation > y->generation;
}

/* Blocks by their flow's rank (stored in flow), then window. */
static int flowpic__cmp_held(const void *a, const void *b)
{
    const flowpic_ds_block *x = (const flowpic_ds_block *)a, *y = (const flowpic_ds_block *)b;
    if (x->flow != y->flow) return x->flow < y->flow ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Moves the held blocks of the flows label() names into h->ds, flows in first-seen order. */
static flowpic_result flowpic__release(flowpic__held *h, const flowpic_cutter *c, uint32_t source,
                                       flowpic_label_fn label, void *user)
{
    flowpic_dataset *ds = h->ds;
    flowpic__flow_rank *ranks;
    uint32_t *rank_of, ds_flow = 0, last = UINT32_MAX;
    uint16_t class_id = 0;
    size_t i, n = h->held.n_flows ? h->held.n_flows : 1;
    int keep = 0;
    flowpic_result res = FLOWPIC_OK;
    ranks = (flowpic__flow_rank *)FLOWPIC_MALLOC(n * sizeof *ranks);
    rank_of = (uint32_t *)FLOWPIC_MALLOC(n * sizeof *rank_of);
    if (!ranks || !rank_of) res = FLOWPIC_ERR_NOMEM;
    for (i = 0; res == FLOWPIC_OK && i < h->held.n_flows; i++) {
        ranks[i].cutter_flow = h->flow_of[i];
        ranks[i].generation = h->held.flows[i].generation;
        ranks[i].held = (uint32_t)i;
    }
    if (res == FLOWPIC_OK) {
        qsort(ranks, h->held.n_flows, sizeof *ranks, flowpic__cmp_rank);
        for (i = 0; i < h->held.n_flows; i++) rank_of[ranks[i].held] = (uint32_t)i;
        for (i = 0; i < h->held.n_blocks; i++) h->held.blocks[i].flow = rank_of[h->held.blocks[i].flow];
        qsort(h->held.blocks, h->held.n_blocks, sizeof *h->held.blocks, flowpic__cmp_held);
    }
    for (i = 0; i < h->held.n_blocks && res == FLOWPIC_OK; i++) {
        const flowpic_ds_block *b = &h->held.blocks[i];
        const flowpic__flow_rank *fr = &ranks[b->flow];
        flowpic_block blk;
        if (b->flow != last) {
            const char *name = label ? label(user, &c->flows.flows[fr->cutter_flow]) : "unlabelled";
            last = b->flow;
            keep = name != 0;
            if (keep) res = flowpic_dataset_class(ds, name, &class_id);
            if (keep && res == FLOWPIC_OK)
                res = flowpic_dataset_add_flow(ds, &h->held.flows[fr->held].key, source, fr->generation, &ds_flow);
        }
        if (!keep || res != FLOWPIC_OK) continue;
        memset(&blk, 0, sizeof blk);
        blk.index = b->index;
        blk.start_ns = b->start_ns;
        blk.n_packets = b->n_packets;
        blk.packets = h->held.packets + b->first;
        res = flowpic_dataset_add_block(ds, ds_flow, class_id, &blk);
    }
    FLOWPIC_FREE(ranks);
    FLOWPIC_FREE(rank_of);
    return res;
}

FLOWPIC_DEF flowpic_result flowpic_dataset_add_capture(flowpic_dataset *ds, pcapl_reader *r, const char *source,
                                                       flowpic_label_fn label, void *label_user,
                                                       flowpic_progress_fn progress, void *progress_user)
{
    flowpic_cutter c;
    flowpic__held h;
    pcapl_packet pkt;
    pcapl_decoded d;
    pcapl_result rr;
    uint32_t source_id, held_source;
    uint16_t held_class;
    uint64_t packets = 0;
    flowpic_result res = flowpic_dataset_source(ds, source, &source_id);
    if (res != FLOWPIC_OK) return res;
    memset(&h, 0, sizeof h);
    h.ds = ds;
    flowpic_dataset_init(&h.held, &ds->config);
    res = flowpic_dataset_class(&h.held, "held", &held_class);
    if (res == FLOWPIC_OK) res = flowpic_dataset_source(&h.held, "", &held_source);
    if (res == FLOWPIC_OK) res = flowpic_cutter_init(&c, &ds->config, flowpic__hold_block, &h);
    if (res != FLOWPIC_OK) {
        flowpic_dataset_free(&h.held);
        return res;
    }
    while (res == FLOWPIC_OK && (rr = pcapl_next(r, &pkt)) == PCAPL_OK) {
        flowpic_packet p;
        if (progress && !(++packets & 0xFFFFu)) progress(progress_user, packets, r->bytes);
        if (pcapl_decode(&pkt, &d) != PCAPL_SKIP_NONE) continue;
        flowpic_packet_from_decoded(&p, pkt.ts_ns, &d);
        res = flowpic_cutter_add(&c, &p);
        if (res == FLOWPIC_OK) res = h.error;
    }
    if (res == FLOWPIC_OK) res = flowpic_cutter_flush(&c);
    if (res == FLOWPIC_OK) res = h.error;
    if (res == FLOWPIC_OK) res = flowpic__release(&h, &c, source_id, label, label_user);
    if (res == FLOWPIC_OK && r->error.code != PCAPL_OK) res = FLOWPIC_ERR_FORMAT;
    flowpic_cutter_free(&c);
    flowpic_dataset_free(&h.held);
    FLOWPIC_FREE(h.flow_of);
    FLOWPIC_FREE(h.held_of);
    return res;
}

#ifdef __cplusplus
}
#endif
#endif /* FLOWPIC_IMPLEMENTATION_DONE */
#endif /* FLOWPIC_IMPLEMENTATION */
