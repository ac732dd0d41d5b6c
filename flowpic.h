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
 *   >>rng         the one seeded generator
 *   >>network     the CNN: layer table, parameters, workspace, forward / backward, Adam
 *   >>model       model files: network, class names and preprocessing configuration
 *   >>train       models with their preprocessing, training epochs, prediction
 *   >>classifier  online classification: packets in, decisions out, running vote, flow cap
 *   >>impl        implementation, in the same order
 *
 * Configuration (define before including)
 *   FLOWPIC_MALLOC(sz) / FLOWPIC_REALLOC(p, sz) / FLOWPIC_FREE(p)   allocator (all or none;
 *                                 also used by pcap_lite unless PCAPL_MALLOC... are defined)
 *   FLOWPIC_FREAD(f, buf, n)      reads up to n bytes of FILE f: the count, 0 at the end, -1 on
 *                                 an error (default: fread + ferror; also used by pcap_lite
 *                                 unless PCAPL_FREAD is defined)
 *   FLOWPIC_FWRITE(f, buf, n)     writes n bytes to FILE f, returns the count written (default:
 *                                 fwrite)
 *   FLOWPIC_FOPEN(path, mode)     opens a file as fopen does (default: fopen; also used by
 *                                 pcap_lite unless PCAPL_FOPEN is defined). The three I/O hooks
 *                                 exist for fault-injection tests.
 *   FLOWPIC_ASSERT(x)             assertion (default: assert)
 *   FLOWPIC_STATIC                every function static (also makes pcap_lite static)
 *   FLOWPIC_NO_STDIO              no FILE* / path functions (also PCAPL_NO_STDIO)
 *   FLOWPIC_NO_PCAP_LITE_IMPL     do not compile pcap_lite.h's implementation here
 *   FLOWPIC_DEFAULT_MAX_FLOWS     default cap on live flows (16 M): FLOWPIC_ERR_FLOW_LIMIT
 *   FLOWPIC_MAX_BLOCK_PACKETS     most packets in one block (2^28): FLOWPIC_ERR_BLOCK_LIMIT
 *   FLOWPIC_MAX_MODEL_BYTES       largest model file read or written (1 GiB): FLOWPIC_ERR_MODEL_LIMIT
 *   (the largest capture record and pcapng block: PCAPL_MAX_CAPLEN, PCAPL_MAX_BLOCK in pcap_lite.h)
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
#if defined(__GNUC__) || defined(__clang__)
#define FLOWPIC_DEF static __attribute__((unused)) /* a program uses only some of them */
#else
#define FLOWPIC_DEF static
#endif
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

#if defined(FLOWPIC_FREAD) && !defined(PCAPL_FREAD)
#define PCAPL_FREAD(f, buf, n) FLOWPIC_FREAD(f, buf, n)
#endif
#if defined(FLOWPIC_FOPEN) && !defined(PCAPL_FOPEN)
#define PCAPL_FOPEN(path, mode) FLOWPIC_FOPEN(path, mode)
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
    X(FLOWPIC_ERR_FLOW_LIMIT, "too many live flows")                                        \
    X(FLOWPIC_ERR_BLOCK_LIMIT, "too many packets in one block")                              \
    X(FLOWPIC_ERR_MODEL_LIMIT, "model larger than the limit")

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
/* Index of the flow a packet with this key belongs to (either direction when bidirectional),
 * or (size_t)-1 when there is none. */
FLOWPIC_DEF size_t flowpic_flowtable_find(const flowpic_flowtable *ft, const flowpic_key *key);
/* Forgets flow `flow`; the last flow (index count - 1) takes its index. */
FLOWPIC_DEF void flowpic_flowtable_remove(flowpic_flowtable *ft, size_t flow);

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
#ifndef FLOWPIC_MAX_BLOCK_PACKETS /* FLOWPIC_ERR_BLOCK_LIMIT beyond it */
#define FLOWPIC_MAX_BLOCK_PACKETS (1u << 28)     /* packets in one block (2 GB of pairs) */
#endif

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
/* Feeds p[0 .. n) as n calls of flowpic_cutter_add would (same blocks, same order; stops at the
 * first error), faster: up to FLOWPIC_BATCH flow lookups at a time overlap their cache misses. */
#define FLOWPIC_BATCH 32
FLOWPIC_DEF flowpic_result flowpic_cutter_add_batch(flowpic_cutter *c, const flowpic_packet *p, size_t n);
/* Emits every remaining block (FINAL), flow after flow in first-seen order. */
FLOWPIC_DEF flowpic_result flowpic_cutter_flush(flowpic_cutter *c);
/* The oldest open window of a live flow as it is now (COLLECTING or PARTIAL), without closing
 * it: for early classification. FLOWPIC_ERR_ARG when the flow has no open window. */
FLOWPIC_DEF flowpic_result flowpic_cutter_partial(flowpic_cutter *c, size_t flow, flowpic_block *out);
/* Time passes for a flow without a packet: emits (FINAL) its windows that end at or before
 * now_ns, as a packet at now_ns would; now_ns = UINT64_MAX emits every remaining block of the
 * flow, as flush does for it. The "original" preset cuts only at UINT64_MAX. */
FLOWPIC_DEF flowpic_result flowpic_cutter_close(flowpic_cutter *c, size_t flow, uint64_t now_ns);
/* Forgets a flow and its open windows (close it first to keep its blocks); the last flow
 * (index flows.count - 1) takes its index. Memory then shrinks with the live flows. */
FLOWPIC_DEF void flowpic_cutter_remove(flowpic_cutter *c, size_t flow);
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
    uint32_t *scratch;      /* pixel index per packet and as much for sorting, while building */
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
/* How many of a block's packets its picture counts (the original preset leaves out sizes over
 * 1500), without building it. */
FLOWPIC_DEF uint32_t flowpic_picture_packets(flowpic_preset preset, const flowpic_pkt *packets, uint32_t n);
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
 * stay visible on large images; 0 for exact pixels (res * scale square). With dot > 0 the image
 * has a white margin of dot + 2 pixels and a 1-pixel gray frame, so edge pixels stay whole. */
/* Any 8-bit gray image (0 black, 255 white; rows top to bottom, width bytes each) as a PNG. */
FLOWPIC_DEF flowpic_result flowpic_gray_png(const uint8_t *gray, uint32_t width, uint32_t height, uint8_t **data,
                                            size_t *size);
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
 * packets before it are added, r->error is filled and the result is FLOWPIC_ERR_FORMAT
 * (FLOWPIC_ERR_NOMEM / FLOWPIC_ERR_IO when the reader ran out of memory / could not read). */
FLOWPIC_DEF flowpic_result flowpic_dataset_add_capture(flowpic_dataset *ds, pcapl_reader *r, const char *source,
                                                       flowpic_label_fn label, void *label_user,
                                                       flowpic_progress_fn progress, void *progress_user);

/* >>rng ---------------------------------------------------------------------------------------
 * One seeded generator for everything random (dropout, initialisation, shuffling): xoshiro256**
 * seeded by splitmix64. Same seed, same numbers, on every platform. */

typedef struct flowpic_rng {
    uint64_t s[4];
} flowpic_rng;

FLOWPIC_DEF void flowpic_rng_seed(flowpic_rng *rng, uint64_t seed);
FLOWPIC_DEF uint64_t flowpic_rng_next(flowpic_rng *rng);
FLOWPIC_DEF double flowpic_rng_uniform(flowpic_rng *rng); /* [0, 1), 53 bits */

/* ==========================================================================================
 * >>network  declarations: the CNN (layer table, parameters, workspace, forward/backward, Adam)
 * ==========================================================================================
 *
 * A network is a small table of layers built from a description (flowpic_layer_desc[]);
 * every shape and every offset is computed from that table. Two presets:
 *
 *   FLOWPIC_ARCH_FULL  "flowpic-full", the paper's net, input 1 x 1500 x 1500:
 *     conv 10@10x10 stride 5 pad 2/3 -> ReLU -> maxpool 2 -> conv 20@10x10 stride 5 pad 2/3
 *     -> ReLU -> dropout .25 -> maxpool 2 -> flatten 4500 -> dense 64 -> ReLU -> dropout .5
 *     -> dense m
 *   FLOWPIC_ARCH_MINI  "flowpic-mini", tcbench's LeNet-5 for R = 32 or 64:
 *     conv 6@5x5 -> ReLU -> maxpool 2 -> conv 16@5x5 -> ReLU -> dropout .25 -> maxpool 2
 *     -> flatten 400 / 2704 -> dense 120 -> ReLU -> dense 84 -> ReLU -> dropout .5 -> dense m
 *
 * Memory, llm.c style:
 *   - flowpic_net owns ONE float block of 4 * num_params floats: the parameters, their
 *     gradients, Adam's m and v, each at the same offsets (layer order; per layer the weight in
 *     PyTorch layout, conv [out][in][kh][kw] / dense [out][in], then the bias [out]).
 *     Zeroing the gradients is one memset, Adam one loop, a model file a dump of `params`.
 *   - flowpic_workspace owns everything that depends on a batch: every layer's output,
 *     dropout masks, activation gradients, per-thread scratch. Forward never writes to the
 *     net, so one net can serve any number of threads, each with its own workspace
 *     (backward and Adam write the net's gradients / parameters: one trainer per net).
 *
 * Tensors are float32, NCHW, batch outermost; a dense layer reads its input flattened in
 * (channel, row, column) order. Conventions (identical to PyTorch, checked against its
 * float64 reference tensors): a conv output (oy, ox) reads padded rows oy*stride ..
 * oy*stride+k-1, padded row r = input row r - pad_before, outside pixels are 0; max-pool
 * sends the gradient to the FIRST maximal element of its window in row-major order; ReLU'(0)
 * = 0; dropout is inverted (keep with probability 1-p, kept values times 1/(1-p)); the loss
 * is softmax cross-entropy averaged over the batch.
 *
 * Convolution: cache-blocked direct convolution (a ring of a few phase-split input rows and
 * a register tile of 5 channels x 8/16 columns; no im2col); input rows that are zero in every
 * channel are skipped, which is exact (x + 0 = x) and removes most of the first layer's work
 * on FlowPics (mostly empty packet-size rows). The plain seven-loop version is kept beside it
 * (flowpic_workspace_set_conv_algo) and tested against it.
 *
 * Determinism: results are bit-identical whatever the OpenMP thread count (every value is
 * computed by one thread in a fixed order; per-sample partial weight gradients are summed
 * in sample order). Dropout masks come from the caller's flowpic_rng, drawn serially.
 * (Other compilers, flags or FLOWPIC_NN_* tuning macros may change the last bits.)
 *
 * Example (training step and inference):
 *
 *     flowpic_net net; flowpic_workspace ws; flowpic_rng rng; float loss;
 *     flowpic_rng_seed(&rng, 42);
 *     if (flowpic_net_init(&net, FLOWPIC_ARCH_MINI, 32, 5) != FLOWPIC_OK) return 1;
 *     flowpic_net_init_glorot(&net, &rng);
 *     flowpic_workspace_init(&ws, &net, 128, FLOWPIC_WS_TRAIN);
 *     for (each batch x[B][1][32][32], labels[B]) {
 *         flowpic_net_zero_grad(&net);
 *         flowpic_net_forward(&net, &ws, x, B, FLOWPIC_MODE_TRAIN, &rng);
 *         flowpic_net_loss(&net, &ws, labels, B, &loss);
 *         flowpic_net_backward(&net, &ws, x, B);
 *         flowpic_adam_step(&net, 1e-3, 0.9, 0.999, 1e-8);
 *     }
 *     flowpic_net_predict(&net, &ws, x, B, probs);           // probs[B][5], eval mode
 *     flowpic_workspace_free(&ws); flowpic_net_free(&net);
 */

/* Limits (named, overridable). They keep every per-sample index inside an int and every
 * size computation far from overflow; the model loader also relies on them. */
#ifndef FLOWPIC_NN_MAX_LAYERS
#define FLOWPIC_NN_MAX_LAYERS   32          /* layers in a table */
#endif
#ifndef FLOWPIC_NN_MAX_DIM
#define FLOWPIC_NN_MAX_DIM      16384       /* input height / width */
#endif
#ifndef FLOWPIC_NN_MAX_CHANNELS
#define FLOWPIC_NN_MAX_CHANNELS 4096        /* channels or dense units of one layer */
#endif
#ifndef FLOWPIC_NN_MAX_KERNEL
#define FLOWPIC_NN_MAX_KERNEL   64          /* conv / pool kernel and stride */
#endif
#ifndef FLOWPIC_NN_MAX_CLASSES
#define FLOWPIC_NN_MAX_CLASSES  4096        /* classes m */
#endif
#ifndef FLOWPIC_NN_MAX_NUMEL
#define FLOWPIC_NN_MAX_NUMEL    (1 << 26)   /* elements of one layer's output, one sample */
#endif
#ifndef FLOWPIC_NN_MAX_ACTS
#define FLOWPIC_NN_MAX_ACTS     (1 << 27)   /* elements of all layer outputs of one sample */
#endif
#ifndef FLOWPIC_NN_MAX_PARAMS
#define FLOWPIC_NN_MAX_PARAMS   (1 << 26)   /* parameters of a net (256 MB of floats) */
#endif
#ifndef FLOWPIC_NN_MAX_BATCH
#define FLOWPIC_NN_MAX_BATCH    65536       /* samples in one workspace */
#endif
#ifndef FLOWPIC_NN_MAX_THREADS
#define FLOWPIC_NN_MAX_THREADS  256         /* per-thread scratch slots in a workspace */
#endif
#define FLOWPIC_NN_NAME_LEN     16          /* layer name buffer, NUL included */

typedef enum flowpic_arch {
    FLOWPIC_ARCH_CUSTOM = 0,   /* built by flowpic_net_init_layers() */
    FLOWPIC_ARCH_FULL   = 1,   /* "flowpic-full", res 1500 */
    FLOWPIC_ARCH_MINI   = 2    /* "flowpic-mini", res 32 or 64 */
} flowpic_arch;

typedef enum flowpic_layer_kind {
    FLOWPIC_LAYER_CONV    = 1, /* 2-D convolution, zero padding, square kernel */
    FLOWPIC_LAYER_MAXPOOL = 2, /* max pooling, no padding, floor output size */
    FLOWPIC_LAYER_RELU    = 3,
    FLOWPIC_LAYER_DROPOUT = 4, /* inverted dropout */
    FLOWPIC_LAYER_FLATTEN = 5, /* no data movement: the output aliases the input */
    FLOWPIC_LAYER_DENSE   = 6  /* fully connected, reads its input flattened */
} flowpic_layer_kind;

/* One entry of a network description. Fields a kind does not use must be 0. */
typedef struct flowpic_layer_desc {
    flowpic_layer_kind kind;
    int   size;        /* CONV: output channels; DENSE: units (0 on the last layer = num_classes) */
    int   kernel;      /* CONV, MAXPOOL: kernel height = width */
    int   stride;      /* CONV, MAXPOOL: stride (>= 1) */
    int   pad_before;  /* CONV: zero rows/columns added at the top/left */
    int   pad_after;   /* CONV: zero rows/columns added at the bottom/right */
    float dropout_p;   /* DROPOUT: probability of dropping, 0 <= p < 1 */
} flowpic_layer_desc;

/* A layer as built: shapes per sample (NCHW without N), offsets into net->params. */
typedef struct flowpic_layer {
    flowpic_layer_kind kind;
    char   name[FLOWPIC_NN_NAME_LEN];  /* "conv1", "relu2", "pool1", "dropout1", "flatten1", "dense3"... */
    int    in_c, in_h, in_w;
    int    out_c, out_h, out_w;
    int    kernel, stride, pad_before, pad_after;
    float  dropout_p;
    size_t in_numel, out_numel;         /* per sample */
    size_t weight_offset, num_weights;  /* CONV, DENSE; 0 otherwise */
    size_t bias_offset, num_biases;
} flowpic_layer;

typedef struct flowpic_net {
    flowpic_arch  arch;
    int           res;                 /* input height (= width for the presets) */
    int           in_c, in_h, in_w;
    int           num_classes;
    int           num_layers;
    flowpic_layer layers[FLOWPIC_NN_MAX_LAYERS];
    size_t        num_params;
    float        *params;              /* [num_params]                    */
    float        *grads;               /* [num_params], same offsets       */
    float        *adam_m;              /* [num_params], Adam first moment  */
    float        *adam_v;              /* [num_params], Adam second moment */
    uint64_t      adam_t;              /* Adam steps taken */
    uint64_t      layout_id;           /* hash of the layer table, checked by workspaces */
} flowpic_net;

/* Forward modes. */
typedef enum flowpic_mode {
    FLOWPIC_MODE_EVAL = 0,             /* dropout is the identity */
    FLOWPIC_MODE_TRAIN = 1,            /* dropout masks drawn from the rng */
    FLOWPIC_MODE_TRAIN_FIXED_MASKS = 2 /* dropout uses the masks already in the workspace
                                          (written through flowpic_workspace_mask()) */
} flowpic_mode;

/* Convolution implementation used by a workspace (same results up to float rounding). */
typedef enum flowpic_conv_algo {
    FLOWPIC_CONV_BLOCKED = 0,          /* cache-blocked direct convolution (default) */
    FLOWPIC_CONV_NAIVE   = 1           /* plain seven-loop reference, single-threaded */
} flowpic_conv_algo;

/* flowpic_workspace_init() flags */
#define FLOWPIC_WS_TRAIN      1u       /* allocate what backward needs (masks, gradients) */
#define FLOWPIC_WS_KEEP_GRADS 2u       /* keep every activation gradient (tests, debugging;
                                          implies FLOWPIC_WS_TRAIN) */
#define FLOWPIC_WS_SPARSE     4u       /* only the sparse entry points (*_sparse) will run: no
                                          dense activations for the layers they replace (needs
                                          flowpic_net_sparse_ok) */

struct flowpic__sparse;                /* the sparse path's state, grown with the pictures */

/* Per-batch state. Fields are read-only for callers; use the accessors below. */
typedef struct flowpic_workspace {
    uint64_t          layout_id;       /* of the net it was made for */
    int               max_batch;
    unsigned          flags;
    int               num_layers;
    int               num_classes;
    int               num_threads;     /* per-thread scratch slots */
    flowpic_conv_algo conv_algo;
    int               batch;           /* batch of the last forward, 0 = none yet */
    flowpic_mode      mode;            /* mode of the last forward */
    int               have_loss;       /* flowpic_net_loss() ran after the last forward */
    double            loss;            /* last mean loss, in double */
    size_t            act_offset[FLOWPIC_NN_MAX_LAYERS];   /* into acts, [max_batch][out_numel] */
    size_t            mask_offset[FLOWPIC_NN_MAX_LAYERS];  /* into masks (DROPOUT layers) */
    uint8_t           layer_kind[FLOWPIC_NN_MAX_LAYERS];   /* flowpic_layer_kind of each layer */
    float            *acts;            /* every layer's output */
    float            *grad_acts;       /* KEEP_GRADS: same offsets as acts; else 2 ping-pong buffers */
    size_t            grad_buf_len;    /* floats in one ping-pong buffer */
    float            *probs;           /* [max_batch][num_classes] */
    float            *dlogits;         /* [max_batch][num_classes] */
    float            *wt;              /* conv weights transposed to [in][kh][kw][out] */
    float            *partials;        /* per (sample, row block) conv weight gradients */
    float            *scratch;         /* per-thread conv row rings */
    size_t            scratch_len;     /* floats per thread */
    uint8_t          *masks;           /* dropout keep masks, 1 = keep */
    void             *block;           /* the one allocation everything above lives in */
    int               sparse_last;     /* the last forward was flowpic_net_forward_sparse */
    struct flowpic__sparse *sparse;    /* its state (own allocations; NULL until first used) */
} flowpic_workspace;

/* --- networks -------------------------------------------------------------------------- */

/* Builds a preset: FLOWPIC_ARCH_FULL needs res 1500, FLOWPIC_ARCH_MINI res 32 or 64;
 * 2 <= num_classes <= FLOWPIC_NN_MAX_CLASSES. Parameters start at zero (see init_glorot).
 * FLOWPIC_ERR_ARG on a bad argument, FLOWPIC_ERR_NOMEM. On error *net is left freed-safe. */
FLOWPIC_DEF flowpic_result flowpic_net_init(flowpic_net *net, flowpic_arch arch, int res,
                                            int num_classes);
/* Builds a net from a description of num_desc layers on input in_c x in_h x in_w. The last
 * layer must be DENSE with size num_classes (or 0). FLOWPIC_ERR_ARG for an impossible shape,
 * FLOWPIC_ERR_LIMIT beyond the FLOWPIC_NN_MAX_* limits, FLOWPIC_ERR_NOMEM. */
FLOWPIC_DEF flowpic_result flowpic_net_init_layers(flowpic_net *net, const flowpic_layer_desc *desc,
                                                   int num_desc, int in_c, int in_h, int in_w,
                                                   int num_classes);
/* Fills desc[] (room for FLOWPIC_NN_MAX_LAYERS) with a preset's description; returns the
 * number of layers, or 0 for an unknown arch / res. */
FLOWPIC_DEF int flowpic_net_preset(flowpic_arch arch, int res, flowpic_layer_desc *desc);
FLOWPIC_DEF void flowpic_net_free(flowpic_net *net);          /* safe on a zeroed / freed net */
/* "flowpic-full", "flowpic-mini", "custom" */
FLOWPIC_DEF const char *flowpic_arch_name(flowpic_arch arch);
/* Glorot-uniform weights (limit sqrt(6 / (fan_in + fan_out)); conv fan_in = in*kh*kw,
 * fan_out = out*kh*kw), zero biases; also clears gradients and the Adam state. Draws the
 * weights from rng in parameter order. */
FLOWPIC_DEF void flowpic_net_init_glorot(flowpic_net *net, flowpic_rng *rng);
FLOWPIC_DEF void flowpic_net_zero_grad(flowpic_net *net);
/* Index of the layer called name ("conv1", "dense2"...), or -1. */
FLOWPIC_DEF int flowpic_net_find_layer(const flowpic_net *net, const char *name);

/* --- workspaces ------------------------------------------------------------------------ */

/* Sizes a workspace for `net` and up to max_batch samples. flags: 0 (inference only),
 * FLOWPIC_WS_TRAIN, FLOWPIC_WS_KEEP_GRADS. Scratch is made for omp_get_max_threads() threads
 * (at most FLOWPIC_NN_MAX_THREADS); later calls use at most that many. */
FLOWPIC_DEF flowpic_result flowpic_workspace_init(flowpic_workspace *ws, const flowpic_net *net,
                                                  int max_batch, unsigned flags);
FLOWPIC_DEF void flowpic_workspace_free(flowpic_workspace *ws);   /* safe on a zeroed / freed ws */
FLOWPIC_DEF void flowpic_workspace_set_conv_algo(flowpic_workspace *ws, flowpic_conv_algo algo);

/* Output of layer `layer` for the last forward, [batch][out_numel]; NULL for a bad index.
 * The last layer's output is the logits [batch][num_classes]. */
FLOWPIC_DEF const float *flowpic_workspace_output(const flowpic_workspace *ws, int layer);
/* dloss/d(output of `layer`) after the last backward, [batch][out_numel]; only with
 * FLOWPIC_WS_KEEP_GRADS (else NULL), except for the last layer (= the dlogits). */
FLOWPIC_DEF const float *flowpic_workspace_output_grad(const flowpic_workspace *ws, int layer);
/* Keep mask of DROPOUT layer `layer`, [max_batch][out_numel] bytes (1 = keep, 0 = drop),
 * writable for FLOWPIC_MODE_TRAIN_FIXED_MASKS; NULL if not a dropout layer or no TRAIN flag. */
FLOWPIC_DEF uint8_t *flowpic_workspace_mask(flowpic_workspace *ws, int layer);
FLOWPIC_DEF const float *flowpic_workspace_probs(const flowpic_workspace *ws);    /* [batch][m] */
FLOWPIC_DEF const float *flowpic_workspace_dlogits(const flowpic_workspace *ws);  /* [batch][m] */

/* --- passes ---------------------------------------------------------------------------- */

/* Runs the net on input [batch][in_c][in_h][in_w]. mode FLOWPIC_MODE_TRAIN draws the dropout
 * masks from rng (layer by layer, sample by sample, element by element: keep when
 * flowpic_rng_uniform() >= p); rng may be NULL otherwise. Training modes need a workspace
 * made with FLOWPIC_WS_TRAIN. Does not write to net; the input must stay unchanged until
 * backward. Thread-safe for distinct workspaces. */
FLOWPIC_DEF flowpic_result flowpic_net_forward(const flowpic_net *net, flowpic_workspace *ws,
                                               const float *input, int batch, flowpic_mode mode,
                                               flowpic_rng *rng);
/* Softmax of the logits of the last forward into the probs, mean cross-entropy into *loss
 * (may be NULL), dlogits = (probs - onehot(label)) / batch. labels[n] in 0..num_classes-1. */
FLOWPIC_DEF flowpic_result flowpic_net_loss(const flowpic_net *net, flowpic_workspace *ws,
                                            const int *labels, int batch, float *loss);
/* Back-propagates the dlogits of the last flowpic_net_loss() through the last forward
 * (same input, same batch) and ADDS the parameter gradients to net->grads. */
FLOWPIC_DEF flowpic_result flowpic_net_backward(flowpic_net *net, flowpic_workspace *ws,
                                                const float *input, int batch);
/* Eval-mode forward + softmax: probs_out[batch][num_classes] (may be NULL: read
 * flowpic_workspace_probs()). */
FLOWPIC_DEF flowpic_result flowpic_net_predict(const flowpic_net *net, flowpic_workspace *ws,
                                               const float *input, int batch, float *probs_out);

/* --- sparse passes ---------------------------------------------------------------------
 * The same passes straight from sparse pictures (flowpic_picture, res = the net's input, values
 * through a transform; every transform maps 0 to 0). They apply to nets that start
 * CONV (1 input channel) -> RELU -> MAXPOOL (kernel = stride) -> CONV, as both presets do:
 *   conv1 + ReLU + pool1 are computed only at the pool cells whose receptive field holds a
 *     non-zero pixel (each pixel touches at most ceil(k/s)^2 conv1 outputs per filter); every
 *     other cell holds the "background" ReLU(bias) of its channel. conv1's outputs are the dense
 *     path's bit for bit (same products, same order: the zeros it adds are exact).
 *   conv2 = its output on the all-background input (one per call; padding is zero, not
 *     background) plus the contribution of (cell - background) at the touched cells.
 *   the layers after conv2 run as in the dense path. Backward mirrors it: conv2's weight
 *     gradient from the batch's summed output gradient times the background plus the touched
 *     cells, pool1's gradient only at the touched cells (and its total for conv1's bias), conv1's
 *     weight gradient from the non-zero pixels; no input gradient.
 * Results equal the dense path's to float rounding (tests/test_nn.c compares them) and do not
 * depend on the thread count (samples split across threads, reductions in a fixed order).
 * Memory grows with the non-zero pixels, never with res * res. */

/* 1 when the sparse passes apply to net (see above). */
FLOWPIC_DEF int flowpic_net_sparse_ok(const flowpic_net *net);
/* flowpic_net_forward on pics[0 .. batch), pixel values through transform. FLOWPIC_ERR_ARG when
 * the sparse path does not apply, a picture's res is not the net's input or its pixels are not
 * sorted and inside it (as flowpic_picture_build makes them); FLOWPIC_ERR_NOMEM. */
FLOWPIC_DEF flowpic_result flowpic_net_forward_sparse(const flowpic_net *net, flowpic_workspace *ws,
                                                      const flowpic_picture *pics, flowpic_transform transform,
                                                      int batch, flowpic_mode mode, flowpic_rng *rng);
/* flowpic_net_backward after flowpic_net_forward_sparse + flowpic_net_loss (it keeps what it
 * needs of the pictures: they may change in between). */
FLOWPIC_DEF flowpic_result flowpic_net_backward_sparse(flowpic_net *net, flowpic_workspace *ws, int batch);
FLOWPIC_DEF flowpic_result flowpic_net_predict_sparse(const flowpic_net *net, flowpic_workspace *ws,
                                                      const flowpic_picture *pics, flowpic_transform transform,
                                                      int batch, float *probs_out);

/* --- optimizer ------------------------------------------------------------------------- */

/* One Adam step over every parameter, as torch.optim.Adam (no weight decay, no amsgrad):
 * t += 1; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). Does not clear the grads. */
FLOWPIC_DEF flowpic_result flowpic_adam_step(flowpic_net *net, double lr, double beta1,
                                             double beta2, double eps);

/* ==========================================================================================
 * >>model  model files: the net + class names + the caller's preprocessing config
 * ==========================================================================================
 * Format (version 1, little-endian, CRC-32 protected) in MODEL_FORMAT.md. Memory forms only
 * here; the file forms (temporary file + rename) belong with the rest of the I/O. */

#ifndef FLOWPIC_MAX_MODEL_BYTES
#define FLOWPIC_MAX_MODEL_BYTES  (1u << 30)   /* largest model accepted and written: FLOWPIC_ERR_MODEL_LIMIT */
#endif
#ifndef FLOWPIC_MODEL_MAX_NAME
#define FLOWPIC_MODEL_MAX_NAME   255          /* bytes of one class name */
#endif
#ifndef FLOWPIC_MODEL_MAX_CONFIG
#define FLOWPIC_MODEL_MAX_CONFIG (1u << 20)   /* bytes of the preprocessing config blob */
#endif
#define FLOWPIC_MODEL_VERSION    1
#define FLOWPIC_MODEL_WITH_ADAM  1u           /* save flag: also store Adam's t, m and v */

/* What a model file holds besides the net. Owned by the struct (one allocation). */
typedef struct flowpic_model_meta {
    int                   num_classes;
    const char *const    *class_names;  /* [num_classes] NUL-terminated UTF-8 */
    const unsigned char  *config;       /* preprocessing config blob, config_len bytes (opaque) */
    size_t                config_len;
    void                 *block;
} flowpic_model_meta;

/* Serialises net (its params; with FLOWPIC_MODEL_WITH_ADAM also the Adam state), the
 * num_classes class names (1..FLOWPIC_MODEL_MAX_NAME bytes each) and the config blob.
 * *len receives the size of the model; with buf == NULL only the size is computed. Returns
 * FLOWPIC_ERR_LIMIT if cap < *len, FLOWPIC_ERR_MODEL_LIMIT if the model would exceed
 * FLOWPIC_MAX_MODEL_BYTES. */
FLOWPIC_DEF flowpic_result flowpic_model_save_mem(const flowpic_net *net, const char *const *class_names,
                                                  const void *config, size_t config_len, unsigned flags,
                                                  unsigned char *buf, size_t cap, size_t *len);
/* Validates every field of data[0..len) and builds *net (params, and the Adam state if
 * stored) and *meta (may be NULL). On failure returns FLOWPIC_ERR_FORMAT (not a model /
 * corrupt), FLOWPIC_ERR_MODEL_LIMIT (len > FLOWPIC_MAX_MODEL_BYTES), FLOWPIC_ERR_LIMIT (beyond
 * another named limit) or FLOWPIC_ERR_NOMEM, fills *err (may
 * be NULL) and leaves *net and *meta zeroed. Allocates at most about 4x len. */
FLOWPIC_DEF flowpic_result flowpic_model_load_mem(flowpic_net *net, flowpic_model_meta *meta,
                                                  const void *data, size_t len, flowpic_error *err);
FLOWPIC_DEF void flowpic_model_meta_free(flowpic_model_meta *meta);

/* >>train -------------------------------------------------------------------------------------
 * A model is a network plus everything needed to build its input the same way again: the block
 * settings, the resolution and the value transform ("prep"), and the class names. Loading a
 * model checks all of it, and a data set cut differently is refused, so a model can never be
 * applied to pictures built differently. File format: docs/MODEL.md. */

typedef struct flowpic_prep {
    flowpic_block_config blocks; /* how flows were cut into blocks */
    uint32_t res;                /* picture resolution = the network's input */
    flowpic_transform transform; /* pixel value transform */
} flowpic_prep;

typedef struct flowpic_model {
    flowpic_net net;
    flowpic_prep prep;
    char **classes;
    uint32_t n_classes;
} flowpic_model;

/* Summary of one training epoch or one evaluation pass. */
typedef struct flowpic_epoch_stats {
    double loss;      /* mean cross-entropy */
    size_t samples;
    size_t correct;
} flowpic_epoch_stats;

/* Called after every batch of an epoch: samples done so far, of total, and the running stats. */
typedef void (*flowpic_train_progress_fn)(void *user, size_t done, size_t total, const flowpic_epoch_stats *running);

/* A new model: arch at prep->res for n_classes classes, Glorot-initialised from rng. */
FLOWPIC_DEF flowpic_result flowpic_model_init(flowpic_model *m, flowpic_arch arch, const flowpic_prep *prep,
                                              const char *const *classes, uint32_t n_classes, flowpic_rng *rng);
FLOWPIC_DEF void flowpic_model_free(flowpic_model *m);
/* Serialise (malloc'd, free with FLOWPIC_FREE) / parse and validate. */
FLOWPIC_DEF flowpic_result flowpic_model_to_memory(const flowpic_model *m, uint8_t **data, size_t *size);
FLOWPIC_DEF flowpic_result flowpic_model_from_memory(flowpic_model *m, const uint8_t *data, size_t size,
                                                     flowpic_error *err);
/* 1 when a data set's blocks were cut the way the model expects. */
FLOWPIC_DEF int flowpic_prep_accepts(const flowpic_prep *prep, const flowpic_block_config *blocks);
/* The model's input for block i of ds: res x res floats with its transform. pic is scratch. */
FLOWPIC_DEF flowpic_result flowpic_model_input(const flowpic_model *m, const flowpic_dataset *ds, size_t i,
                                               flowpic_picture *pic, float *out);
/* A workspace for flowpic_train_epoch / flowpic_predict_blocks on m (max_batch pictures, flags
 * FLOWPIC_WS_TRAIN for training): the presets run on sparse pictures, so for them the dense first
 * layers are not allocated (FLOWPIC_WS_SPARSE). */
FLOWPIC_DEF flowpic_result flowpic_model_workspace_init(flowpic_workspace *ws, const flowpic_model *m, int max_batch,
                                                        unsigned flags);
/* One epoch over blocks[0 .. n) (in that order) in batches of `batch`: forward (train mode, dropout
 * from rng), loss, backward, Adam (lr). labels[i] is the model class of blocks[i]. ws needs
 * FLOWPIC_WS_TRAIN and max_batch >= batch. */
FLOWPIC_DEF flowpic_result flowpic_train_epoch(flowpic_model *m, flowpic_workspace *ws, const flowpic_dataset *ds,
                                               const size_t *blocks, const int *labels, size_t n, int batch,
                                               double lr, flowpic_rng *rng, flowpic_train_progress_fn progress,
                                               void *user, flowpic_epoch_stats *stats);
/* Class probabilities of blocks[0 .. n) in eval mode: probs[n][n_classes]. */
FLOWPIC_DEF flowpic_result flowpic_predict_blocks(const flowpic_model *m, flowpic_workspace *ws,
                                                  const flowpic_dataset *ds, const size_t *blocks, size_t n,
                                                  float *probs);
/* Training-time augmentations of a block's packet series (tcbench's three, and two that make
 * a model robust to short and thin flows), applied to the (time offset, size) pairs before the
 * picture is built, in this order; a 0 field is off. */
typedef struct flowpic_augment {
    double share;      /* each sample is augmented with this probability (the rest as they are) */
    double rtt;        /* change RTT: time offsets x U(1 - rtt, 1 + rtt) (tcbench: 0.5) */
    double shift_s;    /* time shift: offsets + U(-shift_s, shift_s) seconds (tcbench: 1) */
    double loss_s;     /* packet loss: drop packets within +- loss_s of a random instant (tcbench: 0.1) */
    double thin;       /* thinning: drop each packet with probability U(0, thin) */
    double truncate_s; /* truncation: keep the first U(truncate_s, L) seconds of the window */
} flowpic_augment;

/* 1 when a turns anything on. */
FLOWPIC_DEF int flowpic_augment_active(const flowpic_augment *a);
/* Writes the augmented packets of in[0 .. n) (offsets within a window of length_ns) to out
 * (room for n) and returns how many there are; packets moved outside [0, length_ns) are
 * dropped, order is kept. out == in is allowed. */
FLOWPIC_DEF uint32_t flowpic_augment_packets(const flowpic_augment *a, uint64_t length_ns, const flowpic_pkt *in,
                                             uint32_t n, flowpic_pkt *out, flowpic_rng *rng);
#ifndef FLOWPIC_NO_STDIO
FLOWPIC_DEF flowpic_result flowpic_model_save(const flowpic_model *m, const char *path, flowpic_error *err);
FLOWPIC_DEF flowpic_result flowpic_model_load(flowpic_model *m, const char *path, flowpic_error *err);
#endif

/* >>classifier --------------------------------------------------------------------------------
 * Online classification (docs/ONLINE.md): packets in, one at a time, decisions out through a
 * callback while the traffic still flows. The packets go through a block cutter with the model's
 * settings; the blocks that complete are classified in batches by flowpic_predict_blocks (the
 * offline path), so a final decision equals the offline decision for the same block.
 *   - FINAL: a block's window closed (a later packet, time passing, the flow ending);
 *   - PARTIAL: an early decision on the open block of a live flow, after early_packets more
 *     packets or every early_after_ns of capture time;
 *   - FLOW: the flow ended (idle timeout, eviction, flush): the vote over its final blocks.
 * Every decision carries the flow's running vote (majority and mean) over its final blocks.
 * Live flows are capped at max_flows: a new flow beyond the cap ends the flow that has been
 * idle longest (oldest last packet) first. Memory: O(live flows + packets in open windows):
 * at most FLOWPIC_CLASSIFIER_FLOW_BYTES(n_classes) bytes per flow of the cap plus 20 bytes per
 * packet in an open window, plus the model, a workspace and one batch of blocks.
 * Time is capture time: the newest packet time seen, or what flowpic_classifier_tick() says. */

#ifndef FLOWPIC_CLASSIFIER_DEFAULT_FLOWS
#define FLOWPIC_CLASSIFIER_DEFAULT_FLOWS (1u << 20) /* live flows: about 0.5 GB at the bound */
#endif
#define FLOWPIC_CLASSIFIER_DEFAULT_BATCH 32 /* blocks per forward pass */
/* Bytes per live flow, all tables included (flow table entry, index slots at half load,
 * cutter and classifier state, running vote; arrays grow by doubling). */
#define FLOWPIC_CLASSIFIER_FLOW_BYTES(n_classes) \
    (2u * (sizeof(flowpic_flow) + sizeof(flowpic_cutflow) + sizeof(flowpic_clflow) + 12u * (size_t)(n_classes)) + 32u)

typedef enum flowpic_decision_state {
    FLOWPIC_DECISION_PARTIAL, /* early: the open block of a live flow, as it is now */
    FLOWPIC_DECISION_FINAL,   /* the block's window closed */
    FLOWPIC_DECISION_FLOW     /* the flow ended: the vote over its final blocks */
} flowpic_decision_state;

typedef enum flowpic_vote_kind {
    FLOWPIC_VOTE_MAJORITY, /* most frequent block label, ties to the larger summed probability */
    FLOWPIC_VOTE_MEAN      /* largest mean probability */
} flowpic_vote_kind;

typedef enum flowpic_flow_end {
    FLOWPIC_END_NONE,  /* the flow is live */
    FLOWPIC_END_IDLE,  /* silent for idle_timeout_ns */
    FLOWPIC_END_EVICT, /* the cap on live flows: idle longest */
    FLOWPIC_END_FLUSH  /* flowpic_classifier_flush (end of input, a signal) */
} flowpic_flow_end;

typedef struct flowpic_decision {
    flowpic_decision_state state;
    flowpic_key key;           /* the flow (its first packet's direction) */
    uint64_t time_ns;          /* capture time of the decision */
    uint64_t start_ns;         /* PARTIAL / FINAL: window start; FLOW: 0 */
    uint32_t block;            /* PARTIAL / FINAL: window number k; FLOW: final blocks voted */
    uint32_t packets;          /* packets in the picture (FLOW: 0) */
    uint32_t label;            /* PARTIAL / FINAL: the block's top class; FLOW: the vote */
    double confidence;         /* probs[label], or the vote's confidence (FLOW) */
    const float *probs;        /* [n_classes] class probabilities; NULL for FLOW */
    flowpic_flow_end end;      /* FLOW: why the flow ended */
    /* the flow's running vote over its final blocks so far (this one included) */
    uint32_t vote_blocks;
    uint32_t majority, mean;   /* labels */
    double majority_confidence, mean_confidence;
} flowpic_decision;

/* Called for every decision; d and d->probs are valid during the call. Must not call back
 * into the classifier. */
typedef void (*flowpic_decision_fn)(void *user, const flowpic_decision *d);

typedef struct flowpic_classifier_config {
    size_t max_flows;          /* live flows [FLOWPIC_CLASSIFIER_DEFAULT_FLOWS] */
    uint64_t idle_timeout_ns;  /* a silence this long ends a flow (0: never) */
    uint32_t early_packets;    /* PARTIAL after this many packets of a flow since its last
                                  decision (0: off) */
    uint64_t early_after_ns;   /* PARTIAL every this long while a block is open (0: off) */
    int batch;                 /* blocks classified together [FLOWPIC_CLASSIFIER_DEFAULT_BATCH];
                                  decisions wait at most until the batch fills or the next
                                  tick / flush */
    int second_thread;         /* with OpenMP, called inside a parallel region of 2+ threads
                                  (e.g. from a `single`): a full batch is classified by an
                                  OpenMP task while packets keep coming [1]; same decisions,
                                  in the same order */
    flowpic_vote_kind vote;    /* the label of FLOW decisions */
} flowpic_classifier_config;

typedef struct flowpic_classifier_stats {
    uint64_t packets;          /* packets given to flowpic_classifier_add */
    uint64_t flows_live, flows_peak, flows_total;
    uint64_t flows_idle, flows_evicted;        /* flows ended by the timeout / the cap */
    uint64_t decisions_partial, decisions_final, decisions_flow;
    uint64_t batches;          /* forward passes */
    uint64_t batches_threaded; /* of them, on the second thread */
} flowpic_classifier_stats;

/* Per live flow (internal), parallel to the cutter's flows. */
typedef struct flowpic_clflow {
    uint64_t last_ns;          /* newest packet */
    uint64_t early_ns;         /* next early_after decision (0: none planned) */
    uint32_t prev, next;       /* links of the active or quiet list, oldest activity first */
    uint32_t since;            /* packets since the last decision */
    uint32_t blocks;           /* final blocks voted */
    uint32_t quiet;            /* 1: every window closed, waiting for a packet or the timeout */
    uint32_t reserved;
} flowpic_clflow;

/* A block waiting for its batch (internal). */
typedef struct flowpic_clpending {
    uint64_t time_ns;
    uint32_t flow;
    flowpic_decision_state state;
} flowpic_clpending;

/* One batch of blocks for the network (internal). */
typedef struct flowpic_clbatch {
    flowpic_dataset blocks;
    flowpic_clpending *info;   /* per block: time, flow, state */
    size_t info_cap;
    float *probs;              /* [batch][n_classes] */
    flowpic_result result;     /* of its forward pass */
} flowpic_clbatch;

typedef struct flowpic_classifier {
    const flowpic_model *model;
    flowpic_classifier_config config;
    flowpic_cutter cutter;     /* the model's block settings, max_flows = config.max_flows */
    flowpic_workspace ws;
    flowpic_decision_fn emit;
    void *user;
    flowpic_clflow *flows;     /* parallel to cutter.flows.flows */
    uint32_t *votes;           /* [flow][n_classes] block votes */
    double *sums;              /* [flow][n_classes] summed probabilities */
    size_t flows_cap;
    uint32_t lists[2][2];      /* [active, quiet][head, tail] */
    flowpic_clbatch batches[2]; /* one filling, the other maybe on the second thread */
    int filling, in_flight;
    size_t *batch_index;       /* 0 .. batch - 1 */
    uint64_t now_ns, sweep_ns;
    flowpic_result status;     /* first error inside a cutter callback */
    flowpic_classifier_stats stats;
} flowpic_classifier;

FLOWPIC_DEF void flowpic_classifier_config_default(flowpic_classifier_config *config);
/* The model must outlive the classifier. */
FLOWPIC_DEF flowpic_result flowpic_classifier_init(flowpic_classifier *cl, const flowpic_model *model,
                                                   const flowpic_classifier_config *config,
                                                   flowpic_decision_fn emit, void *user);
/* One packet (time, 5-tuple, IP size). Decisions it completes come through the callback, now or
 * with a later call (batches). FLOWPIC_ERR_NOMEM, or an error of the network. */
FLOWPIC_DEF flowpic_result flowpic_classifier_add(flowpic_classifier *cl, const flowpic_packet *p);
/* n packets, as n calls of flowpic_classifier_add (the same decisions), with the flow lookups of
 * up to FLOWPIC_BATCH packets overlapped: faster with many live flows. On an error, the packets
 * before the failing one have been added. */
FLOWPIC_DEF flowpic_result flowpic_classifier_add_batch(flowpic_classifier *cl, const flowpic_packet *p, size_t n);
/* Capture time now_ns passes without packets (a live capture's clock): windows close, idle
 * flows end, early_after decisions fall due, and the waiting batch is classified. */
FLOWPIC_DEF flowpic_result flowpic_classifier_tick(flowpic_classifier *cl, uint64_t now_ns);
/* Ends every flow: its open blocks are FINAL, then its FLOW decision (end of input, a signal). */
FLOWPIC_DEF flowpic_result flowpic_classifier_flush(flowpic_classifier *cl);
FLOWPIC_DEF void flowpic_classifier_stats_get(const flowpic_classifier *cl, flowpic_classifier_stats *stats);
FLOWPIC_DEF void flowpic_classifier_free(flowpic_classifier *cl);

/* The running vote: votes[] and sums[] (n_classes each, zeroed to start) take one block's
 * probabilities; the result is the label and its confidence (share of the votes, or mean
 * probability). The offline `flowpic classify` votes with the same two functions. */
FLOWPIC_DEF void flowpic_vote_add(uint32_t *votes, double *sums, const float *probs, uint32_t n_classes);
FLOWPIC_DEF uint32_t flowpic_vote_result(const uint32_t *votes, const double *sums, uint32_t n_classes,
                                         flowpic_vote_kind kind, double *confidence);
FLOWPIC_DEF const char *flowpic_decision_state_name(flowpic_decision_state state);

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
#ifndef FLOWPIC_NO_STDIO
#ifndef FLOWPIC_FREAD
#define FLOWPIC_FREAD(f, buf, n) flowpic__fread(f, buf, n)
#define FLOWPIC__DEFAULT_FREAD
#endif
#ifndef FLOWPIC_FWRITE
#define FLOWPIC_FWRITE(f, buf, n) fwrite(buf, 1, n, f)
#endif
#ifndef FLOWPIC_FOPEN
#define FLOWPIC_FOPEN(path, mode) fopen(path, mode)
#endif
#endif
#ifdef __cplusplus
#define FLOWPIC_RESTRICT __restrict /* the implementation also compiles as C++ */
#else
#define FLOWPIC_RESTRICT restrict
#endif
/* A hint that memory will be read soon (no effect on results; nothing where unsupported). */
#if defined(__GNUC__) || defined(__clang__)
#define FLOWPIC_PREFETCH(addr) __builtin_prefetch(addr)
#else
#define FLOWPIC_PREFETCH(addr) ((void)0)
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

/* The flow of key k (hash h) in either direction when the table is bidirectional, or
 * (size_t)-1; *slot: where the probe for k itself stopped (the place to insert it). */
static size_t flowpic__find_flow(const flowpic_flowtable *ft, const flowpic_key *k, uint64_t h, size_t *slot)
{
    size_t idx = flowpic__find(ft, k, h, slot);
    if (idx == (size_t)-1 && ft->bidirectional) {
        flowpic_key rev;
        size_t rslot;
        flowpic_key_reverse(&rev, k);
        idx = flowpic__find(ft, &rev, flowpic__key_hash(&rev), &rslot);
    }
    return idx;
}

/* flowpic_flowtable_add with the key's hash already computed; known: the packet's flow when the
 * caller has just looked it up (the flow table unchanged since), else (size_t)-1. */
static flowpic_result flowpic__flowtable_add_hashed(flowpic_flowtable *ft, const flowpic_packet *p, uint64_t h,
                                                    size_t known, size_t *flow_index)
{
    size_t slot = 0, idx = known != (size_t)-1 ? known : flowpic__find_flow(ft, &p->key, h, &slot);
    flowpic_flow *f;
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

FLOWPIC_DEF size_t flowpic_flowtable_find(const flowpic_flowtable *ft, const flowpic_key *key)
{
    size_t slot;
    return flowpic__find_flow(ft, key, flowpic__key_hash(key), &slot);
}

/* The slot that points at flow idx. */
static size_t flowpic__slot_of(const flowpic_flowtable *ft, size_t idx)
{
    size_t s = (size_t)flowpic__key_hash(&ft->flows[idx].key) & ft->slot_mask;
    while ((uint32_t)ft->slots[s] != idx + 1) s = (s + 1) & ft->slot_mask;
    return s;
}

/* Empties slot s of the linear-probing index, moving later entries of the probe run back so
 * every key stays reachable from its home slot (no tombstones: lookups stay short). */
static void flowpic__slot_delete(flowpic_flowtable *ft, size_t s)
{
    size_t next = s;
    for (;;) {
        size_t home;
        next = (next + 1) & ft->slot_mask;
        if (!ft->slots[next]) break;
        home = (size_t)flowpic__key_hash(&ft->flows[(uint32_t)ft->slots[next] - 1].key) & ft->slot_mask;
        /* the entry may move to s unless its home lies cyclically in (s, next] */
        if (((next - home) & ft->slot_mask) >= ((next - s) & ft->slot_mask)) {
            ft->slots[s] = ft->slots[next];
            s = next;
        }
    }
    ft->slots[s] = 0;
}

FLOWPIC_DEF void flowpic_flowtable_remove(flowpic_flowtable *ft, size_t flow)
{
    size_t last = ft->count - 1;
    FLOWPIC_ASSERT(flow < ft->count);
    flowpic__slot_delete(ft, flowpic__slot_of(ft, flow));
    if (flow != last) {
        size_t s = flowpic__slot_of(ft, last);
        ft->flows[flow] = ft->flows[last];
        ft->slots[s] = (ft->slots[s] & 0xFFFFFFFF00000000u) | (uint64_t)(flow + 1);
    }
    ft->count = last;
}

FLOWPIC_DEF flowpic_result flowpic_flowtable_add(flowpic_flowtable *ft, const flowpic_packet *p,
                                                 size_t *flow_index)
{
    return flowpic__flowtable_add_hashed(ft, p, flowpic__key_hash(&p->key), (size_t)-1, flow_index);
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
        if (st->cap >= FLOWPIC_MAX_BLOCK_PACKETS) return FLOWPIC_ERR_BLOCK_LIMIT;
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

/* Counts p (key hash h; known as in flowpic__flowtable_add_hashed) in the flow table and returns
 * its flow's index, growing the state array with it. */
static flowpic_result flowpic__cutter_track(flowpic_cutter *c, const flowpic_packet *p, uint64_t h, size_t known,
                                            size_t *idx)
{
    size_t before = c->flows.count;
    flowpic_result res = flowpic__reserve((void **)&c->state, &c->state_cap, before + 1, sizeof *c->state);
    if (res != FLOWPIC_OK) return res;
    res = flowpic__flowtable_add_hashed(&c->flows, p, h, known, idx);
    if (res != FLOWPIC_OK) return res;
    if (c->flows.count > before) memset(&c->state[*idx], 0, sizeof *c->state);
    return FLOWPIC_OK;
}

/* flowpic_cutter_add with the key's hash already computed (and maybe its flow: known, as in
 * flowpic__flowtable_add_hashed). */
static flowpic_result flowpic__cutter_add_hashed(flowpic_cutter *c, const flowpic_packet *p, uint64_t h, size_t known)
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
    res = flowpic__cutter_track(c, p, h, known, &idx);
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

FLOWPIC_DEF flowpic_result flowpic_cutter_add(flowpic_cutter *c, const flowpic_packet *p)
{
    return flowpic__cutter_add_hashed(c, p, flowpic__key_hash(&p->key), (size_t)-1);
}

/* The flow lookups of a batch of m packets (m <= FLOWPIC_BATCH), started together before the
 * first packet is counted: with thousands of live flows each is a cache miss, and overlapping
 * them is most of the gain over one call a packet. The keys' hashes go to h; their home slots
 * are prefetched, then the flow each home slot holds (table entry, cutter state), whose index
 * + 1 goes to slot_flow (0: none). A hint only: the slot may hold another key, and flows may
 * end before a packet's turn. */
static void flowpic__prefetch_flows(const flowpic_cutter *c, const flowpic_packet *q, size_t m, uint64_t *h,
                                    uint32_t *slot_flow)
{
    const flowpic_flowtable *ft = &c->flows;
    size_t i;
    for (i = 0; i < m; i++) {
        h[i] = flowpic__key_hash(&q[i].key);
        slot_flow[i] = 0;
        if (ft->slots) FLOWPIC_PREFETCH(&ft->slots[(size_t)h[i] & ft->slot_mask]);
    }
    for (i = 0; i < m && ft->slots; i++) {
        const size_t v = (uint32_t)ft->slots[(size_t)h[i] & ft->slot_mask];
        if (v && v <= ft->count) {
            FLOWPIC_PREFETCH(&ft->flows[v - 1]);
            FLOWPIC_PREFETCH(&c->state[v - 1]);
            slot_flow[i] = (uint32_t)v;
        }
    }
}

/* flowpic__prefetch_flows, then each flow's next packet slots, then the packets one by one. */
FLOWPIC_DEF flowpic_result flowpic_cutter_add_batch(flowpic_cutter *c, const flowpic_packet *p, size_t n)
{
    uint64_t h[FLOWPIC_BATCH];
    uint32_t slot_flow[FLOWPIC_BATCH];
    size_t i, done;
    for (done = 0; done < n; done += i) {
        size_t m = n - done < FLOWPIC_BATCH ? n - done : FLOWPIC_BATCH;
        const flowpic_packet *q = p + done;
        flowpic__prefetch_flows(c, q, m, h, slot_flow);
        for (i = 0; i < m; i++) {
            const flowpic_cutflow *st = slot_flow[i] ? &c->state[slot_flow[i] - 1] : 0;
            if (st && st->times) { /* none yet: nothing to prefetch (and no arithmetic on NULL) */
                FLOWPIC_PREFETCH(st->times + st->n);
                FLOWPIC_PREFETCH(st->sizes + st->n);
            }
        }
        for (i = 0; i < m; i++) {
            flowpic_result res = flowpic__cutter_add_hashed(c, &q[i], h[i], (size_t)-1);
            if (res != FLOWPIC_OK) return res;
        }
    }
    return FLOWPIC_OK;
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

FLOWPIC_DEF flowpic_result flowpic_cutter_close(flowpic_cutter *c, size_t flow, uint64_t now_ns)
{
    flowpic_cutflow *st;
    flowpic_result res;
    if (flow >= c->flows.count) return FLOWPIC_ERR_ARG;
    st = &c->state[flow];
    if (now_ns == UINT64_MAX) return flowpic__finish_flow(c, flow);
    if (!st->started || st->done || now_ns <= st->t0 || c->config.preset == FLOWPIC_PRESET_ORIGINAL)
        return FLOWPIC_OK;
    res = flowpic__close_windows(c, flow, now_ns - st->t0);
    /* a later packet from before now (time went back) counts in the oldest window still open */
    if (st->cur_k < st->next_k) st->cur_k = st->next_k;
    return res;
}

FLOWPIC_DEF void flowpic_cutter_remove(flowpic_cutter *c, size_t flow)
{
    size_t last = c->flows.count - 1;
    FLOWPIC_ASSERT(flow < c->flows.count);
    FLOWPIC_FREE(c->state[flow].times);
    FLOWPIC_FREE(c->state[flow].sizes);
    c->state[flow] = c->state[last];
    flowpic_flowtable_remove(&c->flows, flow);
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

/* Sorts a[0 .. n) ascending, every key <= max_key; tmp holds n more. A few keys: insertion
 * sort; more: least significant digit radix sort, 8 bits a pass, as many passes as max_key has
 * bytes (a picture of 32 x 32: 2; of 1500 x 1500: 3). Linear, no comparison callback. */
static void flowpic__sort_keys(uint32_t *a, uint32_t *tmp, uint32_t n, uint32_t max_key)
{
    uint32_t count[256], i, shift, *from = a, *to = tmp;
    if (n <= 32) {
        for (i = 1; i < n; i++) {
            uint32_t v = a[i], j = i;
            for (; j > 0 && a[j - 1] > v; j--) a[j] = a[j - 1];
            a[j] = v;
        }
        return;
    }
    for (shift = 0; shift < 32 && (max_key >> shift) != 0; shift += 8) {
        uint32_t sum = 0, *swap;
        memset(count, 0, sizeof count);
        for (i = 0; i < n; i++) count[(from[i] >> shift) & 255u]++;
        for (i = 0; i < 256; i++) {
            uint32_t c = count[i];
            count[i] = sum;
            sum += c;
        }
        for (i = 0; i < n; i++) to[count[(from[i] >> shift) & 255u]++] = from[i];
        swap = from;
        from = to;
        to = swap;
    }
    if (from != a) memcpy(a, from, (size_t)n * sizeof *a);
}

/* Whether the preset puts a packet of this size in the picture. */
static int flowpic__in_picture(flowpic_preset preset, uint32_t size)
{
    return preset != FLOWPIC_PRESET_ORIGINAL || size <= 1500;
}

FLOWPIC_DEF uint32_t flowpic_picture_packets(flowpic_preset preset, const flowpic_pkt *packets, uint32_t n)
{
    uint32_t i, m = 0;
    for (i = 0; i < n; i++) m += (uint32_t)flowpic__in_picture(preset, FLOWPIC_PKT_SIZE(packets[i]));
    return m;
}

/* Pixel index of one packet, or UINT32_MAX when the preset leaves it out of the picture.
 * first/span: the original preset's stretch (the window's own first packet and span). */
static uint32_t flowpic__pixel_index(flowpic_preset preset, uint64_t length_ns, uint32_t res, flowpic_pkt p,
                                     uint64_t first, uint64_t span)
{
    uint64_t off = FLOWPIC_PKT_OFFSET(p), row, col;
    uint32_t size = FLOWPIC_PKT_SIZE(p);
    if (!flowpic__in_picture(preset, size)) return UINT32_MAX;
    if (preset == FLOWPIC_PRESET_ORIGINAL) {
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
    r = flowpic__reserve((void **)&pic->scratch, &pic->scratch_cap, 2 * (size_t)(n ? n : 1), sizeof *pic->scratch);
    if (r != FLOWPIC_OK) return r;
    idx = pic->scratch;
    for (i = 0; i < n; i++) {
        uint32_t ix = flowpic__pixel_index(preset, length_ns, res, packets[i], first, last - first);
        if (ix != UINT32_MAX) idx[m++] = ix;
    }
    flowpic__sort_keys(idx, idx + n, m, res * res - 1);
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

/* From this size on, eight bytes a step ("slicing by 8") with seven more tables derived from
 * the first on the stack (about 2 us): several times as fast on data sets of megabytes. */
#define FLOWPIC__CRC_SLICE_MIN 16384u

static void flowpic__crc_slice_tables(uint32_t t[8][256])
{
    int k, i;
    memcpy(t[0], flowpic__crc_table, sizeof t[0]);
    for (k = 1; k < 8; k++)
        for (i = 0; i < 256; i++) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFFu];
}

FLOWPIC_DEF uint32_t flowpic_crc32(uint32_t crc, const void *data, size_t size)
{
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
    if (size >= FLOWPIC__CRC_SLICE_MIN) {
        uint32_t t[8][256];
        flowpic__crc_slice_tables(t);
        for (; size >= 8; size -= 8, p += 8) {
            uint32_t a = crc ^ pcapl__le32(p), b = pcapl__le32(p + 4);
            crc = t[7][a & 0xFFu] ^ t[6][(a >> 8) & 0xFFu] ^ t[5][(a >> 16) & 0xFFu] ^ t[4][a >> 24] ^
                  t[3][b & 0xFFu] ^ t[2][(b >> 8) & 0xFFu] ^ t[1][(b >> 16) & 0xFFu] ^ t[0][b >> 24];
        }
    }
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

/* Appends a block record whose n packets are at packets[first ...]. */
static flowpic_result flowpic__ds_record(flowpic_dataset *ds, uint32_t flow, uint16_t label, uint32_t index,
                                         uint64_t start_ns, uint64_t first, uint32_t n)
{
    flowpic_ds_block *b;
    flowpic_result res;
    if (flow >= ds->n_flows || label >= ds->n_classes || n > FLOWPIC_MAX_BLOCK_PACKETS) return FLOWPIC_ERR_ARG;
    res = flowpic__reserve((void **)&ds->blocks, &ds->cap_blocks, ds->n_blocks + 1, sizeof *ds->blocks);
    if (res != FLOWPIC_OK) return res;
    b = &ds->blocks[ds->n_blocks++];
    memset(b, 0, sizeof *b);
    b->start_ns = start_ns;
    b->first = first;
    b->flow = flow;
    b->index = index;
    b->n_packets = n;
    b->label = label;
    return FLOWPIC_OK;
}

/* Appends a block record and room for its n packets; returns the record. */
static flowpic_result flowpic__ds_append(flowpic_dataset *ds, uint32_t flow, uint16_t label, uint32_t index,
                                         uint64_t start_ns, uint32_t n, flowpic_ds_block **out)
{
    flowpic_result res;
    if (n > FLOWPIC_MAX_BLOCK_PACKETS) return FLOWPIC_ERR_ARG;
    res = flowpic__reserve((void **)&ds->packets, &ds->cap_packets, ds->n_packets + n, sizeof *ds->packets);
    if (res == FLOWPIC_OK) res = flowpic__ds_record(ds, flow, label, index, start_ns, ds->n_packets, n);
    if (res != FLOWPIC_OK) return res;
    ds->n_packets += n;
    *out = &ds->blocks[ds->n_blocks - 1];
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

/* The encoded length of a block's packets: zigzag varint of each offset delta, varint of each size. */
static size_t flowpic__packets_len(const flowpic_pkt *p, uint32_t n)
{
    uint64_t prev = 0;
    size_t len = 0;
    uint32_t i;
    for (i = 0; i < n; i++) {
        uint64_t off = FLOWPIC_PKT_OFFSET(p[i]);
        len += flowpic__varint_len(flowpic__zigzag((int64_t)(off - prev))) + flowpic__varint_len(FLOWPIC_PKT_SIZE(p[i]));
        prev = off;
    }
    return len;
}

/* Where an encoded file goes: buf[0 .. len), handed to sink (when there is one) each time it
 * fills, so a large data set streams to its file through a small buffer; without a sink, buf is
 * the whole output, sized beforehand. crc covers the bytes before buf + crc_pos. */
typedef flowpic_result (*flowpic__sink_fn)(void *user, const uint8_t *data, size_t n);
typedef struct flowpic__writer {
    uint8_t *buf;
    size_t len, cap, crc_pos;
    uint32_t crc;
    flowpic__sink_fn sink;
    void *user;
    flowpic_result res; /* the sink's first failure */
} flowpic__writer;

#define FLOWPIC__WRITER_CHUNK 65536u /* more than the largest record (a name: 2 + FLOWPIC_MAX_NAME) */

static void flowpic__wr_pass(flowpic__writer *w)
{
    w->crc = flowpic_crc32(w->crc, w->buf + w->crc_pos, w->len - w->crc_pos);
    w->crc_pos = w->len;
    if (!w->sink) return;
    if (w->res == FLOWPIC_OK && w->len) w->res = w->sink(w->user, w->buf, w->len);
    w->len = w->crc_pos = 0;
}

/* Where to write at most n more bytes (n <= the chunk); set w->len past them with
 * flowpic__wr_end. Without a sink the buffer was sized to the exact total beforehand. */
static uint8_t *flowpic__wr_room(flowpic__writer *w, size_t n)
{
    if (w->sink && w->cap - w->len < n) flowpic__wr_pass(w);
    return w->buf + w->len;
}

static void flowpic__wr_end(flowpic__writer *w, const uint8_t *end) { w->len = (size_t)(end - w->buf); }

static void flowpic__wr_packets(flowpic__writer *w, const flowpic_pkt *p, uint32_t n)
{
    uint64_t prev = 0;
    uint32_t i;
    for (i = 0; i < n; i++) {
        uint64_t off = FLOWPIC_PKT_OFFSET(p[i]);
        uint8_t *o = flowpic__wr_room(w, 20); /* two varints of at most 10 bytes */
        flowpic__wr_end(w, flowpic__w_varint(flowpic__w_varint(o, flowpic__zigzag((int64_t)(off - prev))),
                                             FLOWPIC_PKT_SIZE(p[i])));
        prev = off;
    }
}

/* The whole file (docs/DATASET.md) into w, its CRC last; bytes[i] is block i's encoded length. */
static void flowpic__encode_dataset(const flowpic_dataset *ds, const size_t *bytes, flowpic__writer *w)
{
    const flowpic_block_config *c = &ds->config;
    size_t i;
    uint8_t *o = flowpic__wr_room(w, FLOWPIC__DS_HEADER);
    memcpy(o, "FPDS", 4);
    o = flowpic__w_le(o + 4, 1, 4);
    o = flowpic__w_le(o, (uint64_t)c->preset | (uint64_t)c->size_policy << 8 | (uint64_t)(c->bidirectional != 0) << 16, 4);
    o = flowpic__w_le(o, c->min_packets, 4);
    o = flowpic__w_le(o, c->max_size, 4);
    o = flowpic__w_le(o, 0, 4);
    o = flowpic__w_le(o, c->block_ns, 8);
    o = flowpic__w_le(o, c->step_ns, 8);
    o = flowpic__w_le(o, c->idle_timeout_ns, 8);
    o = flowpic__w_le(o, ds->n_classes, 4);
    o = flowpic__w_le(o, ds->n_sources, 4);
    o = flowpic__w_le(o, ds->n_flows, 8);
    o = flowpic__w_le(o, ds->n_blocks, 8);
    flowpic__wr_end(w, flowpic__w_le(o, ds->n_packets, 8));
    for (i = 0; i < ds->n_classes; i++)
        flowpic__wr_end(w, flowpic__w_name(flowpic__wr_room(w, 2 + strlen(ds->classes[i])), ds->classes[i]));
    for (i = 0; i < ds->n_sources; i++)
        flowpic__wr_end(w, flowpic__w_name(flowpic__wr_room(w, 2 + strlen(ds->sources[i])), ds->sources[i]));
    for (i = 0; i < ds->n_flows; i++) {
        const flowpic_ds_flow *f = &ds->flows[i];
        o = flowpic__wr_room(w, FLOWPIC__DS_FLOW);
        memcpy(o, f->key.src, 16);
        memcpy(o + 16, f->key.dst, 16);
        o = flowpic__w_le(o + 32, f->key.sport, 2);
        o = flowpic__w_le(o, f->key.dport, 2);
        o = flowpic__w_le(o, f->key.proto, 1);
        o = flowpic__w_le(o, f->key.ip_version, 1);
        o = flowpic__w_le(o, 0, 2);
        o = flowpic__w_le(o, f->source, 4);
        flowpic__wr_end(w, flowpic__w_le(o, f->generation, 4));
    }
    for (i = 0; i < ds->n_blocks; i++) {
        const flowpic_ds_block *b = &ds->blocks[i];
        o = flowpic__wr_room(w, FLOWPIC__DS_BLOCK);
        o = flowpic__w_le(o, b->flow, 4);
        o = flowpic__w_le(o, b->label, 2);
        o = flowpic__w_le(o, 0, 2);
        o = flowpic__w_le(o, b->index, 4);
        o = flowpic__w_le(o, b->n_packets, 4);
        o = flowpic__w_le(o, b->start_ns, 8);
        flowpic__wr_end(w, flowpic__w_le(o, bytes[i], 8));
    }
    for (i = 0; i < ds->n_blocks; i++)
        flowpic__wr_packets(w, ds->packets + ds->blocks[i].first, ds->blocks[i].n_packets);
    flowpic__wr_pass(w);
    flowpic__wr_end(w, flowpic__w_le(flowpic__wr_room(w, 4), w->crc, 4));
    flowpic__wr_pass(w);
}

/* The encoded length of every block's packets (bytes[n_blocks], malloc'd) and of the file. */
static flowpic_result flowpic__dataset_layout(const flowpic_dataset *ds, size_t **bytes, size_t *total)
{
    size_t i, t = FLOWPIC__DS_HEADER + 4;
    *bytes = (size_t *)FLOWPIC_MALLOC((ds->n_blocks ? ds->n_blocks : 1) * sizeof **bytes);
    if (!*bytes) return FLOWPIC_ERR_NOMEM;
    for (i = 0; i < ds->n_classes; i++) t += 2 + strlen(ds->classes[i]);
    for (i = 0; i < ds->n_sources; i++) t += 2 + strlen(ds->sources[i]);
    t += ds->n_flows * FLOWPIC__DS_FLOW + ds->n_blocks * FLOWPIC__DS_BLOCK;
    for (i = 0; i < ds->n_blocks; i++) {
        (*bytes)[i] = flowpic__packets_len(ds->packets + ds->blocks[i].first, ds->blocks[i].n_packets);
        t += (*bytes)[i];
    }
    *total = t;
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_dataset_to_memory(const flowpic_dataset *ds, uint8_t **data, size_t *size)
{
    flowpic__writer w;
    size_t *bytes, total;
    flowpic_result res = flowpic__dataset_layout(ds, &bytes, &total);
    if (res != FLOWPIC_OK) return res;
    memset(&w, 0, sizeof w);
    w.buf = (uint8_t *)FLOWPIC_MALLOC(total);
    if (!w.buf) {
        FLOWPIC_FREE(bytes);
        return FLOWPIC_ERR_NOMEM;
    }
    w.cap = total;
    flowpic__encode_dataset(ds, bytes, &w);
    FLOWPIC_ASSERT(w.len == total);
    FLOWPIC_FREE(bytes);
    *data = w.buf;
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

/* Bytes left before the checksum (the last 4 bytes): every record, names included, ends there. */
static size_t flowpic__in_left(const flowpic__in *in) { return in->pos + 4 <= in->len ? in->len - 4 - in->pos : 0; }

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
        if (!(b & 0x80u)) {
            if (b == 0 && shift > 0) { /* one encoding per value: no padding bytes */
                flowpic__in_fail(in, start, "number not in its shortest form", 0, 0);
                return 0;
            }
            break;
        }
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
    if ((!n && !allow_empty) || n > flowpic__in_left(in)) {
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
    if ((size_t)n > flowpic__in_left(in) / 2) {
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
    if (flowpic__get_le(in, 4)) {
        flowpic__in_fail(in, 20, "reserved field is not zero", 0, 0);
        return FLOWPIC_ERR_FORMAT;
    }
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
    body = flowpic__in_left(in);
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
        if (flowpic__get_le(in, 2)) flowpic__in_fail(in, at + 38, "flow %u: reserved field is not zero", i, 0);
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
        if (flowpic__get_le(in, 2)) flowpic__in_fail(in, at + 6, "block %u: reserved field is not zero", i, 0);
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
        if (bytes[i] > flowpic__in_left(in)) {
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
    if (res == FLOWPIC_OK && counts[2] > flowpic__in_left(&in) / FLOWPIC__DS_FLOW) {
        flowpic__in_fail(&in, in.pos, "%u flows cannot fit in the file", counts[2], 0);
        res = FLOWPIC_ERR_FORMAT;
    }
    if (res == FLOWPIC_OK) res = flowpic__get_flows(&in, ds, counts[2]);
    if (res == FLOWPIC_OK && counts[3] > flowpic__in_left(&in) / FLOWPIC__DS_BLOCK) {
        flowpic__in_fail(&in, in.pos, "%u blocks cannot fit in the file", counts[3], 0);
        res = FLOWPIC_ERR_FORMAT;
    }
    if (res == FLOWPIC_OK) res = flowpic__get_blocks(&in, ds, counts[3], counts[4]);
    if (res == FLOWPIC_OK && in.pos != in.len - 4) {
        flowpic__in_fail(&in, in.pos, "%u bytes after the last block", flowpic__in_left(&in), 0);
        res = FLOWPIC_ERR_FORMAT;
    }
    if (res != FLOWPIC_OK) {
        if (res == FLOWPIC_ERR_NOMEM) flowpic__error(in.err, res, in.pos, "out of memory");
        flowpic_dataset_free(ds);
    }
    return res;
}

#ifndef FLOWPIC_NO_STDIO
#ifdef FLOWPIC__DEFAULT_FREAD
static long flowpic__fread(FILE *f, void *buf, size_t n)
{
    size_t got = fread(buf, 1, n, f);
    return got == 0 && ferror(f) ? -1 : (long)got;
}
#endif

FLOWPIC_DEF flowpic_result flowpic_read_file(const char *path, uint64_t max, uint8_t **data, size_t *size,
                                             flowpic_error *err)
{
    FILE *f = FLOWPIC_FOPEN(path, "rb");
    uint8_t *buf = 0;
    size_t len = 0, cap = 0;
    flowpic_result res = FLOWPIC_OK;
    if (!f) {
        flowpic__error(err, FLOWPIC_ERR_IO, 0, "cannot open");
        return FLOWPIC_ERR_IO;
    }
    for (;;) { /* no seeking: works on pipes too */
        long got;
        if (len == cap && (res = flowpic__reserve((void **)&buf, &cap, len + 65536, 1)) != FLOWPIC_OK) break;
        got = FLOWPIC_FREAD(f, buf + len, cap - len);
        if (got < 0 || (size_t)got > cap - len) {
            res = FLOWPIC_ERR_IO;
            flowpic__error(err, res, len, "read error");
            break;
        }
        len += (size_t)got;
        if (len > max) {
            res = FLOWPIC_ERR_LIMIT;
            flowpic__error(err, res, max, "file larger than the limit");
            break;
        }
        if (got == 0) break;
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

/* Creates PATH.tmp for writing (*tmp receives its malloc'd name). */
static flowpic_result flowpic__atomic_open(const char *path, char **tmp, FILE **f, flowpic_error *err)
{
    size_t n = strlen(path);
    *tmp = (char *)FLOWPIC_MALLOC(n + 5);
    if (!*tmp) {
        flowpic__error(err, FLOWPIC_ERR_NOMEM, 0, "out of memory");
        return FLOWPIC_ERR_NOMEM;
    }
    memcpy(*tmp, path, n);
    memcpy(*tmp + n, ".tmp", 5);
    *f = FLOWPIC_FOPEN(*tmp, "wb");
    if (!*f) {
        FLOWPIC_FREE(*tmp);
        flowpic__error(err, FLOWPIC_ERR_IO, 0, "cannot create the output file");
        return FLOWPIC_ERR_IO;
    }
    return FLOWPIC_OK;
}

/* Closes PATH.tmp and renames it over PATH when everything was written (ok), removes it if not. */
static flowpic_result flowpic__atomic_close(const char *path, char *tmp, FILE *f, int ok, flowpic_error *err)
{
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

FLOWPIC_DEF flowpic_result flowpic_write_file_atomic(const char *path, const void *data, size_t size,
                                                     flowpic_error *err)
{
    char *tmp;
    FILE *f;
    flowpic_result res = flowpic__atomic_open(path, &tmp, &f, err);
    if (res != FLOWPIC_OK) return res;
    return flowpic__atomic_close(path, tmp, f, FLOWPIC_FWRITE(f, data, size) == size, err);
}

static flowpic_result flowpic__sink_file(void *user, const uint8_t *data, size_t n)
{
    return FLOWPIC_FWRITE((FILE *)user, data, n) == n ? FLOWPIC_OK : FLOWPIC_ERR_IO;
}

/* The files flowpic writes (data sets, models) go through memory: encode, then one atomic write. */
static flowpic_result flowpic__save(flowpic_result encoded, uint8_t *data, size_t size, const char *path,
                                    flowpic_error *err)
{
    if (encoded != FLOWPIC_OK) {
        flowpic__error(err, encoded, 0, flowpic_result_string(encoded));
        return encoded;
    }
    encoded = flowpic_write_file_atomic(path, data, size, err);
    FLOWPIC_FREE(data);
    return encoded;
}

/* Streams the encoding to the file through a small buffer: a data set is never held twice. */
FLOWPIC_DEF flowpic_result flowpic_dataset_save(const flowpic_dataset *ds, const char *path, flowpic_error *err)
{
    flowpic__writer w;
    size_t *bytes, total;
    char *tmp;
    FILE *f;
    flowpic_result res = flowpic__dataset_layout(ds, &bytes, &total);
    memset(&w, 0, sizeof w);
    if (res == FLOWPIC_OK) {
        w.cap = FLOWPIC__WRITER_CHUNK;
        w.buf = (uint8_t *)FLOWPIC_MALLOC(w.cap);
        if (!w.buf) res = FLOWPIC_ERR_NOMEM;
    }
    if (res != FLOWPIC_OK) {
        FLOWPIC_FREE(bytes);
        flowpic__error(err, res, 0, flowpic_result_string(res));
        return res;
    }
    res = flowpic__atomic_open(path, &tmp, &f, err);
    if (res == FLOWPIC_OK) {
        w.sink = flowpic__sink_file;
        w.user = f;
        flowpic__encode_dataset(ds, bytes, &w);
        res = flowpic__atomic_close(path, tmp, f, w.res == FLOWPIC_OK, err);
    }
    FLOWPIC_FREE(bytes);
    FLOWPIC_FREE(w.buf);
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

/* The 8-bit gray image (0 = black) of a picture: rows top (largest sizes) to bottom. With
 * dots, a white margin of dot + 2 pixels and a gray frame around it keep edge pixels whole. */
static flowpic_result flowpic__gray(const flowpic_picture *pic, uint32_t scale, uint32_t dot, uint8_t **gray,
                                    uint32_t *side)
{
    uint32_t i, s = pic->res * scale, m = dot ? dot + 2 : 0, S;
    if (!scale || !pic->res || scale > FLOWPIC_MAX_RES || s > 65536u || dot > 64) return FLOWPIC_ERR_ARG;
    S = s + 2 * m;
    *gray = (uint8_t *)FLOWPIC_MALLOC((size_t)S * S);
    if (!*gray) return FLOWPIC_ERR_NOMEM;
    memset(*gray, 255, (size_t)S * S);
    if (m) { /* the frame */
        memset(*gray, 160, S);
        memset(*gray + (size_t)(S - 1) * S, 160, S);
        for (i = 0; i < S; i++) (*gray)[(size_t)i * S] = (*gray)[(size_t)i * S + S - 1] = 160;
    }
    for (i = 0; i < pic->n; i++) {
        uint32_t row = pic->pixels[i].index / pic->res, col = pic->pixels[i].index % pic->res, y;
        uint32_t top = m + (pic->res - 1 - row) * scale, left = m + col * scale;
        uint32_t y0 = top - (m ? dot : 0), x0 = left - (m ? dot : 0), y1 = top + scale + dot, x1 = left + scale + dot;
        for (y = y0; y < y1; y++) memset(*gray + (size_t)y * S + x0, 0, x1 - x0);
    }
    *side = S;
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

FLOWPIC_DEF flowpic_result flowpic_gray_png(const uint8_t *gray, uint32_t width, uint32_t height, uint8_t **data,
                                            size_t *size)
{
    uint8_t ihdr[13];
    uint32_t y, a = 1, b = 0;
    flowpic__out o, z;
    size_t raw, done = 0, i;
    if (!width || !height || width > 65536u || height > 65536u) return FLOWPIC_ERR_ARG;
    memset(&o, 0, sizeof o);
    memset(&z, 0, sizeof z);
    /* zlib stream of stored deflate blocks over the filtered rows (filter byte 0 each) */
    raw = (size_t)height * (width + 1);
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
            size_t row = i / (width + 1), col = i % (width + 1);
            uint8_t v = col == 0 ? 0 : gray[row * width + col - 1];
            flowpic__put(&z, &v, 1);
            a = (a + v) % 65521u;
            b = (b + a) % 65521u;
        }
        done += n;
    }
    flowpic__put_be32(&z, b << 16 | a);
    flowpic__put(&o, "\x89PNG\r\n\x1a\n", 8);
    for (y = 0; y < 4; y++) {
        ihdr[y] = (uint8_t)(width >> (24 - 8 * y));
        ihdr[4 + y] = (uint8_t)(height >> (24 - 8 * y));
    }
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 0;  /* grayscale */
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    flowpic__png_chunk(&o, "IHDR", ihdr, 13);
    if (!z.failed) flowpic__png_chunk(&o, "IDAT", z.data, z.len);
    flowpic__png_chunk(&o, "IEND", 0, 0);
    FLOWPIC_FREE(z.data);
    if (o.failed || z.failed) {
        FLOWPIC_FREE(o.data);
        return FLOWPIC_ERR_NOMEM;
    }
    *data = o.data;
    *size = o.len;
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_picture_png(const flowpic_picture *pic, uint32_t scale, uint32_t dot,
                                               uint8_t **data, size_t *size)
{
    uint8_t *gray;
    uint32_t side;
    flowpic_result res = flowpic__gray(pic, scale, dot, &gray, &side);
    if (res != FLOWPIC_OK) return res;
    res = flowpic_gray_png(gray, side, side, data, size);
    FLOWPIC_FREE(gray);
    return res;
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

/* The blocks of one capture, kept until the flows' totals are known. Their packets go straight
 * to the end of the destination's packet array, past ds->n_packets (they are copied once, and
 * a data set is never held twice); only the block records wait, for the flows' order. */
typedef struct flowpic__held {
    flowpic_dataset *ds;     /* the destination */
    flowpic_dataset held;    /* one flow record per (flow, generation); block records, whose
                                `first` indexes ds->packets */
    size_t n_packets;        /* packets held at ds->packets[ds->n_packets ...] */
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

static flowpic_result flowpic__hold_packets(flowpic__held *h, const flowpic_block *b, uint64_t *first)
{
    flowpic_dataset *ds = h->ds;
    size_t at = ds->n_packets + h->n_packets;
    flowpic_result res = flowpic__reserve((void **)&ds->packets, &ds->cap_packets, at + b->n_packets,
                                          sizeof *ds->packets);
    if (res != FLOWPIC_OK) return res;
    if (b->n_packets) memcpy(ds->packets + at, b->packets, (size_t)b->n_packets * sizeof *b->packets);
    h->n_packets += b->n_packets;
    *first = at;
    return FLOWPIC_OK;
}

static void flowpic__hold_block(void *user, const flowpic_block *b)
{
    flowpic__held *h = (flowpic__held *)user;
    uint32_t id;
    uint64_t first = 0;
    if (h->error != FLOWPIC_OK) return;
    h->error = flowpic__held_flow(h, b, &id);
    if (h->error == FLOWPIC_OK && b->n_packets > FLOWPIC_MAX_BLOCK_PACKETS) h->error = FLOWPIC_ERR_ARG;
    if (h->error == FLOWPIC_OK) h->error = flowpic__hold_packets(h, b, &first);
    if (h->error == FLOWPIC_OK)
        h->error = flowpic__ds_record(&h->held, id, 0, b->index, b->start_ns, first, b->n_packets);
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

/* The flows label() names become flows of h->ds, in rank order: ds_flow[rank] (UINT32_MAX for
 * a flow left out) and its class. */
static flowpic_result flowpic__release_flows(flowpic__held *h, const flowpic_cutter *c, const flowpic__flow_rank *ranks,
                                             uint32_t source, flowpic_label_fn label, void *user, uint32_t *ds_flow,
                                             uint16_t *class_id)
{
    size_t i;
    for (i = 0; i < h->held.n_flows; i++) {
        const char *name = label ? label(user, &c->flows.flows[ranks[i].cutter_flow]) : "unlabelled";
        flowpic_result res = FLOWPIC_OK;
        ds_flow[i] = UINT32_MAX;
        if (name) res = flowpic_dataset_class(h->ds, name, &class_id[i]);
        if (name && res == FLOWPIC_OK)
            res = flowpic_dataset_add_flow(h->ds, &h->held.flows[ranks[i].held].key, source, ranks[i].generation,
                                           &ds_flow[i]);
        if (res != FLOWPIC_OK) return res;
    }
    return FLOWPIC_OK;
}

/* Adds the held blocks of the flows label() names to h->ds, flows in first-seen order. Their
 * packets are already in ds->packets: those of flows left out are squeezed out, in place. */
static flowpic_result flowpic__release(flowpic__held *h, const flowpic_cutter *c, uint32_t source,
                                       flowpic_label_fn label, void *user)
{
    flowpic_dataset *ds = h->ds;
    flowpic__flow_rank *ranks;
    uint32_t *rank_of, *ds_flow;
    uint16_t *class_id;
    size_t i, n = h->held.n_flows ? h->held.n_flows : 1, kept = ds->n_packets, kept_blocks = 0;
    flowpic_result res = FLOWPIC_OK;
    ranks = (flowpic__flow_rank *)FLOWPIC_MALLOC(n * sizeof *ranks);
    rank_of = (uint32_t *)FLOWPIC_MALLOC(n * sizeof *rank_of);
    ds_flow = (uint32_t *)FLOWPIC_MALLOC(n * sizeof *ds_flow);
    class_id = (uint16_t *)FLOWPIC_MALLOC(n * sizeof *class_id);
    if (!ranks || !rank_of || !ds_flow || !class_id) res = FLOWPIC_ERR_NOMEM;
    for (i = 0; res == FLOWPIC_OK && i < h->held.n_flows; i++) {
        ranks[i].cutter_flow = h->flow_of[i];
        ranks[i].generation = h->held.flows[i].generation;
        ranks[i].held = (uint32_t)i;
    }
    if (res == FLOWPIC_OK) {
        qsort(ranks, h->held.n_flows, sizeof *ranks, flowpic__cmp_rank);
        for (i = 0; i < h->held.n_flows; i++) rank_of[ranks[i].held] = (uint32_t)i;
        res = flowpic__release_flows(h, c, ranks, source, label, user, ds_flow, class_id);
    }
    for (i = 0; res == FLOWPIC_OK && i < h->held.n_blocks; i++) { /* in the order the packets came */
        flowpic_ds_block *b = &h->held.blocks[i];
        b->flow = rank_of[b->flow];
        if (ds_flow[b->flow] == UINT32_MAX) continue;
        if (b->first != kept && b->n_packets)
            memmove(ds->packets + kept, ds->packets + b->first, (size_t)b->n_packets * sizeof *ds->packets);
        b->first = kept;
        kept += b->n_packets;
        kept_blocks++;
    }
    if (res == FLOWPIC_OK) /* room first, so that no block is half added */
        res = flowpic__reserve((void **)&ds->blocks, &ds->cap_blocks, ds->n_blocks + kept_blocks, sizeof *ds->blocks);
    if (res == FLOWPIC_OK && h->held.n_blocks) /* blocks is NULL when there are none; qsort wants a pointer */
        qsort(h->held.blocks, h->held.n_blocks, sizeof *h->held.blocks, flowpic__cmp_held);
    for (i = 0; res == FLOWPIC_OK && i < h->held.n_blocks; i++) {
        const flowpic_ds_block *b = &h->held.blocks[i];
        if (ds_flow[b->flow] != UINT32_MAX)
            res = flowpic__ds_record(ds, ds_flow[b->flow], class_id[b->flow], b->index, b->start_ns, b->first,
                                     b->n_packets);
    }
    if (res == FLOWPIC_OK) ds->n_packets = kept;
    FLOWPIC_FREE(ranks);
    FLOWPIC_FREE(rank_of);
    FLOWPIC_FREE(ds_flow);
    FLOWPIC_FREE(class_id);
    return res;
}

/* A reader's failure as a flowpic result: memory and I/O keep their kind, the rest is format. */
static flowpic_result flowpic__reader_result(pcapl_result code)
{
    if (code == PCAPL_ERR_NOMEM) return FLOWPIC_ERR_NOMEM;
    if (code == PCAPL_ERR_READ || code == PCAPL_ERR_OPEN) return FLOWPIC_ERR_IO;
    return FLOWPIC_ERR_FORMAT;
}

FLOWPIC_DEF flowpic_result flowpic_dataset_add_capture(flowpic_dataset *ds, pcapl_reader *r, const char *source,
                                                       flowpic_label_fn label, void *label_user,
                                                       flowpic_progress_fn progress, void *progress_user)
{
    flowpic_cutter c;
    flowpic__held h;
    pcapl_packet pkt;
    pcapl_decoded d[FLOWPIC_BATCH];
    uint64_t ts[FLOWPIC_BATCH];
    flowpic_packet batch[FLOWPIC_BATCH];
    pcapl_result rr = PCAPL_OK;
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
    /* In batches: decoded first, converted once the decoder's stores have landed (reading them
     * back at once stalls on store forwarding), then counted with overlapped flow lookups. */
    while (res == FLOWPIC_OK && rr == PCAPL_OK) {
        size_t n = 0, i;
        while (n < FLOWPIC_BATCH && (rr = pcapl_next(r, &pkt)) == PCAPL_OK) {
            if (progress && !(++packets & 0xFFFFu)) progress(progress_user, packets, r->bytes);
            if (pcapl_decode(&pkt, &d[n]) == PCAPL_SKIP_NONE) ts[n++] = pkt.ts_ns;
        }
        for (i = 0; i < n; i++) flowpic_packet_from_decoded(&batch[i], ts[i], &d[i]);
        res = flowpic_cutter_add_batch(&c, batch, n);
        if (res == FLOWPIC_OK) res = h.error;
    }
    if (res == FLOWPIC_OK) res = flowpic_cutter_flush(&c);
    if (res == FLOWPIC_OK) res = h.error;
    if (res == FLOWPIC_OK) res = flowpic__release(&h, &c, source_id, label, label_user);
    if (res == FLOWPIC_OK && r->error.code != PCAPL_OK) res = flowpic__reader_result(r->error.code);
    flowpic_cutter_free(&c);
    flowpic_dataset_free(&h.held);
    FLOWPIC_FREE(h.flow_of);
    FLOWPIC_FREE(h.held_of);
    return res;
}

/* ---- rng -------------------------------------------------------------------------------------- */

static uint64_t flowpic__splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static uint64_t flowpic__rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

FLOWPIC_DEF void flowpic_rng_seed(flowpic_rng *rng, uint64_t seed)
{
    uint64_t x = seed;
    int i;
    for (i = 0; i < 4; i++) rng->s[i] = flowpic__splitmix64(&x);
}

FLOWPIC_DEF uint64_t flowpic_rng_next(flowpic_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = flowpic__rotl64(s[1] * 5u, 7) * 9u;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = flowpic__rotl64(s[3], 45);
    return result;
}

FLOWPIC_DEF double flowpic_rng_uniform(flowpic_rng *rng)
{
    /* the top 53 bits, scaled by 2^-53: every value is an exact multiple of 2^-53 in [0, 1) */
    return (double)(flowpic_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* ==========================================================================================
 * >>network  implementation
 * ==========================================================================================
 * Layout of this section:
 *   nn helpers        size arithmetic, OpenMP glue, small kernels (dot, lane reduction)
 *   net building      descriptions, presets, shapes, parameter offsets, Glorot
 *   workspace         activation / mask / gradient / scratch offsets, one allocation
 *   conv              naive reference and cache-blocked direct convolution, fwd + bwd
 *   pool, relu, dropout, dense, softmax-CE
 *   passes            forward, loss, backward, predict
 *   sparse            conv1 / pool1 / conv2 straight from sparse pictures, forward + backward
 *   adam
 *   >>model           model files: save / load to memory (MODEL_FORMAT.md)
 */

#ifdef _OPENMP
#include <omp.h>
#endif

/* Register tile of the blocked convolution: NN_OCT output channels x NN_V output columns
 * accumulated in registers over (in-channel, ky, kx). NN_OCT = 5 divides the full net's 10
 * and 20 channels; NN_V = 16 fills 5 x 2 AVX registers, 8 fills 5 x 2 SSE registers.
 * FLOWPIC_NN_TILE_V may be overridden with another power of two. */
#ifndef FLOWPIC_NN_TILE_V
#if defined(__AVX__)
#define FLOWPIC_NN_TILE_V 16
#else
#define FLOWPIC_NN_TILE_V 8
#endif
#endif
#define NN_V   FLOWPIC_NN_TILE_V
#define NN_OCT 5
/* Keeps compilers on the intended vectorisation: a constant NN_V-lane loop stays a loop (and
 * is vectorised) instead of being unrolled into scalars that get vectorised across the
 * reduction loop around it (gathers or in-order reductions: measured 3-10x slower). */
#if defined(__clang__)
#define NN_LANES _Pragma("clang loop unroll(disable)")
#elif defined(__GNUC__) && __GNUC__ >= 8
#define NN_LANES _Pragma("GCC unroll 1")
#else
#define NN_LANES
#endif
/* Output rows per forward work item (an item is one sample's row block). */
#define NN_ROWS_PER_ITEM 16
/* Per-(sample, row block) conv weight gradients are kept for at most this many floats at a
 * time (the batch is processed in chunks of samples beyond it). */
#ifndef FLOWPIC_NN_PARTIALS_BUDGET
#define FLOWPIC_NN_PARTIALS_BUDGET (1u << 22)
#endif
/* The sparse passes replace layers 0 .. NN_SPARSE_OUT (conv1, ReLU, pool1, conv2); channels of
 * conv1 and conv2 at most NN_SPARSE_MAX_C (per-cell buffers live on the stack). */
#define NN_SPARSE_OUT 3
#define NN_SPARSE_MAX_C 256
/* Smaller loops (elements, or multiply-adds) run on one thread: not worth a fork/join. */
#define NN_PAR_MIN 65536
/* floats; keeps per-thread / per-tensor regions on separate cache lines */
#define NN_ALIGN 16

#ifdef _OPENMP
#define NN_STR_(x) #x
#define NN_OMP(...) _Pragma(NN_STR_(omp __VA_ARGS__))
#else
#define NN_OMP(...)
#endif

/* ---------------------------------------------------------------- nn helpers */

static int nn_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

static int nn_add_size(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

static size_t nn_round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }
static int nn_round_up_int(int x, int m) { return (x + m - 1) / m * m; }
static int nn_min_int(int a, int b) { return a < b ? a : b; }

static int nn_threads(const flowpic_workspace *ws)
{
#ifdef _OPENMP
    int t = omp_get_max_threads();
    return t < ws->num_threads ? t : ws->num_threads;
#else
    (void)ws;
    return 1;
#endif
}

static int nn_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Dot product with 8 independent partial sums (so the compiler can vectorise it without
 * reassociating) reduced in a fixed order: the result depends only on the inputs. */
static float nn_dot(const float *FLOWPIC_RESTRICT a, const float *FLOWPIC_RESTRICT b, int n)
{
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    float s;
    int i = 0, j;
    for (; i + 8 <= n; i += 8)
        for (j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* nn_dot(a, b + r * stride, n) for r = 0 .. 3, each summed exactly as nn_dot sums it (same
 * lanes, same order), with a read once for the four. */
static void nn_dot4(const float *FLOWPIC_RESTRICT a, const float *FLOWPIC_RESTRICT b, size_t stride, int n, float *out)
{
    float acc[4][8];
    const float *FLOWPIC_RESTRICT b0 = b, *FLOWPIC_RESTRICT b1 = b + stride;
    const float *FLOWPIC_RESTRICT b2 = b + 2 * stride, *FLOWPIC_RESTRICT b3 = b + 3 * stride;
    int i = 0, j, r;
    memset(acc, 0, sizeof acc);
    for (; i + 8 <= n; i += 8) { /* one loop a row: each vectorises as nn_dot's does */
        for (j = 0; j < 8; j++) acc[0][j] += a[i + j] * b0[i + j];
        for (j = 0; j < 8; j++) acc[1][j] += a[i + j] * b1[i + j];
        for (j = 0; j < 8; j++) acc[2][j] += a[i + j] * b2[i + j];
        for (j = 0; j < 8; j++) acc[3][j] += a[i + j] * b3[i + j];
    }
    for (r = 0; r < 4; r++) {
        const float *FLOWPIC_RESTRICT br = b + (size_t)r * stride;
        const float *l = acc[r];
        float s = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
        for (j = i; j < n; j++) s += a[j] * br[j];
        out[r] = s;
    }
}

/* y[i] += a * x[i]: fixed-width chunks so that -O2 vectorises it (same result as the plain
 * loop: each element sees the same two operations). */
static void nn_axpy(float *FLOWPIC_RESTRICT y, float a, const float *FLOWPIC_RESTRICT x, int n)
{
    int i = 0, v;
    for (; i + 16 <= n; i += 16)
        for (v = 0; v < 16; v++) y[i + v] += a * x[i + v];
    for (; i < n; i++) y[i] += a * x[i];
}

/* Sum of NN_V lanes in a fixed pairwise order. */
static float nn_lane_sum(const float *lanes)
{
    float t[NN_V];
    int w, i;
    for (i = 0; i < NN_V; i++) t[i] = lanes[i];
    for (w = NN_V / 2; w >= 1; w /= 2)
        for (i = 0; i < w; i++) t[i] += t[i + w];
    return t[0];
}

/* ---------------------------------------------------------------- net building */

FLOWPIC_DEF const char *flowpic_arch_name(flowpic_arch arch)
{
    switch (arch) {
    case FLOWPIC_ARCH_FULL: return "flowpic-full";
    case FLOWPIC_ARCH_MINI: return "flowpic-mini";
    case FLOWPIC_ARCH_CUSTOM: return "custom";
    }
    return "unknown";
}

static flowpic_layer_desc nn_desc(flowpic_layer_kind kind, int size, int kernel, int stride,
                                  int pad_before, int pad_after, float p)
{
    flowpic_layer_desc d;
    d.kind = kind;
    d.size = size;
    d.kernel = kernel;
    d.stride = stride;
    d.pad_before = pad_before;
    d.pad_after = pad_after;
    d.dropout_p = p;
    return d;
}

FLOWPIC_DEF int flowpic_net_preset(flowpic_arch arch, int res, flowpic_layer_desc *desc)
{
    int n = 0;
    if (!desc) return 0;
    if (arch == FLOWPIC_ARCH_FULL && res == 1500) {
        /* Keras "same" for k 10 stride 5: 2 zero rows/columns before, 3 after */
        desc[n++] = nn_desc(FLOWPIC_LAYER_CONV, 10, 10, 5, 2, 3, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_MAXPOOL, 0, 2, 2, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_CONV, 20, 10, 5, 2, 3, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_DROPOUT, 0, 0, 0, 0, 0, 0.25f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_MAXPOOL, 0, 2, 2, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_FLATTEN, 0, 0, 0, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 64, 0, 0, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_DROPOUT, 0, 0, 0, 0, 0, 0.5f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
    } else if (arch == FLOWPIC_ARCH_MINI && (res == 32 || res == 64)) {
        desc[n++] = nn_desc(FLOWPIC_LAYER_CONV, 6, 5, 1, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_MAXPOOL, 0, 2, 2, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_CONV, 16, 5, 1, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_DROPOUT, 0, 0, 0, 0, 0, 0.25f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_MAXPOOL, 0, 2, 2, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_FLATTEN, 0, 0, 0, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 120, 0, 0, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 84, 0, 0, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_DROPOUT, 0, 0, 0, 0, 0, 0.5f);
        desc[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
    }
    return n;
}

/* "conv" + 3 -> "conv3", without stdio */
static void nn_layer_name(char *dst, const char *prefix, int number)
{
    char digits[12];
    int nd = 0, i = 0;
    do { digits[nd++] = (char)('0' + number % 10); number /= 10; } while (number > 0);
    while (prefix[i] && i < FLOWPIC_NN_NAME_LEN - 1 - nd) { dst[i] = prefix[i]; i++; }
    while (nd > 0) dst[i++] = digits[--nd];
    dst[i] = '\0';
}

static uint64_t nn_hash_mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15u + (h << 6) + (h >> 2);
    h = (h ^ (h >> 31)) * 0xBF58476D1CE4E5B9u;
    return h;
}

/* Fills one layer's shapes from its description and input shape. */
static flowpic_result nn_layer_shape(flowpic_layer *L, const flowpic_layer_desc *d, int c, int h,
                                     int w, int is_last, int num_classes)
{
    uint64_t numel;
    L->kind = d->kind;
    L->in_c = c; L->in_h = h; L->in_w = w;
    L->in_numel = (size_t)c * (size_t)h * (size_t)w;
    L->kernel = d->kernel; L->stride = d->stride;
    L->pad_before = d->pad_before; L->pad_after = d->pad_after;
    L->dropout_p = d->dropout_p;
    switch (d->kind) {
    case FLOWPIC_LAYER_CONV: {
        int hp = h + d->pad_before + d->pad_after, wp = w + d->pad_before + d->pad_after;
        if (d->size < 1 || d->kernel < 1 || d->stride < 1 || d->pad_before < 0 || d->pad_after < 0
            || d->dropout_p != 0.0f)
            return FLOWPIC_ERR_ARG;
        if (d->size > FLOWPIC_NN_MAX_CHANNELS || d->kernel > FLOWPIC_NN_MAX_KERNEL
            || d->stride > FLOWPIC_NN_MAX_KERNEL || d->pad_before >= d->kernel
            || d->pad_after >= d->kernel)
            return FLOWPIC_ERR_LIMIT;
        if (hp < d->kernel || wp < d->kernel) return FLOWPIC_ERR_ARG;
        L->out_c = d->size;
        L->out_h = (hp - d->kernel) / d->stride + 1;
        L->out_w = (wp - d->kernel) / d->stride + 1;
        break;
    }
    case FLOWPIC_LAYER_MAXPOOL:
        if (d->size != 0 || d->kernel < 1 || d->stride < 1 || d->pad_before != 0
            || d->pad_after != 0 || d->dropout_p != 0.0f)
            return FLOWPIC_ERR_ARG;
        if (d->kernel > FLOWPIC_NN_MAX_KERNEL || d->stride > FLOWPIC_NN_MAX_KERNEL)
            return FLOWPIC_ERR_LIMIT;
        if (h < d->kernel || w < d->kernel) return FLOWPIC_ERR_ARG;
        L->out_c = c;
        L->out_h = (h - d->kernel) / d->stride + 1;
        L->out_w = (w - d->kernel) / d->stride + 1;
        break;
    case FLOWPIC_LAYER_RELU:
    case FLOWPIC_LAYER_FLATTEN:
    case FLOWPIC_LAYER_DROPOUT:
        if (d->size != 0 || d->kernel != 0 || d->stride != 0 || d->pad_before != 0
            || d->pad_after != 0)
            return FLOWPIC_ERR_ARG;
        if (d->kind == FLOWPIC_LAYER_DROPOUT) {
            if (!(d->dropout_p >= 0.0f && d->dropout_p < 1.0f)) return FLOWPIC_ERR_ARG;
        } else if (d->dropout_p != 0.0f) {
            return FLOWPIC_ERR_ARG;
        }
        if (d->kind == FLOWPIC_LAYER_FLATTEN) {
            L->out_c = (int)L->in_numel; L->out_h = 1; L->out_w = 1;   /* in_numel <= MAX_NUMEL */
        } else {
            L->out_c = c; L->out_h = h; L->out_w = w;
        }
        break;
    case FLOWPIC_LAYER_DENSE: {
        int units = d->size == 0 && is_last ? num_classes : d->size;
        if (units < 1 || d->kernel != 0 || d->stride != 0 || d->pad_before != 0
            || d->pad_after != 0 || d->dropout_p != 0.0f)
            return FLOWPIC_ERR_ARG;
        if (units > FLOWPIC_NN_MAX_CHANNELS) return FLOWPIC_ERR_LIMIT;
        L->out_c = units; L->out_h = 1; L->out_w = 1;
        break;
    }
    default:
        return FLOWPIC_ERR_ARG;
    }
    numel = (uint64_t)L->out_c * (uint64_t)L->out_h * (uint64_t)L->out_w;
    if (numel > (uint64_t)FLOWPIC_NN_MAX_NUMEL) return FLOWPIC_ERR_LIMIT;
    L->out_numel = (size_t)numel;
    if (is_last && (d->kind != FLOWPIC_LAYER_DENSE || L->out_c != num_classes))
        return FLOWPIC_ERR_ARG;
    if (d->kind == FLOWPIC_LAYER_CONV) {
        uint64_t nw = (uint64_t)L->out_c * (uint64_t)c * (uint64_t)d->kernel * (uint64_t)d->kernel;
        if (nw > (uint64_t)FLOWPIC_NN_MAX_PARAMS) return FLOWPIC_ERR_LIMIT;
        L->num_weights = (size_t)nw;
        L->num_biases = (size_t)L->out_c;
    } else if (d->kind == FLOWPIC_LAYER_DENSE) {
        uint64_t nw = (uint64_t)L->out_c * (uint64_t)L->in_numel;
        if (nw > (uint64_t)FLOWPIC_NN_MAX_PARAMS) return FLOWPIC_ERR_LIMIT;
        L->num_weights = (size_t)nw;
        L->num_biases = (size_t)L->out_c;
    }
    return FLOWPIC_OK;
}

/* Fills net's layer table, shapes and parameter offsets from a description; allocates
 * nothing (the model loader checks the parameter count against the file first). */
static flowpic_result nn_net_build(flowpic_net *net, const flowpic_layer_desc *desc, int num_desc,
                                   int in_c, int in_h, int in_w, int num_classes, int *bad_layer)
{
    int l, c = in_c, h = in_h, w = in_w;
    int counts[7] = {0, 0, 0, 0, 0, 0, 0};
    static const char *const prefix[7] = {"", "conv", "pool", "relu", "dropout", "flatten", "dense"};
    size_t total = 0, acts = 0;
    uint64_t id = 0x666C6F77706963u; /* "flowpic" */
    memset(net, 0, sizeof *net);
    if (!desc || num_desc < 1 || in_c < 1 || in_h < 1 || in_w < 1 || num_classes < 2)
        return FLOWPIC_ERR_ARG;
    if (num_desc > FLOWPIC_NN_MAX_LAYERS || in_c > FLOWPIC_NN_MAX_CHANNELS
        || in_h > FLOWPIC_NN_MAX_DIM || in_w > FLOWPIC_NN_MAX_DIM
        || num_classes > FLOWPIC_NN_MAX_CLASSES)
        return FLOWPIC_ERR_LIMIT;
    if ((uint64_t)in_c * (uint64_t)in_h * (uint64_t)in_w > (uint64_t)FLOWPIC_NN_MAX_NUMEL)
        return FLOWPIC_ERR_LIMIT;
    if (desc[0].kind == FLOWPIC_LAYER_FLATTEN) return FLOWPIC_ERR_ARG; /* would alias the input */
    id = nn_hash_mix(id, ((uint64_t)(unsigned)in_c << 32) | (uint64_t)(unsigned)in_h);
    id = nn_hash_mix(id, ((uint64_t)(unsigned)in_w << 32) | (uint64_t)(unsigned)num_classes);
    for (l = 0; l < num_desc; l++) {
        flowpic_layer *L = &net->layers[l];
        flowpic_result r = nn_layer_shape(L, &desc[l], c, h, w, l == num_desc - 1, num_classes);
        int k = (int)desc[l].kind;
        if (r != FLOWPIC_OK) {
            memset(net, 0, sizeof *net);
            if (bad_layer) *bad_layer = l;
            return r;
        }
        acts += L->kind == FLOWPIC_LAYER_FLATTEN ? 0 : L->out_numel;
        if (acts > (size_t)FLOWPIC_NN_MAX_ACTS) {
            memset(net, 0, sizeof *net);
            if (bad_layer) *bad_layer = l;
            return FLOWPIC_ERR_LIMIT;
        }
        counts[k]++;
        nn_layer_name(L->name, prefix[k], counts[k]);
        if (L->num_weights) {
            L->weight_offset = total;
            total += L->num_weights;
            L->bias_offset = total;
            total += L->num_biases;
            if (total > (size_t)FLOWPIC_NN_MAX_PARAMS) {
                memset(net, 0, sizeof *net);
                if (bad_layer) *bad_layer = l;
                return FLOWPIC_ERR_LIMIT;
            }
        }
        id = nn_hash_mix(id, (uint64_t)L->kind);
        id = nn_hash_mix(id, ((uint64_t)(unsigned)L->out_c << 32) | (uint64_t)(unsigned)L->out_h);
        id = nn_hash_mix(id, ((uint64_t)(unsigned)L->out_w << 32) | (uint64_t)(unsigned)L->kernel);
        id = nn_hash_mix(id, ((uint64_t)(unsigned)L->stride << 32)
                                 | ((uint64_t)(unsigned)L->pad_before << 16) | (uint64_t)(unsigned)L->pad_after);
        c = L->out_c; h = L->out_h; w = L->out_w;
    }
    net->arch = FLOWPIC_ARCH_CUSTOM;
    net->res = in_h;
    net->in_c = in_c; net->in_h = in_h; net->in_w = in_w;
    net->num_classes = num_classes;
    net->num_layers = num_desc;
    net->num_params = total;
    net->layout_id = nn_hash_mix(id, (uint64_t)total);
    return FLOWPIC_OK;
}

/* The one float block: params, grads, Adam m, Adam v, zeroed. */
static flowpic_result nn_net_alloc(flowpic_net *net)
{
    const size_t total = net->num_params;
    size_t nfloats, nbytes;
    float *block;
    if (!nn_mul_size(total, 4, &nfloats) || !nn_mul_size(nfloats, sizeof(float), &nbytes)) {
        memset(net, 0, sizeof *net);
        return FLOWPIC_ERR_LIMIT;
    }
    block = (float *)FLOWPIC_MALLOC(nbytes ? nbytes : 1);
    if (!block) { memset(net, 0, sizeof *net); return FLOWPIC_ERR_NOMEM; }
    memset(block, 0, nbytes);
    net->params = block;
    net->grads = block + total;
    net->adam_m = block + 2 * total;
    net->adam_v = block + 3 * total;
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_net_init_layers(flowpic_net *net, const flowpic_layer_desc *desc,
                                                   int num_desc, int in_c, int in_h, int in_w,
                                                   int num_classes)
{
    flowpic_result r;
    if (!net) return FLOWPIC_ERR_ARG;
    r = nn_net_build(net, desc, num_desc, in_c, in_h, in_w, num_classes, NULL);
    return r != FLOWPIC_OK ? r : nn_net_alloc(net);
}

FLOWPIC_DEF flowpic_result flowpic_net_init(flowpic_net *net, flowpic_arch arch, int res, int num_classes)
{
    flowpic_layer_desc desc[FLOWPIC_NN_MAX_LAYERS];
    flowpic_result r;
    int n;
    if (!net) return FLOWPIC_ERR_ARG;
    memset(net, 0, sizeof *net);
    n = flowpic_net_preset(arch, res, desc);
    if (n == 0) return FLOWPIC_ERR_ARG;
    r = flowpic_net_init_layers(net, desc, n, 1, res, res, num_classes);
    if (r == FLOWPIC_OK) net->arch = arch;
    return r;
}

FLOWPIC_DEF void flowpic_net_free(flowpic_net *net)
{
    if (!net) return;
    if (net->params) FLOWPIC_FREE(net->params);
    memset(net, 0, sizeof *net);
}

FLOWPIC_DEF void flowpic_net_zero_grad(flowpic_net *net)
{
    if (net && net->grads) memset(net->grads, 0, net->num_params * sizeof(float));
}

FLOWPIC_DEF void flowpic_net_init_glorot(flowpic_net *net, flowpic_rng *rng)
{
    int l;
    if (!net || !net->params || !rng) return;
    memset(net->params, 0, 4 * net->num_params * sizeof(float));
    net->adam_t = 0;
    for (l = 0; l < net->num_layers; l++) {
        const flowpic_layer *L = &net->layers[l];
        double fan_in, fan_out, limit;
        float *wp = net->params + L->weight_offset;
        size_t i;
        if (L->kind == FLOWPIC_LAYER_CONV) {
            double kk = (double)L->kernel * (double)L->kernel;
            fan_in = (double)L->in_c * kk;
            fan_out = (double)L->out_c * kk;
        } else if (L->kind == FLOWPIC_LAYER_DENSE) {
            fan_in = (double)L->in_numel;
            fan_out = (double)L->out_c;
        } else {
            continue;
        }
        limit = sqrt(6.0 / (fan_in + fan_out));
        for (i = 0; i < L->num_weights; i++)
            wp[i] = (float)((2.0 * flowpic_rng_uniform(rng) - 1.0) * limit);
    }
}

FLOWPIC_DEF int flowpic_net_find_layer(const flowpic_net *net, const char *name)
{
    int l;
    if (!net || !name) return -1;
    for (l = 0; l < net->num_layers; l++)
        if (strcmp(net->layers[l].name, name) == 0) return l;
    return -1;
}

/* ---------------------------------------------------------------- conv geometry */

typedef enum nn_conv_pass {
    NN_CONV_FORWARD = 0,
    NN_CONV_BACKWARD = 1,      /* weight gradient only: items are row blocks */
    NN_CONV_BACKWARD_DX = 2    /* weight and input gradient: items are whole samples */
} nn_conv_pass;

typedef struct nn_conv_geom {
    int ic, h, w, oc, k, s, pb, pa, oh, ow;
    int owv;        /* ow rounded up to NN_V: columns computed per output row */
    int pw;         /* width of one phase row: owv + (k-1)/s */
    int ocp;        /* oc rounded up to NN_OCT: channels in the transposed weights */
    int group;      /* output rows handled together (backward: amortises the lane sums) */
    int slots;      /* padded rows in the ring: k + (group-1)*s */
    int rows_item;  /* output rows per work item */
    int items;      /* work items per sample */
    int koff[FLOWPIC_NN_MAX_KERNEL]; /* kx -> offset in a deinterleaved row: (kx%s)*pw + kx/s */
} nn_conv_geom;

/* The blocked kernels read the padded input deinterleaved by stride phase: phase p of
 * padded row r holds padded columns p, p+s, p+2s..., so the input of output column ox at
 * kernel column kx = q*s + p is element ox + q of phase p: contiguous in ox, whatever the
 * stride. The phase-split rows of every in-channel live in a ring of `slots` padded rows
 * (row r in slot r % slots), each loaded once per work item: the working set is a few rows,
 * never a picture. */
static void nn_conv_geom_init(nn_conv_geom *g, const flowpic_layer *L, nn_conv_pass pass)
{
    int kx;
    g->ic = L->in_c; g->h = L->in_h; g->w = L->in_w;
    g->oc = L->out_c; g->oh = L->out_h; g->ow = L->out_w;
    g->k = L->kernel; g->s = L->stride; g->pb = L->pad_before; g->pa = L->pad_after;
    g->owv = nn_round_up_int(g->ow, NN_V);
    g->pw = g->owv + (g->k - 1) / g->s;
    g->ocp = nn_round_up_int(g->oc, NN_OCT);
    /* backward: about 128 columns per weight-gradient dot product before its lanes are summed */
    g->group = pass == NN_CONV_FORWARD ? 1 : nn_min_int(nn_min_int(8, (128 + g->owv - 1) / g->owv), g->oh);
    g->slots = nn_min_int(g->k + (g->group - 1) * g->s, g->h + g->pb + g->pa);  /* never more than all rows */
    g->rows_item = pass == NN_CONV_BACKWARD_DX ? g->oh : nn_min_int(NN_ROWS_PER_ITEM, g->oh);
    g->items = (g->oh + g->rows_item - 1) / g->rows_item;
    for (kx = 0; kx < g->k; kx++) g->koff[kx] = (kx % g->s) * g->pw + kx / g->s;
}

static size_t nn_conv_ring_len(const nn_conv_geom *g)
{
    return (size_t)g->ic * (size_t)g->slots * (size_t)g->s * (size_t)g->pw;
}

/* floats of per-thread scratch: the input ring; backward adds the zero-padded dout rows of a
 * row group and, with the input gradient, the gradient ring (in that order) */
static size_t nn_conv_scratch_len(const nn_conv_geom *g, nn_conv_pass pass)
{
    size_t ring = nn_round_up(nn_conv_ring_len(g), NN_ALIGN);
    size_t drow = nn_round_up((size_t)g->group * (size_t)g->ocp * (size_t)g->owv, NN_ALIGN);
    if (pass == NN_CONV_FORWARD) return ring;
    return ring + drow + (pass == NN_CONV_BACKWARD_DX ? ring : 0);
}

/* Samples per chunk of the conv backward pass: the partial weight gradients of a chunk stay
 * within FLOWPIC_NN_PARTIALS_BUDGET floats (at least one sample). Depends on the shapes only,
 * never on the thread count, so the summation order is fixed. */
static int nn_conv_chunk(const nn_conv_geom *g, size_t per_item, int batch)
{
    size_t per_sample = per_item * (size_t)g->items;
    size_t chunk = (size_t)FLOWPIC_NN_PARTIALS_BUDGET / (per_sample ? per_sample : 1);
    if (chunk < 1) chunk = 1;
    return chunk < (size_t)batch ? (int)chunk : batch;
}

/* ---------------------------------------------------------------- workspace */

static int nn_first_param_layer(const flowpic_net *net)
{
    int l;
    for (l = 0; l < net->num_layers; l++)
        if (net->layers[l].num_weights) return l;
    return net->num_layers;
}

FLOWPIC_DEF flowpic_result flowpic_workspace_init(flowpic_workspace *ws, const flowpic_net *net,
                                                  int max_batch, unsigned flags)
{
    size_t B, acts = 0, grad_buf = 0, grads_total = 0, masks = 0, wt = 0, partials = 0;
    size_t scratch = 0, probs, off, total_floats, nbytes, t;
    int l, first, nthreads = 1, train, dense_from;
    unsigned char *block;
    if (!ws) return FLOWPIC_ERR_ARG;
    memset(ws, 0, sizeof *ws);
    if (!net || !net->params || net->num_layers < 1 || max_batch < 1
        || (flags & ~(FLOWPIC_WS_TRAIN | FLOWPIC_WS_KEEP_GRADS | FLOWPIC_WS_SPARSE)) != 0)
        return FLOWPIC_ERR_ARG;
    if ((flags & FLOWPIC_WS_SPARSE) && !flowpic_net_sparse_ok(net)) return FLOWPIC_ERR_ARG;
    /* sparse only: layers before NN_SPARSE_OUT have no dense output, conv2 (NN_SPARSE_OUT) no
     * dense pass, and the layers after it work as usual */
    dense_from = (flags & FLOWPIC_WS_SPARSE) ? NN_SPARSE_OUT + 1 : 0;
    if (max_batch > FLOWPIC_NN_MAX_BATCH) return FLOWPIC_ERR_LIMIT;
    if (flags & FLOWPIC_WS_KEEP_GRADS) flags |= FLOWPIC_WS_TRAIN;
    train = (flags & FLOWPIC_WS_TRAIN) != 0;
#ifdef _OPENMP
    nthreads = nn_min_int(omp_get_max_threads(), FLOWPIC_NN_MAX_THREADS);
    if (nthreads < 1) nthreads = 1;
#endif
    B = (size_t)max_batch;
    first = nn_first_param_layer(net);
    /* every size below is at most (layers) x MAX_BATCH x MAX_NUMEL ~ 2^47 floats: checked
     * multiplications still, as SIZE_MAX may be 2^32 - 1 */
    for (l = 0; l < net->num_layers; l++) {
        const flowpic_layer *L = &net->layers[l];
        size_t n;
        if (L->kind == FLOWPIC_LAYER_FLATTEN) { ws->act_offset[l] = ws->act_offset[l - 1]; continue; }
        if (l < dense_from - 1) continue;   /* act_offset 0: never read (the accessors say NULL) */
        if (!nn_mul_size(L->out_numel, B, &n)) return FLOWPIC_ERR_LIMIT;
        ws->act_offset[l] = acts;
        if (!nn_add_size(acts, nn_round_up(n, NN_ALIGN), &acts)) return FLOWPIC_ERR_LIMIT;
        if (train && L->kind == FLOWPIC_LAYER_DROPOUT) {
            ws->mask_offset[l] = masks;
            if (!nn_add_size(masks, nn_round_up(n, 64), &masks)) return FLOWPIC_ERR_LIMIT;
        }
        if (train && l > first && l >= dense_from) {
            if (!nn_mul_size(L->in_numel, B, &t)) return FLOWPIC_ERR_LIMIT;
            if (t > grad_buf) grad_buf = t;
        }
        if (L->kind == FLOWPIC_LAYER_CONV && l >= dense_from) {
            const nn_conv_pass bpass = l > first ? NN_CONV_BACKWARD_DX : NN_CONV_BACKWARD;
            nn_conv_geom g;
            nn_conv_geom_init(&g, L, NN_CONV_FORWARD);
            t = (size_t)g.ic * (size_t)g.k * (size_t)g.k * (size_t)g.ocp;
            if (t > wt) wt = t;
            t = nn_conv_scratch_len(&g, NN_CONV_FORWARD);
            if (t > scratch) scratch = t;
            if (train) {
                const size_t per_item = L->num_weights + L->num_biases;
                nn_conv_geom_init(&g, L, bpass);
                t = nn_conv_scratch_len(&g, bpass);
                if (t > scratch) scratch = t;
                if (!nn_mul_size(per_item, (size_t)g.items, &t)
                    || !nn_mul_size(t, (size_t)nn_conv_chunk(&g, per_item, max_batch), &t))
                    return FLOWPIC_ERR_LIMIT;
                if (t > partials) partials = t;
            }
        }
    }
    if (train) {
        if (flags & FLOWPIC_WS_KEEP_GRADS) grads_total = acts;
        else grads_total = 2 * nn_round_up(grad_buf, NN_ALIGN);
    }
    probs = nn_round_up(B * (size_t)net->num_classes, NN_ALIGN);
    if (!nn_mul_size(scratch, (size_t)nthreads, &t)) return FLOWPIC_ERR_LIMIT;
    total_floats = 0;
    if (!nn_add_size(total_floats, acts, &total_floats)
        || !nn_add_size(total_floats, grads_total, &total_floats)
        || !nn_add_size(total_floats, 2 * probs, &total_floats)
        || !nn_add_size(total_floats, nn_round_up(wt, NN_ALIGN), &total_floats)
        || !nn_add_size(total_floats, nn_round_up(partials, NN_ALIGN), &total_floats)
        || !nn_add_size(total_floats, t, &total_floats)
        || !nn_mul_size(total_floats, sizeof(float), &nbytes)
        || !nn_add_size(nbytes, masks, &nbytes)
        || !nn_add_size(nbytes, 64, &nbytes))
        return FLOWPIC_ERR_LIMIT;
    block = (unsigned char *)FLOWPIC_MALLOC(nbytes);
    if (!block) return FLOWPIC_ERR_NOMEM;
    ws->block = block;
    {
        float *f = (float *)(void *)block;
        off = 0;
        ws->acts = f + off; off += acts;
        ws->grad_acts = train ? f + off : NULL; off += grads_total;
        ws->grad_buf_len = nn_round_up(grad_buf, NN_ALIGN);
        ws->probs = f + off; off += probs;
        ws->dlogits = f + off; off += probs;
        ws->wt = f + off; off += nn_round_up(wt, NN_ALIGN);
        ws->partials = train ? f + off : NULL; off += nn_round_up(partials, NN_ALIGN);
        ws->scratch = f + off; off += t;
        ws->scratch_len = scratch;
        ws->masks = train ? block + off * sizeof(float) : NULL;
        /* every read of these is preceded by a write, but keep the memory defined anyway
         * (the blocked kernels read tile columns past a row's end) */
        memset(block, 0, nbytes);
    }
    for (l = 0; l < net->num_layers; l++) ws->layer_kind[l] = (uint8_t)net->layers[l].kind;
    ws->layout_id = net->layout_id;
    ws->max_batch = max_batch;
    ws->flags = flags;
    ws->num_layers = net->num_layers;
    ws->num_classes = net->num_classes;
    ws->num_threads = nthreads;
    ws->conv_algo = FLOWPIC_CONV_BLOCKED;
    return FLOWPIC_OK;
}

static void nn_sparse_free(struct flowpic__sparse *sp);

FLOWPIC_DEF void flowpic_workspace_free(flowpic_workspace *ws)
{
    if (!ws) return;
    if (ws->block) FLOWPIC_FREE(ws->block);
    nn_sparse_free(ws->sparse);
    memset(ws, 0, sizeof *ws);
}

FLOWPIC_DEF void flowpic_workspace_set_conv_algo(flowpic_workspace *ws, flowpic_conv_algo algo)
{
    if (ws && (algo == FLOWPIC_CONV_BLOCKED || algo == FLOWPIC_CONV_NAIVE)) ws->conv_algo = algo;
}

/* 1 when layer's output is not kept by a FLOWPIC_WS_SPARSE workspace */
static int nn_ws_no_output(const flowpic_workspace *ws, int layer)
{
    return (ws->flags & FLOWPIC_WS_SPARSE) && layer < NN_SPARSE_OUT;
}

FLOWPIC_DEF const float *flowpic_workspace_output(const flowpic_workspace *ws, int layer)
{
    if (!ws || !ws->acts || layer < 0 || layer >= ws->num_layers || nn_ws_no_output(ws, layer)) return NULL;
    return ws->acts + ws->act_offset[layer];
}

FLOWPIC_DEF const float *flowpic_workspace_output_grad(const flowpic_workspace *ws, int layer)
{
    if (!ws || !ws->acts || layer < 0 || layer >= ws->num_layers) return NULL;
    if (layer == ws->num_layers - 1) return ws->dlogits;
    if (!(ws->flags & FLOWPIC_WS_KEEP_GRADS) || nn_ws_no_output(ws, layer)) return NULL;
    return ws->grad_acts + ws->act_offset[layer];
}

FLOWPIC_DEF uint8_t *flowpic_workspace_mask(flowpic_workspace *ws, int layer)
{
    if (!ws || !ws->masks || layer < 0 || layer >= ws->num_layers
        || ws->layer_kind[layer] != (uint8_t)FLOWPIC_LAYER_DROPOUT)
        return NULL;
    return ws->masks + ws->mask_offset[layer];
}

FLOWPIC_DEF const float *flowpic_workspace_probs(const flowpic_workspace *ws)
{
    return ws ? ws->probs : NULL;
}

FLOWPIC_DEF const float *flowpic_workspace_dlogits(const flowpic_workspace *ws)
{
    return ws ? ws->dlogits : NULL;
}

/* ---------------------------------------------------------------- conv: naive reference */

/* y[n][oc][oy][ox] = b[oc] + sum over (ic, ky, kx) in that order of w * padded x.
 * Single-threaded; the yardstick for the blocked version. */
static void nn_conv_forward_naive(const flowpic_layer *L, const float *w, const float *b,
                                  const float *x, float *y, int batch)
{
    const int IC = L->in_c, H = L->in_h, W = L->in_w, OC = L->out_c, OH = L->out_h;
    const int OW = L->out_w, K = L->kernel, S = L->stride, P = L->pad_before;
    int n, oc, oy, ox, ic, ky, kx;
    for (n = 0; n < batch; n++) {
        const float *xn = x + (size_t)n * L->in_numel;
        float *yn = y + (size_t)n * L->out_numel;
        for (oc = 0; oc < OC; oc++)
            for (oy = 0; oy < OH; oy++)
                for (ox = 0; ox < OW; ox++) {
                    float acc = 0.0f;
                    for (ic = 0; ic < IC; ic++)
                        for (ky = 0; ky < K; ky++) {
                            int iy = oy * S + ky - P;
                            if (iy < 0 || iy >= H) continue;
                            for (kx = 0; kx < K; kx++) {
                                int ix = ox * S + kx - P;
                                if (ix < 0 || ix >= W) continue;
                                acc += w[((oc * IC + ic) * K + ky) * K + kx] * xn[(ic * H + iy) * W + ix];
                            }
                        }
                    yn[(oc * OH + oy) * OW + ox] = acc + b[oc];
                }
    }
}

/* dw += sum over (n, oy, ox) of dy * x; db += sum of dy; dx (if not NULL) = sum of w * dy. */
static void nn_conv_backward_naive(const flowpic_layer *L, const float *w, float *dw, float *db,
                                   const float *x, const float *dy, float *dx, int batch)
{
    const int IC = L->in_c, H = L->in_h, W = L->in_w, OC = L->out_c, OH = L->out_h;
    const int OW = L->out_w, K = L->kernel, S = L->stride, P = L->pad_before;
    int n, oc, oy, ox, ic, ky, kx;
    for (oc = 0; oc < OC; oc++) {
        float s = 0.0f;
        for (n = 0; n < batch; n++)
            for (oy = 0; oy < OH; oy++)
                for (ox = 0; ox < OW; ox++)
                    s += dy[(size_t)n * L->out_numel + (size_t)((oc * OH + oy) * OW + ox)];
        db[oc] += s;
    }
    for (oc = 0; oc < OC; oc++)
        for (ic = 0; ic < IC; ic++)
            for (ky = 0; ky < K; ky++)
                for (kx = 0; kx < K; kx++) {
                    float s = 0.0f;
                    for (n = 0; n < batch; n++) {
                        const float *xn = x + (size_t)n * L->in_numel;
                        const float *dyn = dy + (size_t)n * L->out_numel;
                        for (oy = 0; oy < OH; oy++) {
                            int iy = oy * S + ky - P;
                            if (iy < 0 || iy >= H) continue;
                            for (ox = 0; ox < OW; ox++) {
                                int ix = ox * S + kx - P;
                                if (ix < 0 || ix >= W) continue;
                                s += dyn[(oc * OH + oy) * OW + ox] * xn[(ic * H + iy) * W + ix];
                            }
                        }
                    }
                    dw[((oc * IC + ic) * K + ky) * K + kx] += s;
                }
    if (!dx) return;
    memset(dx, 0, (size_t)batch * L->in_numel * sizeof(float));
    for (n = 0; n < batch; n++) {
        float *dxn = dx + (size_t)n * L->in_numel;
        const float *dyn = dy + (size_t)n * L->out_numel;
        for (oc = 0; oc < OC; oc++)
            for (oy = 0; oy < OH; oy++)
                for (ox = 0; ox < OW; ox++) {
                    float g = dyn[(oc * OH + oy) * OW + ox];
                    for (ic = 0; ic < IC; ic++)
                        for (ky = 0; ky < K; ky++) {
                            int iy = oy * S + ky - P;
                            if (iy < 0 || iy >= H) continue;
                            for (kx = 0; kx < K; kx++) {
                                int ix = ox * S + kx - P;
                                if (ix < 0 || ix >= W) continue;
                                dxn[(ic * H + iy) * W + ix] += w[((oc * IC + ic) * K + ky) * K + kx] * g;
                            }
                        }
                }
    }
}

/* ---------------------------------------------------------------- conv: blocked */

/* Loads padded row r of every input channel, phase-split, into its ring slot. Returns 1 (and
 * loads nothing) when the row is zero in every channel: its products are exact zeros, which
 * the kernels then skip, bit-identically (x + 0 = x). FlowPics are mostly empty rows (packet
 * sizes that never occur), so this skips most of the first convolution's work. */
static int nn_ring_load(const nn_conv_geom *g, float *ring, const float *x, int r)
{
    const size_t rowlen = (size_t)g->s * (size_t)g->pw;
    const int y = r - g->pb, slot = r % g->slots;
    int ic, p, j, nonzero = 0;
    if (y < 0 || y >= g->h) return 1;   /* padding row: the ring slot is never read */
    for (ic = 0; ic < g->ic && !nonzero; ic++) {
        const float *src = x + ((size_t)ic * (size_t)g->h + (size_t)y) * (size_t)g->w;
        for (j = 0; j < g->w; j++) nonzero |= src[j] != 0.0f;
    }
    if (!nonzero) return 1;
    for (ic = 0; ic < g->ic; ic++) {
        float *dst = ring + ((size_t)ic * (size_t)g->slots + (size_t)slot) * rowlen;
        const float *src = x + ((size_t)ic * (size_t)g->h + (size_t)y) * (size_t)g->w;
        for (p = 0; p < g->s; p++) {
            /* phase element j is input column j*s + p - pb: inside the row for j in [lo, hi) */
            float *d = dst + (size_t)p * (size_t)g->pw;
            const int lo = nn_min_int(g->pb > p ? (g->pb - p + g->s - 1) / g->s : 0, g->pw);
            const int hi = nn_min_int((g->w + g->pb - p + g->s - 1) / g->s, g->pw);
            for (j = 0; j < lo; j++) d[j] = 0.0f;
            for (; j < hi; j++) d[j] = src[j * g->s + p - g->pb];
            for (; j < g->pw; j++) d[j] = 0.0f;
        }
    }
    return 0;
}

/* Writes the accumulated input gradient of padded row r (held in the gradient ring) to dx. */
static void nn_ring_flush(const nn_conv_geom *g, const float *dring, int r, float *dx)
{
    const size_t rowlen = (size_t)g->s * (size_t)g->pw;
    const int y = r - g->pb, slot = r % g->slots;
    int ic, xx;
    if (y < 0 || y >= g->h) return;
    for (ic = 0; ic < g->ic; ic++) {
        const float *src = dring + ((size_t)ic * (size_t)g->slots + (size_t)slot) * rowlen;
        float *d = dx + ((size_t)ic * (size_t)g->h + (size_t)y) * (size_t)g->w;
        for (xx = 0; xx < g->w; xx++) {
            int c = xx + g->pb, j = c / g->s;
            /* columns past the last window (j >= pw) get no gradient */
            d[xx] = j < g->pw ? src[(c % g->s) * g->pw + j] : 0.0f;
        }
    }
}

/* Makes padded rows [r_first, r_last] resident in the ring (slot_row[] says what each slot
 * holds, slot_zero[] whether it is all zero). With a gradient ring, an evicted row is
 * finished: it is flushed to dx, and the slot's gradient row is cleared for the new row. */
static void nn_ring_ensure(const nn_conv_geom *g, float *ring, float *dring, int *slot_row,
                           unsigned char *slot_zero, const float *x, float *dx, int r_first, int r_last)
{
    const size_t rowlen = (size_t)g->s * (size_t)g->pw;
    int r, ic;
    for (r = r_first; r <= r_last; r++) {
        const int slot = r % g->slots;
        if (slot_row[slot] == r) continue;
        if (dx && slot_row[slot] >= 0) nn_ring_flush(g, dring, slot_row[slot], dx);
        slot_zero[slot] = (unsigned char)nn_ring_load(g, ring, x, r);
        if (dx)
            for (ic = 0; ic < g->ic; ic++)
                memset(dring + ((size_t)ic * (size_t)g->slots + (size_t)slot) * rowlen, 0, rowlen * sizeof(float));
        slot_row[slot] = r;
    }
}

/* wt[ic][ky][kx][ocp] = w[oc][ic][ky][kx], zero for the padding channels oc >= OC */
static void nn_conv_transpose_weights(const nn_conv_geom *g, const float *w, float *wt)
{
    const int kk = g->k * g->k;
    int oc, ic, t;
    for (ic = 0; ic < g->ic; ic++)
        for (t = 0; t < kk; t++) {
            float *dst = wt + ((size_t)ic * (size_t)kk + (size_t)t) * (size_t)g->ocp;
            for (oc = 0; oc < g->ocp; oc++)
                dst[oc] = oc < g->oc ? w[((size_t)oc * (size_t)g->ic + (size_t)ic) * (size_t)kk + (size_t)t] : 0.0f;
        }
}

static const float *nn_pick5(const float *a0, const float *a1, const float *a2, const float *a3,
                             const float *a4, int o)
{
    return o == 0 ? a0 : o == 1 ? a1 : o == 2 ? a2 : o == 3 ? a3 : a4;
}

/* Output rows [oy0, oy1) of one sample. Each output is the sum over (ic, ky, kx) in that
 * order plus the bias, as in the naive version (products with padding are exact zeros);
 * a register tile of NN_OCT channels x NN_V columns is accumulated over the whole sum. */
static void nn_conv_forward_rows(const nn_conv_geom *g, const float *wt, const float *bias,
                                 const float *x, float *y, int oy0, int oy1, float *ring)
{
    const size_t rowlen = (size_t)g->s * (size_t)g->pw;
    int slot_row[FLOWPIC_NN_MAX_KERNEL];
    unsigned char slot_zero[FLOWPIC_NN_MAX_KERNEL];
    int oy, ky, kx, ic, oc0, ox0, o, v, i;
    for (i = 0; i < g->slots; i++) slot_row[i] = -1;
    for (oy = oy0; oy < oy1; oy++) {
        const int r0 = oy * g->s;
        nn_ring_ensure(g, ring, NULL, slot_row, slot_zero, x, NULL, r0, r0 + g->k - 1);
        for (oc0 = 0; oc0 < g->oc; oc0 += NN_OCT) {
            const int noc = nn_min_int(NN_OCT, g->oc - oc0);
            for (ox0 = 0; ox0 < g->ow; ox0 += NN_V) {
                const int nv = nn_min_int(NN_V, g->ow - ox0);
                float a0[NN_V], a1[NN_V], a2[NN_V], a3[NN_V], a4[NN_V];
                for (v = 0; v < NN_V; v++) { a0[v] = 0.0f; a1[v] = 0.0f; a2[v] = 0.0f; a3[v] = 0.0f; a4[v] = 0.0f; }
                for (ic = 0; ic < g->ic; ic++)
                    for (ky = 0; ky < g->k; ky++) {
                        const float *row = ring + ((size_t)ic * (size_t)g->slots + (size_t)((r0 + ky) % g->slots)) * rowlen
                                           + (size_t)ox0;
                        const float *wk = wt + (size_t)((ic * g->k + ky) * g->k) * (size_t)g->ocp + (size_t)oc0;
                        if (slot_zero[(r0 + ky) % g->slots]) continue;
                        for (kx = 0; kx < g->k; kx++) {
                            const float *FLOWPIC_RESTRICT src = row + g->koff[kx];
                            const float *w = wk + (size_t)kx * (size_t)g->ocp;
                            const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4];
                            NN_LANES
                            for (v = 0; v < NN_V; v++) {
                                const float sv = src[v];
                                a0[v] += w0 * sv; a1[v] += w1 * sv; a2[v] += w2 * sv; a3[v] += w3 * sv; a4[v] += w4 * sv;
                            }
                        }
                    }
                for (o = 0; o < noc; o++) {
                    const float *a = nn_pick5(a0, a1, a2, a3, a4, o);
                    float *yo = y + ((size_t)(oc0 + o) * (size_t)g->oh + (size_t)oy) * (size_t)g->ow + (size_t)ox0;
                    const float bo = bias[oc0 + o];
                    for (v = 0; v < nv; v++) yo[v] = a[v] + bo;
                }
            }
        }
    }
}

static void nn_conv_forward_blocked(const flowpic_layer *L, flowpic_workspace *ws, const float *w,
                                    const float *b, const float *x, float *y, int batch)
{
    nn_conv_geom g;
    const int nt = nn_threads(ws);
    int items;
    nn_conv_geom_init(&g, L, NN_CONV_FORWARD);
    nn_conv_transpose_weights(&g, w, ws->wt);
    items = batch * g.items;
    (void)nt;
    NN_OMP(parallel for num_threads(nt) schedule(dynamic, 1))
    for (int it = 0; it < items; it++) {
        const int n = it / g.items, oy0 = (it % g.items) * g.rows_item;
        float *ring = ws->scratch + (size_t)nn_thread_id() * ws->scratch_len;
        nn_conv_forward_rows(&g, ws->wt, b, x + (size_t)n * L->in_numel, y + (size_t)n * L->out_numel,
                             oy0, nn_min_int(oy0 + g.rows_item, g.oh), ring);
    }
}

/* Backward of output rows [oy0, oy1) of one sample, g->group rows at a time: the partial
 * weight and bias gradients of these rows into dwp[num_weights + oc] (overwritten), and,
 * when dx is not NULL (the item then covers the whole sample), the input gradient of the
 * sample (overwritten). */
static void nn_conv_backward_rows(const nn_conv_geom *g, const float *wt, const float *x,
                                  const float *dy, float *dx, float *dwp, int oy0, int oy1,
                                  float *scratch)
{
    const size_t rowlen = (size_t)g->s * (size_t)g->pw;
    const size_t ring_len = nn_round_up(nn_conv_ring_len(g), NN_ALIGN);
    const size_t owv = (size_t)g->owv, ocp = (size_t)g->ocp, kk = (size_t)(g->k * g->k);
    const size_t nw = (size_t)g->oc * (size_t)g->ic * kk;
    const size_t drow_len = ocp * owv;   /* one output row of dout, all channels */
    float *ring = scratch, *drow = scratch + ring_len;
    float *dring = drow + nn_round_up((size_t)g->group * drow_len, NN_ALIGN);
    float *dbp = dwp + nw;
    int slot_row[FLOWPIC_NN_MAX_KERNEL * 8];
    unsigned char slot_zero[FLOWPIC_NN_MAX_KERNEL * 8];
    int oy, ky, kx, ic, oc, oc0, ox0, o, v, i, t;
    for (i = 0; i < g->slots; i++) slot_row[i] = -1;
    memset(dwp, 0, (nw + (size_t)g->oc) * sizeof(float));
    /* tail columns and padding channels stay 0 */
    memset(drow, 0, (size_t)g->group * drow_len * sizeof(float));
    if (dx) memset(dx, 0, (size_t)g->ic * (size_t)g->h * (size_t)g->w * sizeof(float));
    for (oy = oy0; oy < oy1; oy += g->group) {
        const int nrows = nn_min_int(g->group, oy1 - oy);
        nn_ring_ensure(g, ring, dring, slot_row, slot_zero, x, dx, oy * g->s, (oy + nrows - 1) * g->s + g->k - 1);
        for (t = 0; t < nrows; t++)
            for (oc = 0; oc < g->oc; oc++) {
                const float *src = dy + ((size_t)oc * (size_t)g->oh + (size_t)(oy + t)) * (size_t)g->ow;
                float *dst = drow + (size_t)t * drow_len + (size_t)oc * owv, sum = 0.0f;
                for (ox0 = 0; ox0 < g->ow; ox0++) {
                    dst[ox0] = src[ox0];
                    sum += src[ox0];
                }
                dbp[oc] += sum;
            }
        /* weight gradient: NN_OCT dot products over the group's rows at a time, NN_V partial
         * sums each, summed in a fixed order at the end */
        for (ic = 0; ic < g->ic; ic++)
            for (ky = 0; ky < g->k; ky++) {
                int live = 0;   /* any non-zero input row for this ky in the group? */
                for (t = 0; t < nrows; t++) live |= !slot_zero[((oy + t) * g->s + ky) % g->slots];
                if (!live) continue;
                for (kx = 0; kx < g->k; kx++)
                    for (oc0 = 0; oc0 < g->oc; oc0 += NN_OCT) {
                        const int noc = nn_min_int(NN_OCT, g->oc - oc0);
                        float a0[NN_V], a1[NN_V], a2[NN_V], a3[NN_V], a4[NN_V];
                        float *dwo = dwp + (size_t)oc0 * (size_t)g->ic * kk + (size_t)ic * kk + (size_t)(ky * g->k + kx);
                        for (v = 0; v < NN_V; v++) { a0[v] = 0.0f; a1[v] = 0.0f; a2[v] = 0.0f; a3[v] = 0.0f; a4[v] = 0.0f; }
                        for (t = 0; t < nrows; t++) {
                            const int r = (oy + t) * g->s + ky;
                            const float *src = ring + ((size_t)ic * (size_t)g->slots + (size_t)(r % g->slots)) * rowlen
                                               + g->koff[kx];
                            const float *d0 = drow + (size_t)t * drow_len + (size_t)oc0 * owv, *d1 = d0 + owv;
                            const float *d2 = d1 + owv, *d3 = d2 + owv, *d4 = d3 + owv;
                            if (slot_zero[r % g->slots]) continue;
                            for (ox0 = 0; ox0 < g->owv; ox0 += NN_V) {
                                const float *FLOWPIC_RESTRICT sp = src + ox0;
                                NN_LANES
                                for (v = 0; v < NN_V; v++) {
                                    const float sv = sp[v];
                                    a0[v] += d0[ox0 + v] * sv; a1[v] += d1[ox0 + v] * sv; a2[v] += d2[ox0 + v] * sv;
                                    a3[v] += d3[ox0 + v] * sv; a4[v] += d4[ox0 + v] * sv;
                                }
                            }
                        }
                        for (o = 0; o < noc; o++)
                            dwo[(size_t)o * (size_t)g->ic * kk] += nn_lane_sum(nn_pick5(a0, a1, a2, a3, a4, o));
                    }
            }
        if (!dx) continue;
        /* input gradient, scattered into the phase-split gradient ring */
        for (t = 0; t < nrows; t++)
            for (ic = 0; ic < g->ic; ic++)
                for (ky = 0; ky < g->k; ky++) {
                    const int r = (oy + t) * g->s + ky;
                    float *drw = dring + ((size_t)ic * (size_t)g->slots + (size_t)(r % g->slots)) * rowlen;
                    const float *dr0 = drow + (size_t)t * drow_len;
                    for (kx = 0; kx < g->k; kx++) {
                        float *dst = drw + g->koff[kx];
                        const float *wcol = wt + (size_t)((ic * g->k + ky) * g->k + kx) * ocp;
                        for (ox0 = 0; ox0 < g->owv; ox0 += NN_V) {
                            float a[NN_V];
                            for (v = 0; v < NN_V; v++) a[v] = 0.0f;
                            for (oc = 0; oc < g->oc; oc++) {
                                const float wo = wcol[oc];
                                const float *FLOWPIC_RESTRICT dr = dr0 + (size_t)oc * owv + (size_t)ox0;
                                NN_LANES
                                for (v = 0; v < NN_V; v++) a[v] += wo * dr[v];
                            }
                            NN_LANES
                            for (v = 0; v < NN_V; v++) dst[ox0 + v] += a[v];
                        }
                    }
                }
    }
    if (dx)
        for (i = 0; i < g->slots; i++)
            if (slot_row[i] >= 0) nn_ring_flush(g, dring, slot_row[i], dx);
}

static void nn_conv_backward_blocked(const flowpic_layer *L, flowpic_workspace *ws, const float *w,
                                     float *dw, float *db, const float *x, const float *dy,
                                     float *dx, int batch)
{
    nn_conv_geom g;
    const int nt = nn_threads(ws);
    const size_t per_item = L->num_weights + L->num_biases;
    int chunk, n0;
    /* with an input gradient an item is a whole sample (its rows share input rows) */
    nn_conv_geom_init(&g, L, dx ? NN_CONV_BACKWARD_DX : NN_CONV_BACKWARD);
    nn_conv_transpose_weights(&g, w, ws->wt);
    chunk = nn_conv_chunk(&g, per_item, batch);
    (void)nt;
    for (n0 = 0; n0 < batch; n0 += chunk) {
        const int items = nn_min_int(chunk, batch - n0) * g.items;
        NN_OMP(parallel for num_threads(nt) schedule(dynamic, 1))
        for (int it = 0; it < items; it++) {
            const int n = n0 + it / g.items, oy0 = (it % g.items) * g.rows_item;
            float *scratch = ws->scratch + (size_t)nn_thread_id() * ws->scratch_len;
            nn_conv_backward_rows(&g, ws->wt, x + (size_t)n * L->in_numel, dy + (size_t)n * L->out_numel,
                                  dx ? dx + (size_t)n * L->in_numel : NULL, ws->partials + (size_t)it * per_item,
                                  oy0, nn_min_int(oy0 + g.rows_item, g.oh), scratch);
        }
        /* partials summed in item order (sample, then row block): independent of the threads */
        NN_OMP(parallel for num_threads(nt) schedule(static))
        for (long long i = 0; i < (long long)per_item; i++) {
            float s = 0.0f;
            for (int it = 0; it < items; it++) s += ws->partials[(size_t)it * per_item + (size_t)i];
            if ((size_t)i < L->num_weights) dw[i] += s;
            else db[(size_t)i - L->num_weights] += s;
        }
    }
}

/* ---------------------------------------------------------------- pool, relu, dropout */

/* The first maximal element, in row-major order, of the K x K window at xp[start] of a plane W
 * wide (the running max is replaced only by a strictly greater value, as PyTorch does). */
static int nn_pool_argmax(const float *xp, int W, int K, int start)
{
    int best = start;
    for (int ky = 0; ky < K; ky++)
        for (int kx = 0; kx < K; kx++)
            if (xp[start + ky * W + kx] > xp[best]) best = start + ky * W + kx;
    return best;
}

static void nn_maxpool_forward(const flowpic_layer *L, const float *x, float *y, int batch, int nt)
{
    const int H = L->in_h, W = L->in_w, OH = L->out_h, OW = L->out_w, K = L->kernel, S = L->stride;
    const int planes = batch * L->in_c;
    const long long work = (long long)planes * H * W;
    (void)nt;
    (void)work;
    NN_OMP(parallel for num_threads(nt) schedule(static) if(work >= NN_PAR_MIN))
    for (int pl = 0; pl < planes; pl++) {
        const float *xp = x + (size_t)pl * (size_t)H * (size_t)W;
        float *yp = y + (size_t)pl * (size_t)OH * (size_t)OW;
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) yp[oy * OW + ox] = xp[nn_pool_argmax(xp, W, K, oy * S * W + ox * S)];
    }
}

/* The gradient of each window goes to its first maximal element (nn_pool_argmax). */
static void nn_maxpool_backward(const flowpic_layer *L, const float *x, const float *dy, float *dx,
                                int batch, int nt)
{
    const int H = L->in_h, W = L->in_w, OH = L->out_h, OW = L->out_w, K = L->kernel, S = L->stride;
    const int planes = batch * L->in_c;
    const long long work = (long long)planes * H * W;
    (void)nt;
    (void)work;
    NN_OMP(parallel for num_threads(nt) schedule(static) if(work >= NN_PAR_MIN))
    for (int pl = 0; pl < planes; pl++) {
        const float *xp = x + (size_t)pl * (size_t)H * (size_t)W;
        const float *dyp = dy + (size_t)pl * (size_t)OH * (size_t)OW;
        float *dxp = dx + (size_t)pl * (size_t)H * (size_t)W;
        memset(dxp, 0, (size_t)H * (size_t)W * sizeof(float));
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) dxp[nn_pool_argmax(xp, W, K, oy * S * W + ox * S)] += dyp[oy * OW + ox];
    }
}

/* dst = key > 0 ? src : 0, in chunks of NN_RELU_CHUNK: a loop of constant width vectorises at
 * -O2 (a compare and a mask; 0 also for NaN and -0), one element at a time it does not.
 * ReLU forward: key = src = x; backward (ReLU'(0) = 0: the gradient passes where the output,
 * = the pre-activation, is > 0): key = y, src = dy. */
#define NN_RELU_CHUNK 64

static void nn_relu_select(const float *FLOWPIC_RESTRICT key, const float *FLOWPIC_RESTRICT src,
                           float *FLOWPIC_RESTRICT dst, size_t n, int nt)
{
    const long long chunks = (long long)((n + NN_RELU_CHUNK - 1) / NN_RELU_CHUNK);
    (void)nt;
    NN_OMP(parallel for num_threads(nt) schedule(static) if(chunks * NN_RELU_CHUNK >= NN_PAR_MIN))
    for (long long c = 0; c < chunks; c++) {
        size_t i = (size_t)c * NN_RELU_CHUNK, v;
        if (n - i >= NN_RELU_CHUNK)
            for (v = 0; v < NN_RELU_CHUNK; v++) { /* both loaded first: a select, not a branch */
                const float k = key[i + v], x = src[i + v];
                dst[i + v] = k > 0.0f ? x : 0.0f;
            }
        else
            for (; i < n; i++) dst[i] = key[i] > 0.0f ? src[i] : 0.0f;
    }
}

static float nn_dropout_scale(float p) { return (float)(1.0 / (1.0 - (double)p)); }

/* y = x * scale where mask, else 0 (also the backward pass, with x = dy) */
static void nn_dropout_apply(const float *x, const uint8_t *mask, float scale, float *y, size_t n, int nt)
{
    const long long count = (long long)n;
    (void)nt;
    const long long chunks = count / 16;
    (void)chunks;
    /* constant-width chunks: vectorised at -O2 as selects (random masks defeat branches) */
    NN_OMP(parallel for num_threads(nt) schedule(static) if(count >= NN_PAR_MIN))
    for (long long k = 0; k < chunks; k++)
        for (int v = 0; v < 16; v++) {
            /* y = mask ? x * scale : +0 as bits: x * scale AND all-ones or zero */
            const long long i = k * 16 + v;
            const float kept = x[i] * scale;
            uint32_t bits;
            memcpy(&bits, &kept, sizeof bits);
            bits &= 0u - (uint32_t)(mask[i] != 0);
            memcpy(&y[i], &bits, sizeof bits);
        }
    for (long long i = chunks * 16; i < count; i++) y[i] = mask[i] ? x[i] * scale : 0.0f;
}

/* mask[i] = (flowpic_rng_uniform(rng) >= p) for i < n, in integers: uniform() is (next >> 11)
 * * 2^-53 and p * 2^53 is exact, so the test is (next >> 11) >= ceil(p * 2^53): the same
 * masks, without the conversions. */
static void nn_dropout_masks(uint8_t *mask, size_t n, double p, flowpic_rng *rng)
{
    const double scaled = ceil(p * 9007199254740992.0);
    const uint64_t threshold = (uint64_t)scaled;
    size_t i;
    for (i = 0; i < n; i++) mask[i] = (uint8_t)((flowpic_rng_next(rng) >> 11) >= threshold);
}

/* ---------------------------------------------------------------- dense */

/* y[n][o] = W[o] . x[n] + b[o] */
static void nn_dense_forward(const flowpic_layer *L, const float *w, const float *b, const float *x,
                             float *y, int batch, int nt)
{
    const int in = (int)L->in_numel, out = L->out_c, items = (batch + 3) / 4 * out;
    const long long work = (long long)batch * out * in;
    (void)nt;
    (void)work;
    /* four samples at a time share each weight row's loads (nn_dot4: the same sums) */
    NN_OMP(parallel for num_threads(nt) schedule(static) if(work >= NN_PAR_MIN))
    for (int it = 0; it < items; it++) {
        const int n0 = it / out * 4, o = it % out;
        const float *wo = w + (size_t)o * (size_t)in;
        float s[4];
        int r;
        if (batch - n0 >= 4) {
            nn_dot4(wo, x + (size_t)n0 * (size_t)in, (size_t)in, in, s);
            for (r = 0; r < 4; r++) y[(n0 + r) * out + o] = s[r] + b[o];
        } else {
            for (r = n0; r < batch; r++) y[r * out + o] = nn_dot(wo, x + (size_t)r * (size_t)in, in) + b[o];
        }
    }
}

/* dW[o] += sum over n (in order) of dy[n][o] x[n]; db[o] += sum dy[n][o]; dx = W^T dy */
static void nn_dense_backward(const flowpic_layer *L, const float *w, float *dw, float *db,
                              const float *x, const float *dy, float *dx, int batch, int nt)
{
    const int in = (int)L->in_numel, out = L->out_c;
    const long long work = (long long)batch * out * in;
    (void)nt;
    (void)work;
    NN_OMP(parallel for num_threads(nt) schedule(static) if(work >= NN_PAR_MIN))
    for (int o = 0; o < out; o++) {
        float *dwo = dw + (size_t)o * (size_t)in, s = 0.0f;
        for (int n = 0; n < batch; n++) {
            const float g = dy[n * out + o];
            /* zero gradients (ReLU, dropout: most of them) add exact zeros: skipped */
            if (g != 0.0f) nn_axpy(dwo, g, x + (size_t)n * (size_t)in, in);
            s += g;
        }
        db[o] += s;
    }
    if (!dx) return;
    NN_OMP(parallel for num_threads(nt) schedule(static) if(work >= NN_PAR_MIN))
    for (int n = 0; n < batch; n++) {
        float *dxn = dx + (size_t)n * (size_t)in;
        memset(dxn, 0, (size_t)in * sizeof(float));
        for (int o = 0; o < out; o++)
            if (dy[n * out + o] != 0.0f) nn_axpy(dxn, dy[n * out + o], w + (size_t)o * (size_t)in, in);
    }
}

/* ---------------------------------------------------------------- softmax cross-entropy */

/* probs = softmax(logits) per row, in double with the max subtracted; returns the summed
 * -log probs[label] when labels is not NULL, and writes dlogits = (probs - onehot) / batch. */
static double nn_softmax_ce(const float *logits, float *probs, float *dlogits, const int *labels,
                            int batch, int m)
{
    double total = 0.0;
    int n, k;
    for (n = 0; n < batch; n++) {
        const float *l = logits + (size_t)n * (size_t)m;
        float *p = probs + (size_t)n * (size_t)m;
        double mx = (double)l[0], sum = 0.0;
        for (k = 1; k < m; k++) if ((double)l[k] > mx) mx = (double)l[k];
        for (k = 0; k < m; k++) sum += exp((double)l[k] - mx);
        for (k = 0; k < m; k++) p[k] = (float)(exp((double)l[k] - mx) / sum);
        if (!labels) continue;
        total += log(sum) - ((double)l[labels[n]] - mx);
        for (k = 0; k < m; k++) {
            double pk = exp((double)l[k] - mx) / sum;
            dlogits[(size_t)n * (size_t)m + (size_t)k] = (float)((pk - (k == labels[n] ? 1.0 : 0.0)) / (double)batch);
        }
    }
    return total;
}

/* ---------------------------------------------------------------- passes */

static int nn_ws_matches(const flowpic_net *net, const flowpic_workspace *ws)
{
    return net && ws && net->params && ws->block && ws->layout_id == net->layout_id
           && ws->num_layers == net->num_layers && ws->num_classes == net->num_classes;
}

/* Checks shared by the forward passes; marks the workspace's last pass invalid. */
static flowpic_result nn_forward_begin(const flowpic_net *net, flowpic_workspace *ws, int batch,
                                       flowpic_mode mode, const flowpic_rng *rng)
{
    if (!nn_ws_matches(net, ws) || batch < 1 || batch > ws->max_batch) return FLOWPIC_ERR_ARG;
    if (mode != FLOWPIC_MODE_EVAL && mode != FLOWPIC_MODE_TRAIN && mode != FLOWPIC_MODE_TRAIN_FIXED_MASKS)
        return FLOWPIC_ERR_ARG;
    if (mode != FLOWPIC_MODE_EVAL && !(ws->flags & FLOWPIC_WS_TRAIN)) return FLOWPIC_ERR_ARG;
    if (mode == FLOWPIC_MODE_TRAIN && !rng) return FLOWPIC_ERR_ARG;
    ws->batch = 0;   /* invalid until this pass completes */
    ws->have_loss = 0;
    ws->sparse_last = 0;
    return FLOWPIC_OK;
}

/* Layers [from, num_layers) on x, the output of layer from - 1 (or the input). */
static void nn_forward_layers(const flowpic_net *net, flowpic_workspace *ws, const float *x, int from,
                              int batch, flowpic_mode mode, flowpic_rng *rng)
{
    const int nt = nn_threads(ws);
    int l;
    for (l = from; l < net->num_layers; l++) {
        const flowpic_layer *L = &net->layers[l];
        float *y = ws->acts + ws->act_offset[l];
        const size_t n_out = L->out_numel * (size_t)batch;
        const float *w = net->params + L->weight_offset, *b = net->params + L->bias_offset;
        switch (L->kind) {
        case FLOWPIC_LAYER_CONV:
            if (ws->conv_algo == FLOWPIC_CONV_NAIVE) nn_conv_forward_naive(L, w, b, x, y, batch);
            else nn_conv_forward_blocked(L, ws, w, b, x, y, batch);
            break;
        case FLOWPIC_LAYER_MAXPOOL:
            nn_maxpool_forward(L, x, y, batch, nt);
            break;
        case FLOWPIC_LAYER_RELU:
            nn_relu_select(x, x, y, n_out, nt);
            break;
        case FLOWPIC_LAYER_DROPOUT:
            if (mode == FLOWPIC_MODE_EVAL) {
                memcpy(y, x, n_out * sizeof(float));
            } else {
                uint8_t *mask = ws->masks + ws->mask_offset[l];
                if (mode == FLOWPIC_MODE_TRAIN) nn_dropout_masks(mask, n_out, (double)L->dropout_p, rng);
                nn_dropout_apply(x, mask, nn_dropout_scale(L->dropout_p), y, n_out, nt);
            }
            break;
        case FLOWPIC_LAYER_FLATTEN:
            break;   /* y aliases x */
        case FLOWPIC_LAYER_DENSE:
            nn_dense_forward(L, w, b, x, y, batch, nt);
            break;
        }
        x = y;
    }
    ws->batch = batch;
    ws->mode = mode;
}

FLOWPIC_DEF flowpic_result flowpic_net_forward(const flowpic_net *net, flowpic_workspace *ws,
                                               const float *input, int batch, flowpic_mode mode,
                                               flowpic_rng *rng)
{
    flowpic_result r = nn_forward_begin(net, ws, batch, mode, rng);
    if (r != FLOWPIC_OK) return r;
    if (!input || (ws->flags & FLOWPIC_WS_SPARSE)) return FLOWPIC_ERR_ARG;
    nn_forward_layers(net, ws, input, 0, batch, mode, rng);
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_net_loss(const flowpic_net *net, flowpic_workspace *ws,
                                            const int *labels, int batch, float *loss)
{
    int n;
    double total;
    if (!nn_ws_matches(net, ws) || !labels || batch < 1 || batch != ws->batch) return FLOWPIC_ERR_ARG;
    for (n = 0; n < batch; n++)
        if (labels[n] < 0 || labels[n] >= net->num_classes) return FLOWPIC_ERR_ARG;
    total = nn_softmax_ce(ws->acts + ws->act_offset[net->num_layers - 1], ws->probs, ws->dlogits,
                          labels, batch, net->num_classes);
    ws->loss = total / (double)batch;
    ws->have_loss = 1;
    if (loss) *loss = (float)ws->loss;
    return FLOWPIC_OK;
}

/* Back-propagates the dlogits through layers num_layers - 1 down to `stop` (layer l's input
 * gets its gradient when l is after the first layer with parameters); returns the gradient of
 * the output of layer stop - 1 (NULL if not computed). */
static const float *nn_backward_layers(flowpic_net *net, flowpic_workspace *ws, const float *input,
                                       int batch, int stop)
{
    const int keep = (ws->flags & FLOWPIC_WS_KEEP_GRADS) != 0, nt = nn_threads(ws);
    const int first = nn_first_param_layer(net);
    float *dout = ws->dlogits, *buf_a = ws->grad_acts, *buf_b = ws->grad_acts + ws->grad_buf_len;
    int l;
    for (l = net->num_layers - 1; l >= stop; l--) {
        const flowpic_layer *L = &net->layers[l];
        const float *x = l > 0 ? ws->acts + ws->act_offset[l - 1] : input;
        const float *y = ws->acts + ws->act_offset[l];
        const size_t n_in = L->in_numel * (size_t)batch;
        float *din = NULL;
        float *dw = net->grads + L->weight_offset, *db = net->grads + L->bias_offset;
        const float *w = net->params + L->weight_offset;
        if (l > first) {
            if (L->kind == FLOWPIC_LAYER_FLATTEN) din = dout;
            else if (keep) din = ws->grad_acts + ws->act_offset[l - 1];
            else din = dout == buf_a ? buf_b : buf_a;
        }
        switch (L->kind) {
        case FLOWPIC_LAYER_CONV:
            if (ws->conv_algo == FLOWPIC_CONV_NAIVE) nn_conv_backward_naive(L, w, dw, db, x, dout, din, batch);
            else nn_conv_backward_blocked(L, ws, w, dw, db, x, dout, din, batch);
            break;
        case FLOWPIC_LAYER_MAXPOOL:
            nn_maxpool_backward(L, x, dout, din, batch, nt);
            break;
        case FLOWPIC_LAYER_RELU:
            nn_relu_select(y, dout, din, n_in, nt);
            break;
        case FLOWPIC_LAYER_DROPOUT:
            if (ws->mode == FLOWPIC_MODE_EVAL)
                memcpy(din, dout, n_in * sizeof(float));
            else
                nn_dropout_apply(dout, ws->masks + ws->mask_offset[l], nn_dropout_scale(L->dropout_p), din, n_in, nt);
            break;
        case FLOWPIC_LAYER_FLATTEN:
            break;
        case FLOWPIC_LAYER_DENSE:
            nn_dense_backward(L, w, dw, db, x, dout, din, batch, nt);
            break;
        }
        dout = din;
    }
    return dout;
}

/* 0 when a backward pass may follow the last forward (sparse: 1 for the sparse pass). */
static flowpic_result nn_backward_check(const flowpic_net *net, const flowpic_workspace *ws, int batch,
                                        int sparse)
{
    if (!nn_ws_matches(net, ws) || !(ws->flags & FLOWPIC_WS_TRAIN)) return FLOWPIC_ERR_ARG;
    if (batch < 1 || batch != ws->batch || !ws->have_loss || ws->sparse_last != sparse) return FLOWPIC_ERR_ARG;
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_net_backward(flowpic_net *net, flowpic_workspace *ws,
                                                const float *input, int batch)
{
    if (!input || nn_backward_check(net, ws, batch, 0) != FLOWPIC_OK) return FLOWPIC_ERR_ARG;
    (void)nn_backward_layers(net, ws, input, batch, nn_first_param_layer(net));
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_net_predict(const flowpic_net *net, flowpic_workspace *ws,
                                               const float *input, int batch, float *probs_out)
{
    flowpic_result r = flowpic_net_forward(net, ws, input, batch, FLOWPIC_MODE_EVAL, NULL);
    if (r != FLOWPIC_OK) return r;
    nn_softmax_ce(ws->acts + ws->act_offset[net->num_layers - 1], ws->probs, NULL, NULL, batch,
                  net->num_classes);
    if (probs_out)
        memcpy(probs_out, ws->probs, (size_t)batch * (size_t)net->num_classes * sizeof(float));
    return FLOWPIC_OK;
}

/* ---------------------------------------------------------------- sparse first layers */

/* Geometry of the part the sparse passes replace: conv1 (1 -> c1 channels), ReLU, pool1
 * (kernel = stride), conv2 (c1 -> c2). Channel vectors are padded to c1p, c2p (multiples of
 * NN_SPV) so that their loops have a constant width and vectorise at -O2. */
typedef struct nn_sparse_geom {
    int h, w;                      /* input */
    int c1, c1p, k1, s1, p1;       /* conv1 */
    int pk, ph, pw;                /* pool1: kernel = stride, output rows and columns */
    int c2, c2p, k2, s2, p2, oh2, ow2; /* conv2 */
    int span;                      /* conv1 outputs per axis one input pixel touches, at most */
} nn_sparse_geom;

/* One (non-zero pixel, conv1 output it touches) pair, kept from forward for conv1's weight
 * gradient. */
typedef struct nn_sparse_entry {
    uint32_t cell;                 /* the sample's touched pool1 cell holding the conv1 output */
    uint16_t kpos;                 /* kernel position ky * k1 + kx */
    uint16_t sub;                  /* position of the conv1 output in the pool window, row-major */
    float value;                   /* the pixel's value */
} nn_sparse_entry;

struct flowpic__sparse {
    nn_sparse_geom g;
    size_t cells_cap, entries_cap;
    uint32_t *cell_key;            /* [cells] py * pw + px, ascending within a sample */
    float *cell_val;               /* [cells][c1p] pool1 output */
    uint16_t *cell_route;          /* [cells][c1p] window position that gets the gradient, or NN_NO_ROUTE */
    float *cell_grad;              /* [cells][c1p] dloss / d(pool1 output) */
    nn_sparse_entry *entries;      /* [entries] */
    size_t *cell_off, *entry_off;  /* [max_batch] start of each sample's region */
    size_t *cell_n, *entry_n;      /* [max_batch] used */
    float *acc;                    /* [threads][pk][pw * pk][c1p] conv1 sums of one pool row */
    int *slot;                     /* [threads][pw] cell of a pool column in the current row, or -1 */
    float *w1t;                    /* [k1 * k1][c1p] conv1 weights */
    float *w2t;                    /* [k2 * k2][c1][c2p] conv2 weights */
    float *bg;                     /* [c1p] background: ReLU(conv1 bias) */
    float *base2;                  /* [oh2 * ow2][c2p] conv2 output on the all-background pool1, position-major */
    float *yt;                     /* [threads][oh2 * ow2][c2p] conv2 output of one sample, position-major */
    float *dsum;                   /* [c2][oh2][ow2] conv2 output gradient summed over the batch */
    float *tsum;                   /* [c2][k2][k2] dsum summed over the outputs each kernel position reads */
    float *dwt;                    /* [NN_SPARSE_CHUNKS][k2 * k2][c1][c2p] conv2 weight gradient per chunk */
    float *dw1;                    /* [c1][k1 * k1] conv1 weight gradient of the batch */
    float *cache;                  /* the parameters the above were derived from: b1, w1, w2, b2 */
    size_t cache_len;
    int cache_ok;
    int *range2;                   /* [oh2 + ow2][2] conv2 kernel rows (columns) inside pool1, [lo, hi) */
};

#define NN_NO_ROUTE 0xFFFFu
#define NN_SPV 8                   /* channel vector chunk */
/* conv2's weight gradient is summed per chunk of samples (fixed bounds: the same sums
 * whatever the thread count), then over the chunks in order */
#define NN_SPARSE_CHUNKS 8

static int nn_sparse_geom_init(const flowpic_net *net, nn_sparse_geom *g)
{
    const flowpic_layer *L = net->layers;
    if (net->num_layers <= NN_SPARSE_OUT + 1 || L[0].kind != FLOWPIC_LAYER_CONV || L[0].in_c != 1
        || L[1].kind != FLOWPIC_LAYER_RELU || L[2].kind != FLOWPIC_LAYER_MAXPOOL || L[2].kernel != L[2].stride
        || L[3].kind != FLOWPIC_LAYER_CONV || L[0].out_c > NN_SPARSE_MAX_C || L[3].out_c > NN_SPARSE_MAX_C)
        return 0;
    g->h = L[0].in_h; g->w = L[0].in_w;
    g->c1 = L[0].out_c; g->k1 = L[0].kernel; g->s1 = L[0].stride; g->p1 = L[0].pad_before;
    g->c1p = nn_round_up_int(g->c1, NN_SPV);
    g->pk = L[2].kernel; g->ph = L[2].out_h; g->pw = L[2].out_w;
    g->c2 = L[3].out_c; g->k2 = L[3].kernel; g->s2 = L[3].stride; g->p2 = L[3].pad_before;
    g->c2p = nn_round_up_int(g->c2, NN_SPV);
    g->oh2 = L[3].out_h; g->ow2 = L[3].out_w;
    g->span = (g->k1 + g->s1 - 1) / g->s1;
    return 1;
}

FLOWPIC_DEF int flowpic_net_sparse_ok(const flowpic_net *net)
{
    nn_sparse_geom g;
    return net && net->params && nn_sparse_geom_init(net, &g);
}

/* Outputs [*lo, *hi] (inclusive, clipped to [0, n)) of a conv (kernel k, stride s, padding p
 * before) whose window holds input coordinate x; empty when *lo > *hi. */
static void nn_touch_range(int x, int k, int s, int p, int n, int *lo, int *hi)
{
    const int first = x + p - k + 1;
    *lo = first <= 0 ? 0 : (first + s - 1) / s;
    *hi = nn_min_int((x + p) / s, n - 1);
}

static void nn_sparse_free(struct flowpic__sparse *sp)
{
    if (!sp) return;
    FLOWPIC_FREE(sp->cell_key); FLOWPIC_FREE(sp->cell_val); FLOWPIC_FREE(sp->cell_route);
    FLOWPIC_FREE(sp->cell_grad); FLOWPIC_FREE(sp->entries); FLOWPIC_FREE(sp->cell_off);
    FLOWPIC_FREE(sp->acc); FLOWPIC_FREE(sp->slot);
    FLOWPIC_FREE(sp);
}

/* The fixed part of the sparse state (everything but the per-sample cells and entries), made
 * on first use. Sizes are bounded by the net's limits (MAX_DIM, MAX_KERNEL, NN_SPARSE_MAX_C). */
static flowpic_result nn_sparse_state(const flowpic_net *net, flowpic_workspace *ws, struct flowpic__sparse **out)
{
    struct flowpic__sparse *sp = ws->sparse;
    nn_sparse_geom g;
    size_t B = (size_t)ws->max_batch, T = (size_t)ws->num_threads, acc, nf, k1k1, k2k2, plane, c1, c2;
    if (!nn_sparse_geom_init(net, &g)) return FLOWPIC_ERR_ARG;
    if (sp) { *out = sp; return FLOWPIC_OK; }   /* the layout is the workspace's (layout_id) */
    sp = (struct flowpic__sparse *)FLOWPIC_MALLOC(sizeof *sp);
    if (!sp) return FLOWPIC_ERR_NOMEM;
    memset(sp, 0, sizeof *sp);
    sp->g = g;
    c1 = (size_t)g.c1; c2 = (size_t)g.c2;
    acc = (size_t)g.pk * (size_t)g.pw * (size_t)g.pk * (size_t)g.c1p;
    k1k1 = (size_t)g.k1 * (size_t)g.k1;
    k2k2 = (size_t)g.k2 * (size_t)g.k2;
    plane = (size_t)g.oh2 * (size_t)g.ow2;
    sp->cache_len = c1 + c1 * k1k1 + c2 * c1 * k2k2 + c2;
    nf = T * acc + k1k1 * (size_t)g.c1p + k2k2 * c1 * (size_t)g.c2p + (size_t)g.c1p + c2 * plane
         + c2 * k2k2 + NN_SPARSE_CHUNKS * k2k2 * c1 * (size_t)g.c2p + c1 * k1k1 + sp->cache_len
         + (T + 1) * plane * (size_t)g.c2p;
    sp->cell_off = (size_t *)FLOWPIC_MALLOC(4 * B * sizeof(size_t));
    sp->acc = (float *)FLOWPIC_MALLOC(nf * sizeof(float));
    sp->slot = (int *)FLOWPIC_MALLOC((T * (size_t)g.pw + 2 * ((size_t)g.oh2 + (size_t)g.ow2)) * sizeof(int));
    if (!sp->cell_off || !sp->acc || !sp->slot) { nn_sparse_free(sp); return FLOWPIC_ERR_NOMEM; }
    memset(sp->acc, 0, nf * sizeof(float));   /* the padding channels stay 0 */
    sp->entry_off = sp->cell_off + B; sp->cell_n = sp->entry_off + B; sp->entry_n = sp->cell_n + B;
    sp->range2 = sp->slot + T * (size_t)g.pw;
    sp->w1t = sp->acc + T * acc;
    sp->w2t = sp->w1t + k1k1 * (size_t)g.c1p;
    sp->bg = sp->w2t + k2k2 * c1 * (size_t)g.c2p;
    sp->base2 = sp->bg + g.c1p;
    sp->dsum = sp->base2 + plane * (size_t)g.c2p;
    sp->tsum = sp->dsum + c2 * plane;
    sp->dwt = sp->tsum + c2 * k2k2;
    sp->dw1 = sp->dwt + NN_SPARSE_CHUNKS * k2k2 * c1 * (size_t)g.c2p;
    sp->cache = sp->dw1 + c1 * k1k1;
    sp->yt = sp->cache + sp->cache_len;
    ws->sparse = sp;
    *out = sp;
    return FLOWPIC_OK;
}

/* 1 when the parameters the prepared state came from are unchanged (then nothing is redone);
 * else records them. */
static int nn_sparse_cached(struct flowpic__sparse *sp, const flowpic_net *net)
{
    const flowpic_layer *L1 = &net->layers[0], *L2 = &net->layers[NN_SPARSE_OUT];
    const float *part[4];
    size_t len[4], i, off = 0;
    int same = sp->cache_ok;
    part[0] = net->params + L1->bias_offset; len[0] = L1->num_biases;
    part[1] = net->params + L1->weight_offset; len[1] = L1->num_weights;
    part[2] = net->params + L2->weight_offset; len[2] = L2->num_weights;
    part[3] = net->params + L2->bias_offset; len[3] = L2->num_biases;
    for (i = 0; i < 4 && same; off += len[i], i++) same = memcmp(sp->cache + off, part[i], len[i] * sizeof(float)) == 0;
    if (same) return 1;
    for (i = 0, off = 0; i < 4; off += len[i], i++) memcpy(sp->cache + off, part[i], len[i] * sizeof(float));
    sp->cache_ok = 1;
    return 0;
}

/* conv2's output on the all-background pool1, position-major (as nn_sparse_conv2_forward sums
 * it): b2 + sum over channels of bg * (the kernel's weights that fall inside pool1). Rows
 * (columns) with the same kernel range are equal: each distinct range is summed once. */
static void nn_sparse_base2(struct flowpic__sparse *sp, const float *w2, const float *b2)
{
    const nn_sparse_geom *g = &sp->g;
    const int k2k2 = g->k2 * g->k2, *rows = sp->range2, *cols = sp->range2 + 2 * g->oh2;
    const size_t c2p = (size_t)g->c2p, ow2 = (size_t)g->ow2;
    int c, o, t, oy, ox, ky, kx;
    for (o = 0; o < g->c2; o++) {
        float kern[FLOWPIC_NN_MAX_KERNEL * FLOWPIC_NN_MAX_KERNEL], colsum[FLOWPIC_NN_MAX_KERNEL];
        float *out = sp->base2 + (size_t)o; /* output (oy, ox) at out[(oy * ow2 + ox) * c2p] */
        for (t = 0; t < k2k2; t++) {
            float s = 0.0f;
            for (c = 0; c < g->c1; c++) s += sp->bg[c] * w2[((size_t)o * (size_t)g->c1 + (size_t)c) * (size_t)k2k2 + (size_t)t];
            kern[t] = s;
        }
        for (oy = 0; oy < g->oh2; oy++) {
            float *row = out + (size_t)oy * ow2 * c2p;
            if (oy > 0 && rows[2 * oy] == rows[2 * oy - 2] && rows[2 * oy + 1] == rows[2 * oy - 1]) {
                const float *above = row - ow2 * c2p;
                for (ox = 0; ox < g->ow2; ox++) row[(size_t)ox * c2p] = above[(size_t)ox * c2p];
                continue;
            }
            for (kx = 0; kx < g->k2; kx++) {
                float s = 0.0f;
                for (ky = rows[2 * oy]; ky < rows[2 * oy + 1]; ky++) s += kern[ky * g->k2 + kx];
                colsum[kx] = s;
            }
            for (ox = 0; ox < g->ow2; ox++) {
                float s = 0.0f;
                if (ox > 0 && cols[2 * ox] == cols[2 * ox - 2] && cols[2 * ox + 1] == cols[2 * ox - 1]) {
                    row[(size_t)ox * c2p] = row[((size_t)ox - 1) * c2p];
                    continue;
                }
                for (kx = cols[2 * ox]; kx < cols[2 * ox + 1]; kx++) s += colsum[kx];
                row[(size_t)ox * c2p] = s + b2[o];
            }
        }
    }
}

/* Per call, unless the parameters are those of the last call: transposed weights, the
 * background, conv2's kernel ranges and its background output. */
static void nn_sparse_prepare(struct flowpic__sparse *sp, const flowpic_net *net)
{
    const nn_sparse_geom *g = &sp->g;
    const flowpic_layer *L1 = &net->layers[0], *L2 = &net->layers[NN_SPARSE_OUT];
    const float *w1 = net->params + L1->weight_offset, *b1 = net->params + L1->bias_offset;
    const float *w2 = net->params + L2->weight_offset, *b2 = net->params + L2->bias_offset;
    const int k1k1 = g->k1 * g->k1, k2k2 = g->k2 * g->k2;
    int *rows = sp->range2, *cols = sp->range2 + 2 * g->oh2;
    int c, o, t, oy, ox;
    if (nn_sparse_cached(sp, net)) return;
    for (c = 0; c < g->c1; c++) {
        sp->bg[c] = b1[c] > 0.0f ? b1[c] : 0.0f;
        for (t = 0; t < k1k1; t++) sp->w1t[(size_t)t * (size_t)g->c1p + (size_t)c] = w1[(size_t)c * (size_t)k1k1 + (size_t)t];
    }
    for (o = 0; o < g->c2; o++)
        for (c = 0; c < g->c1; c++)
            for (t = 0; t < k2k2; t++)
                sp->w2t[((size_t)t * (size_t)g->c1 + (size_t)c) * (size_t)g->c2p + (size_t)o]
                    = w2[((size_t)o * (size_t)g->c1 + (size_t)c) * (size_t)k2k2 + (size_t)t];
    /* kernel row ky of output row oy reads pool1 row oy * s2 + ky - p2, inside for ky in [lo, hi) */
    for (oy = 0; oy < g->oh2; oy++) {
        rows[2 * oy] = nn_min_int(g->k2, g->p2 > oy * g->s2 ? g->p2 - oy * g->s2 : 0);
        rows[2 * oy + 1] = nn_min_int(g->k2, g->ph + g->p2 - oy * g->s2);
    }
    for (ox = 0; ox < g->ow2; ox++) {
        cols[2 * ox] = nn_min_int(g->k2, g->p2 > ox * g->s2 ? g->p2 - ox * g->s2 : 0);
        cols[2 * ox + 1] = nn_min_int(g->k2, g->pw + g->p2 - ox * g->s2);
    }
    nn_sparse_base2(sp, w2, b2);
}

/* Max-pools (after ReLU) the conv1 sums of pool column px of the current pool row, as the
 * dense path does (the first maximal element in row-major order gets the gradient; ReLU'(0)
 * = 0), and clears them. */
static void nn_sparse_pool_cell(const nn_sparse_geom *g, float *acc, int px, const float *b1, float *val,
                                uint16_t *route)
{
    const size_t owc = (size_t)g->pw * (size_t)g->pk;
    float best_v[NN_SPARSE_MAX_C];
    int best_at[NN_SPARSE_MAX_C], sy, sx, c, v;
    for (sy = 0; sy < g->pk; sy++)
        for (sx = 0; sx < g->pk; sx++) {
            const int sub = sy * g->pk + sx;
            float *a = acc + ((size_t)sy * owc + (size_t)(px * g->pk + sx)) * (size_t)g->c1p;
            for (c = 0; c < g->c1p; c += NN_SPV)
                for (v = 0; v < NN_SPV; v++) {
                    const float y = a[c + v] + b1[c + v], r = y > 0.0f ? y : 0.0f;
                    const int better = sub == 0 || r > best_v[c + v];
                    best_v[c + v] = better ? r : best_v[c + v];
                    best_at[c + v] = better ? sub : best_at[c + v];
                    a[c + v] = 0.0f;
                }
        }
    for (c = 0; c < g->c1; c++) {
        val[c] = best_v[c];
        route[c] = best_v[c] > 0.0f ? (uint16_t)best_at[c] : (uint16_t)NN_NO_ROUTE;
    }
}

/* conv1 + ReLU + pool1 of one picture, pool row by pool row: the pool1 cells whose window
 * reads a non-zero pixel (ascending), and the (pixel, conv1 output) entries. Each conv1 sum
 * adds its pixels in (row, column) = (ky, kx) order, as the dense path adds its products
 * (the zero pixels it also adds change nothing), then the bias. b1 is padded to c1p.
 * Returns the cell count. */
static size_t nn_sparse_conv1_pool(const nn_sparse_geom *g, const float *w1t, const float *b1,
                                   const flowpic_picture *pic, flowpic_transform transform, uint32_t *key,
                                   float *val, uint16_t *route, nn_sparse_entry *ent, size_t *n_ent,
                                   float *acc, int *slot)
{
    const int owc = g->pw * g->pk;
    const uint32_t W = (uint32_t)g->w;
    size_t a = 0, ncell = 0, ne = 0, i;
    int py, px, c, v;
    for (px = 0; px < g->pw; px++) slot[px] = -1;
    for (py = 0; py < g->ph; py++) {
        const int oy0 = py * g->pk;
        const long r_lo = (long)oy0 * g->s1 - g->p1, r_hi = (long)(oy0 + g->pk - 1) * g->s1 - g->p1 + g->k1;
        const size_t e0 = ne;
        while (a < pic->n && (long)(pic->pixels[a].index / W) < r_lo) a++;
        for (i = a; i < pic->n && (long)(pic->pixels[i].index / W) < r_hi; i++) {
            const int r = (int)(pic->pixels[i].index / W), col = (int)(pic->pixels[i].index % W);
            const float value = flowpic_transform_value(transform, pic->pixels[i].count);
            int oy, oy_lo, oy_hi, ox, ox_lo, ox_hi;
            nn_touch_range(r, g->k1, g->s1, g->p1, oy0 + g->pk, &oy_lo, &oy_hi);
            nn_touch_range(col, g->k1, g->s1, g->p1, owc, &ox_lo, &ox_hi);
            if (oy_lo < oy0) oy_lo = oy0;
            for (oy = oy_lo; oy <= oy_hi; oy++) {
                const int ky = r + g->p1 - oy * g->s1, sy = oy - oy0;
                for (ox = ox_lo; ox <= ox_hi; ox++) {
                    const int kx = col + g->p1 - ox * g->s1;
                    float *FLOWPIC_RESTRICT s = acc + ((size_t)sy * (size_t)owc + (size_t)ox) * (size_t)g->c1p;
                    const float *FLOWPIC_RESTRICT wk = w1t + (size_t)(ky * g->k1 + kx) * (size_t)g->c1p;
                    for (c = 0; c < g->c1p; c += NN_SPV)
                        for (v = 0; v < NN_SPV; v++) s[c + v] += wk[c + v] * value;
                    slot[ox / g->pk] = 0;
                    ent[ne].cell = (uint32_t)(ox / g->pk);   /* the pool column until the cells exist */
                    ent[ne].kpos = (uint16_t)(ky * g->k1 + kx);
                    ent[ne].sub = (uint16_t)(sy * g->pk + ox % g->pk);
                    ent[ne].value = value;
                    ne++;
                }
            }
        }
        if (ne == e0) continue;
        for (px = 0; px < g->pw; px++) {
            if (slot[px] < 0) continue;
            slot[px] = (int)ncell;
            key[ncell] = (uint32_t)(py * g->pw + px);
            nn_sparse_pool_cell(g, acc, px, b1, val + ncell * (size_t)g->c1p, route + ncell * (size_t)g->c1p);
            ncell++;
        }
        for (i = e0; i < ne; i++) ent[i].cell = (uint32_t)slot[ent[i].cell];
        for (px = 0; px < g->pw; px++) slot[px] = -1;
    }
    *n_ent = ne;
    return ncell;
}

/* (cell - background) of a touched cell into delta[c1]; 0 when it is all zero. */
static int nn_sparse_delta(const struct flowpic__sparse *sp, const float *val, float *delta)
{
    int c, any = 0;
    for (c = 0; c < sp->g.c1; c++) {
        delta[c] = val[c] - sp->bg[c];
        any |= delta[c] != 0.0f;
    }
    return any;
}

/* conv2 output of one sample: the background output plus (cell - background) times the
 * weights, for every touched cell; summed position-major in yt (whole vectors), then y. */
static void nn_sparse_conv2_forward(const struct flowpic__sparse *sp, const uint32_t *key, const float *val,
                                    size_t ncell, float *yt, float *y)
{
    const nn_sparse_geom *g = &sp->g;
    const size_t plane = (size_t)g->oh2 * (size_t)g->ow2, c2p = (size_t)g->c2p;
    size_t i, pos;
    int c, o, v;
    memcpy(yt, sp->base2, plane * c2p * sizeof(float));
    for (i = 0; i < ncell; i++) {
        const int py = (int)(key[i] / (uint32_t)g->pw), px = (int)(key[i] % (uint32_t)g->pw);
        float delta[NN_SPARSE_MAX_C];
        int oy, oy_lo, oy_hi, ox, ox_lo, ox_hi;
        if (!nn_sparse_delta(sp, val + i * (size_t)g->c1p, delta)) continue;   /* adds exact zeros */
        nn_touch_range(py, g->k2, g->s2, g->p2, g->oh2, &oy_lo, &oy_hi);
        nn_touch_range(px, g->k2, g->s2, g->p2, g->ow2, &ox_lo, &ox_hi);
        for (oy = oy_lo; oy <= oy_hi; oy++)
            for (ox = ox_lo; ox <= ox_hi; ox++) {
                const int t = (py + g->p2 - oy * g->s2) * g->k2 + (px + g->p2 - ox * g->s2);
                const float *FLOWPIC_RESTRICT wt = sp->w2t + (size_t)t * (size_t)g->c1 * c2p;
                float *FLOWPIC_RESTRICT yo = yt + ((size_t)oy * (size_t)g->ow2 + (size_t)ox) * c2p;
                for (o = 0; o < g->c2p; o += NN_SPV) { /* a vector of outputs: its sums stay in registers */
                    float sum[NN_SPV];
                    for (v = 0; v < NN_SPV; v++) sum[v] = 0.0f;
                    for (c = 0; c < g->c1; c++) {
                        const float d = delta[c];
                        const float *FLOWPIC_RESTRICT wr = wt + (size_t)c * c2p + (size_t)o;
                        if (d == 0.0f) continue;
                        for (v = 0; v < NN_SPV; v++) sum[v] += d * wr[v];
                    }
                    for (v = 0; v < NN_SPV; v++) yo[o + v] += sum[v];
                }
            }
    }
    for (o = 0; o < g->c2; o++)
        for (pos = 0; pos < plane; pos++) y[(size_t)o * plane + pos] = yt[pos * c2p + (size_t)o];
}

/* Per-sample regions for the cells and entries of pics[0 .. batch) (upper bounds), grown as
 * needed: memory follows the non-zero pixels. */
static flowpic_result nn_sparse_reserve(struct flowpic__sparse *sp, const flowpic_picture *pics, int batch)
{
    const nn_sparse_geom *g = &sp->g;
    const size_t per_pixel = (size_t)g->span * (size_t)g->span, max_cells = (size_t)g->ph * (size_t)g->pw;
    size_t cells = 0, entries = 0, e, c1p = (size_t)g->c1p, bytes;
    int n;
    for (n = 0; n < batch; n++) {
        if (!nn_mul_size(pics[n].n, per_pixel, &e)) return FLOWPIC_ERR_LIMIT;
        sp->cell_off[n] = cells;
        sp->entry_off[n] = entries;
        if (!nn_add_size(entries, e, &entries) || !nn_add_size(cells, e < max_cells ? e : max_cells, &cells))
            return FLOWPIC_ERR_LIMIT;
    }
    if (entries > sp->entries_cap) {
        nn_sparse_entry *p;
        if (!nn_mul_size(entries, sizeof *p, &bytes)) return FLOWPIC_ERR_LIMIT;
        p = (nn_sparse_entry *)FLOWPIC_REALLOC(sp->entries, bytes);
        if (!p) return FLOWPIC_ERR_NOMEM;
        sp->entries = p;
        sp->entries_cap = entries;
    }
    if (cells > sp->cells_cap) {
        void *k, *v, *r, *d;
        if (!nn_mul_size(cells, c1p * sizeof(float), &bytes)) return FLOWPIC_ERR_LIMIT;
        k = FLOWPIC_REALLOC(sp->cell_key, cells * sizeof(uint32_t));
        if (k) sp->cell_key = (uint32_t *)k;
        v = FLOWPIC_REALLOC(sp->cell_val, bytes);
        if (v) sp->cell_val = (float *)v;
        d = FLOWPIC_REALLOC(sp->cell_grad, bytes);
        if (d) sp->cell_grad = (float *)d;
        r = FLOWPIC_REALLOC(sp->cell_route, cells * c1p * sizeof(uint16_t));
        if (r) sp->cell_route = (uint16_t *)r;
        if (!k || !v || !d || !r) return FLOWPIC_ERR_NOMEM;
        sp->cells_cap = cells;
    }
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_net_forward_sparse(const flowpic_net *net, flowpic_workspace *ws,
                                                      const flowpic_picture *pics, flowpic_transform transform,
                                                      int batch, flowpic_mode mode, flowpic_rng *rng)
{
    struct flowpic__sparse *sp;
    const nn_sparse_geom *g;
    float *y, b1[NN_SPARSE_MAX_C];
    size_t out_numel;
    int n, c, nt;
    flowpic_result r = nn_forward_begin(net, ws, batch, mode, rng);
    if (r != FLOWPIC_OK) return r;
    if (!pics || (int)transform < 0 || transform >= FLOWPIC_VALUE_COUNT) return FLOWPIC_ERR_ARG;
    r = nn_sparse_state(net, ws, &sp);
    if (r != FLOWPIC_OK) return r;
    g = &sp->g;
    for (n = 0; n < batch; n++) {
        const uint32_t pixels = (uint32_t)g->h * (uint32_t)g->w;   /* h, w <= FLOWPIC_NN_MAX_DIM */
        uint32_t j;
        if (pics[n].res != (uint32_t)g->h || g->h != g->w || (pics[n].n && !pics[n].pixels)) return FLOWPIC_ERR_ARG;
        /* sorted and inside the picture, as flowpic_picture_build makes them */
        for (j = 0; j < pics[n].n; j++)
            if (pics[n].pixels[j].index >= pixels || (j > 0 && pics[n].pixels[j].index <= pics[n].pixels[j - 1].index))
                return FLOWPIC_ERR_ARG;
    }
    r = nn_sparse_reserve(sp, pics, batch);
    if (r != FLOWPIC_OK) return r;
    nn_sparse_prepare(sp, net);
    for (c = 0; c < g->c1p; c++) b1[c] = c < g->c1 ? net->params[net->layers[0].bias_offset + (size_t)c] : 0.0f;
    y = ws->acts + ws->act_offset[NN_SPARSE_OUT];
    out_numel = net->layers[NN_SPARSE_OUT].out_numel;
    nt = nn_threads(ws);
    (void)nt;
    NN_OMP(parallel for num_threads(nt) schedule(dynamic, 1) if(batch > 1))
    for (int i = 0; i < batch; i++) {
        const int tid = nn_thread_id();
        const size_t acc_len = (size_t)g->pk * (size_t)g->pw * (size_t)g->pk * (size_t)g->c1p;
        const size_t co = sp->cell_off[i], c1p = (size_t)g->c1p;
        sp->cell_n[i] = nn_sparse_conv1_pool(g, sp->w1t, b1, &pics[i], transform, sp->cell_key + co,
                                             sp->cell_val + co * c1p, sp->cell_route + co * c1p,
                                             sp->entries + sp->entry_off[i], &sp->entry_n[i],
                                             sp->acc + (size_t)tid * acc_len, sp->slot + (size_t)tid * (size_t)g->pw);
        nn_sparse_conv2_forward(sp, sp->cell_key + co, sp->cell_val + co * c1p, sp->cell_n[i],
                                sp->yt + (size_t)tid * (size_t)g->oh2 * (size_t)g->ow2 * (size_t)g->c2p,
                                y + (size_t)i * out_numel);
    }
    nn_forward_layers(net, ws, y, NN_SPARSE_OUT + 1, batch, mode, rng);
    ws->sparse_last = 1;
    return FLOWPIC_OK;
}

/* dsum = conv2's output gradient summed over the batch (in sample order); db2 += its sum;
 * tsum[o][ky][kx] = the sum of dsum[o] over the outputs whose kernel position (ky, kx) reads
 * inside pool1. */
static void nn_sparse_sums(struct flowpic__sparse *sp, const float *dy, int batch, float *db2, int nt)
{
    const nn_sparse_geom *g = &sp->g;
    const size_t plane = (size_t)g->oh2 * (size_t)g->ow2, numel = (size_t)g->c2 * plane;
    const int *rows = sp->range2, *cols = sp->range2 + 2 * g->oh2;
    const long long count = (long long)numel;
    int o, oy, ox, ky, kx;
    (void)nt;
    NN_OMP(parallel for num_threads(nt) schedule(static) if(count * batch >= NN_PAR_MIN))
    for (long long i = 0; i < count; i++) {
        float s = 0.0f;
        for (int n = 0; n < batch; n++) s += dy[(size_t)n * numel + (size_t)i];
        sp->dsum[i] = s;
    }
    memset(sp->tsum, 0, (size_t)g->c2 * (size_t)g->k2 * (size_t)g->k2 * sizeof(float));
    for (o = 0; o < g->c2; o++) {
        const float *d = sp->dsum + (size_t)o * plane;
        float *t = sp->tsum + (size_t)o * (size_t)g->k2 * (size_t)g->k2, s = 0.0f;
        for (oy = 0; oy < g->oh2; oy++) {
            /* separably: the row's sum for each kernel column, then added to each kernel row */
            float part[FLOWPIC_NN_MAX_KERNEL];
            for (kx = 0; kx < g->k2; kx++) part[kx] = 0.0f;
            for (ox = 0; ox < g->ow2; ox++) {
                const float v = d[(size_t)oy * (size_t)g->ow2 + (size_t)ox];
                s += v;
                for (kx = cols[2 * ox]; kx < cols[2 * ox + 1]; kx++) part[kx] += v;
            }
            for (ky = rows[2 * oy]; ky < rows[2 * oy + 1]; ky++)
                for (kx = 0; kx < g->k2; kx++) t[ky * g->k2 + kx] += part[kx];
        }
        db2[o] += s;
    }
}

/* The touched cells of samples [n0, n1): conv2's weight gradient terms (cell - bg) * dy into
 * dwt[k2 * k2][c1][c2p] (added, in sample and cell order), and pool1's gradient at each cell
 * (the sum over the conv2 outputs whose window holds it of their gradient times the weight). */
static void nn_sparse_cells_backward(struct flowpic__sparse *sp, const float *dy, int n0, int n1, float *dwt)
{
    const nn_sparse_geom *g = &sp->g;
    const size_t plane = (size_t)g->oh2 * (size_t)g->ow2, numel = (size_t)g->c2 * plane;
    int n, c, o, v;
    for (n = n0; n < n1; n++) {
        const float *dyn = dy + (size_t)n * numel;
        const size_t co = sp->cell_off[n];
        size_t i;
        for (i = 0; i < sp->cell_n[n]; i++) {
            const uint32_t key = sp->cell_key[co + i];
            const int py = (int)(key / (uint32_t)g->pw), px = (int)(key % (uint32_t)g->pw);
            float *cg = sp->cell_grad + (co + i) * (size_t)g->c1p, delta[NN_SPARSE_MAX_C];
            int oy, oy_lo, oy_hi, ox, ox_lo, ox_hi;
            const int any = nn_sparse_delta(sp, sp->cell_val + (co + i) * (size_t)g->c1p, delta);
            for (c = 0; c < g->c1; c++) cg[c] = 0.0f;
            nn_touch_range(py, g->k2, g->s2, g->p2, g->oh2, &oy_lo, &oy_hi);
            nn_touch_range(px, g->k2, g->s2, g->p2, g->ow2, &ox_lo, &ox_hi);
            for (oy = oy_lo; oy <= oy_hi; oy++)
                for (ox = ox_lo; ox <= ox_hi; ox++) {
                    const size_t t = (size_t)((py + g->p2 - oy * g->s2) * g->k2 + (px + g->p2 - ox * g->s2));
                    float gy[NN_SPARSE_MAX_C];
                    for (o = 0; o < g->c2p; o++) gy[o] = o < g->c2 ? dyn[(size_t)o * plane + (size_t)oy * (size_t)g->ow2 + (size_t)ox] : 0.0f;
                    for (c = 0; c < g->c1; c++) {
                        const float *FLOWPIC_RESTRICT wr = sp->w2t + (t * (size_t)g->c1 + (size_t)c) * (size_t)g->c2p;
                        float *FLOWPIC_RESTRICT dr = dwt + (t * (size_t)g->c1 + (size_t)c) * (size_t)g->c2p;
                        const float d = delta[c];
                        float lanes[NN_SPV] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
                        for (o = 0; o < g->c2p; o += NN_SPV)
                            for (v = 0; v < NN_SPV; v++) lanes[v] += wr[o + v] * gy[o + v];
                        cg[c] += ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
                        if (!any || d == 0.0f) continue;
                        for (o = 0; o < g->c2p; o += NN_SPV)
                            for (v = 0; v < NN_SPV; v++) dr[o + v] += d * gy[o + v];
                    }
                }
        }
    }
}

/* conv2's weight gradient: bg * tsum plus the chunks' cell terms, summed in chunk order. */
static void nn_sparse_conv2_dw(struct flowpic__sparse *sp, float *dw2)
{
    const nn_sparse_geom *g = &sp->g;
    const size_t k2k2 = (size_t)g->k2 * (size_t)g->k2, chunk = k2k2 * (size_t)g->c1 * (size_t)g->c2p;
    size_t t;
    int o, c, j;
    for (o = 0; o < g->c2; o++)
        for (c = 0; c < g->c1; c++)
            for (t = 0; t < k2k2; t++) {
                float s = sp->bg[c] * sp->tsum[(size_t)o * k2k2 + t];
                for (j = 0; j < NN_SPARSE_CHUNKS; j++)
                    s += sp->dwt[(size_t)j * chunk + (t * (size_t)g->c1 + (size_t)c) * (size_t)g->c2p + (size_t)o];
                dw2[((size_t)o * (size_t)g->c1 + (size_t)c) * k2k2 + t] += s;
            }
}

/* conv1's gradients: the bias from every conv1 output (the background cells through the total
 * of pool1's gradient over all cells), the weights from the non-zero pixels. */
static void nn_sparse_conv1_grads(struct flowpic__sparse *sp, const flowpic_net *net, int batch, float *dw1,
                                  float *db1)
{
    const nn_sparse_geom *g = &sp->g;
    const float *w2 = net->params + net->layers[NN_SPARSE_OUT].weight_offset;
    const size_t k1k1 = (size_t)g->k1 * (size_t)g->k1, k2k2 = (size_t)g->k2 * (size_t)g->k2, c1p = (size_t)g->c1p;
    size_t i, k, background = 0;
    int c, o, n;
    memset(sp->dw1, 0, (size_t)g->c1 * k1k1 * sizeof(float));
    for (n = 0; n < batch; n++) background += (size_t)g->ph * (size_t)g->pw - sp->cell_n[n];
    for (c = 0; c < g->c1; c++) {
        /* pool1's gradient summed over all cells and samples = sum of w2 * tsum; a background
         * cell passes it on when its value ReLU(b1) is positive (with no background cell in
         * the batch, the difference below would only be rounding noise) */
        const int bg_on = sp->bg[c] > 0.0f && background > 0;
        float total = 0.0f, s = 0.0f;
        for (o = 0; o < g->c2; o++)
            for (k = 0; k < k2k2; k++)
                total += w2[((size_t)o * (size_t)g->c1 + (size_t)c) * k2k2 + k] * sp->tsum[(size_t)o * k2k2 + k];
        for (n = 0; n < batch; n++)
            for (i = sp->cell_off[n]; i < sp->cell_off[n] + sp->cell_n[n]; i++) {
                const int on = sp->cell_route[i * c1p + (size_t)c] != NN_NO_ROUTE;
                if (on != bg_on) s += sp->cell_grad[i * c1p + (size_t)c];
            }
        db1[c] += bg_on ? total - s : s;
    }
    for (n = 0; n < batch; n++) {
        const nn_sparse_entry *e = sp->entries + sp->entry_off[n];
        const size_t co = sp->cell_off[n];
        for (i = 0; i < sp->entry_n[n]; i++) {
            const uint16_t *route = sp->cell_route + (co + e[i].cell) * c1p;
            const float *cg = sp->cell_grad + (co + e[i].cell) * c1p;
            for (c = 0; c < g->c1; c++)
                if (route[c] == e[i].sub) sp->dw1[(size_t)c * k1k1 + e[i].kpos] += e[i].value * cg[c];
        }
    }
    for (k = 0; k < (size_t)g->c1 * k1k1; k++) dw1[k] += sp->dw1[k];
}

FLOWPIC_DEF flowpic_result flowpic_net_backward_sparse(flowpic_net *net, flowpic_workspace *ws, int batch)
{
    struct flowpic__sparse *sp = ws ? ws->sparse : NULL;
    const flowpic_layer *L1, *L2;
    const float *dy;
    size_t chunk;
    int nt;
    if (!net || !sp || nn_backward_check(net, ws, batch, 1) != FLOWPIC_OK) return FLOWPIC_ERR_ARG;
    L1 = &net->layers[0];
    L2 = &net->layers[NN_SPARSE_OUT];
    chunk = (size_t)sp->g.k2 * (size_t)sp->g.k2 * (size_t)sp->g.c1 * (size_t)sp->g.c2p;
    nt = nn_threads(ws);
    dy = nn_backward_layers(net, ws, NULL, batch, NN_SPARSE_OUT + 1);
    nn_sparse_sums(sp, dy, batch, net->grads + L2->bias_offset, nt);
    NN_OMP(parallel for num_threads(nt) schedule(dynamic, 1) if(batch > 1))
    for (int j = 0; j < NN_SPARSE_CHUNKS; j++) {
        float *dwt = sp->dwt + (size_t)j * chunk;
        memset(dwt, 0, chunk * sizeof(float));
        nn_sparse_cells_backward(sp, dy, j * batch / NN_SPARSE_CHUNKS, (j + 1) * batch / NN_SPARSE_CHUNKS, dwt);
    }
    nn_sparse_conv2_dw(sp, net->grads + L2->weight_offset);
    nn_sparse_conv1_grads(sp, net, batch, net->grads + L1->weight_offset, net->grads + L1->bias_offset);
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_net_predict_sparse(const flowpic_net *net, flowpic_workspace *ws,
                                                      const flowpic_picture *pics, flowpic_transform transform,
                                                      int batch, float *probs_out)
{
    flowpic_result r = flowpic_net_forward_sparse(net, ws, pics, transform, batch, FLOWPIC_MODE_EVAL, NULL);
    if (r != FLOWPIC_OK) return r;
    nn_softmax_ce(ws->acts + ws->act_offset[net->num_layers - 1], ws->probs, NULL, NULL, batch, net->num_classes);
    if (probs_out) memcpy(probs_out, ws->probs, (size_t)batch * (size_t)net->num_classes * sizeof(float));
    return FLOWPIC_OK;
}

/* ---------------------------------------------------------------- adam */

FLOWPIC_DEF flowpic_result flowpic_adam_step(flowpic_net *net, double lr, double beta1, double beta2,
                                             double eps)
{
    float step_size, bc2_sqrt, b1, b2, one_b1, one_b2, e;
    double t;
    long long i, np;
    if (!net || !net->params) return FLOWPIC_ERR_ARG;
    if (!(lr >= 0.0 && lr < 1e30) || !(beta1 >= 0.0 && beta1 < 1.0) || !(beta2 >= 0.0 && beta2 < 1.0)
        || !(eps >= 0.0 && eps < 1e30))
        return FLOWPIC_ERR_ARG;
    net->adam_t++;
    t = (double)net->adam_t;
    /* the scalars as PyTorch forms them (in double, then used as float32 scalars) */
    step_size = (float)(lr / (1.0 - pow(beta1, t)));
    bc2_sqrt = (float)sqrt(1.0 - pow(beta2, t));
    b1 = (float)beta1; b2 = (float)beta2;
    one_b1 = (float)(1.0 - beta1); one_b2 = (float)(1.0 - beta2);
    e = (float)eps;
    np = (long long)net->num_params;
    for (i = 0; i < np; i++) {
        const float g = net->grads[i];
        const float m = b1 * net->adam_m[i] + one_b1 * g;
        const float v = b2 * net->adam_v[i] + one_b2 * g * g;
        net->adam_m[i] = m;
        net->adam_v[i] = v;
        net->params[i] -= step_size * m / (sqrtf(v) / bc2_sqrt + e);
    }
    return FLOWPIC_OK;
}

/* ==========================================================================================
 * >>model  model files (format: MODEL_FORMAT.md)
 * ========================================================================================== */

static const unsigned char nn_model_magic[8] = {0x46, 0x50, 0x4D, 0x4F, 0x44, 0x45, 0x4C, 0x1A}; /* "FPMODEL" 1A */
#define NN_MODEL_HEADER 48   /* bytes before the layer records */
#define NN_MODEL_LAYER  20   /* bytes per layer record */


static void nn_put_u16(unsigned char *p, uint32_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void nn_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static void nn_put_u64(unsigned char *p, uint64_t v) { nn_put_u32(p, (uint32_t)v); nn_put_u32(p + 4, (uint32_t)(v >> 32)); }
static void nn_put_f32(unsigned char *p, float f) { uint32_t u; memcpy(&u, &f, 4); nn_put_u32(p, u); }
static uint32_t nn_get_u16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t nn_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t nn_get_u64(const unsigned char *p) { return (uint64_t)nn_get_u32(p) | (uint64_t)nn_get_u32(p + 4) << 32; }
static float nn_get_f32(const unsigned char *p) { uint32_t u = nn_get_u32(p); float f; memcpy(&f, &u, 4); return f; }

/* The description a built layer came from (the last dense layer's size made explicit). */
static flowpic_layer_desc nn_layer_to_desc(const flowpic_layer *L)
{
    const int sized = L->kind == FLOWPIC_LAYER_CONV || L->kind == FLOWPIC_LAYER_DENSE;
    return nn_desc(L->kind, sized ? L->out_c : 0, L->kernel, L->stride, L->pad_before, L->pad_after, L->dropout_p);
}

/* bytes from the start up to the end of the config blob, before padding */
static int nn_model_meta_len(const flowpic_net *net, const char *const *names, size_t config_len, size_t *out)
{
    size_t n = NN_MODEL_HEADER + (size_t)net->num_layers * NN_MODEL_LAYER + 8 + 4, i;
    for (i = 0; i < (size_t)net->num_classes; i++) {
        size_t l;
        if (!names[i]) return 0;
        l = strlen(names[i]);
        if (l < 1 || l > FLOWPIC_MODEL_MAX_NAME) return 0;
        n += 2 + l;
    }
    if (config_len > FLOWPIC_MODEL_MAX_CONFIG) return 0;
    *out = n + config_len;
    return 1;
}

FLOWPIC_DEF flowpic_result flowpic_model_save_mem(const flowpic_net *net, const char *const *class_names,
                                                  const void *config, size_t config_len, unsigned flags,
                                                  unsigned char *buf, size_t cap, size_t *len)
{
    const int adam = (flags & FLOWPIC_MODEL_WITH_ADAM) != 0;
    size_t meta, total, pos, i;
    int l;
    if (!net || !net->params || !class_names || !len || (config_len && !config)
        || (flags & ~FLOWPIC_MODEL_WITH_ADAM) != 0)
        return FLOWPIC_ERR_ARG;
    if (!nn_model_meta_len(net, class_names, config_len, &meta)) return FLOWPIC_ERR_ARG;
    /* num_params <= FLOWPIC_NN_MAX_PARAMS (2^26): 12 bytes each cannot overflow */
    total = nn_round_up(meta, 4) + 4 * net->num_params + (adam ? 8 + 8 * net->num_params : 0) + 4;
    *len = total;
    if (total > (size_t)FLOWPIC_MAX_MODEL_BYTES) return FLOWPIC_ERR_MODEL_LIMIT;
    if (!buf) return FLOWPIC_OK;
    if (cap < total) return FLOWPIC_ERR_LIMIT;
    memcpy(buf, nn_model_magic, 8);
    nn_put_u32(buf + 8, FLOWPIC_MODEL_VERSION);
    nn_put_u32(buf + 12, adam ? FLOWPIC_MODEL_WITH_ADAM : 0u);
    nn_put_u64(buf + 16, (uint64_t)total);
    nn_put_u32(buf + 24, (uint32_t)net->arch);
    nn_put_u32(buf + 28, (uint32_t)net->in_c);
    nn_put_u32(buf + 32, (uint32_t)net->in_h);
    nn_put_u32(buf + 36, (uint32_t)net->in_w);
    nn_put_u32(buf + 40, (uint32_t)net->num_classes);
    nn_put_u32(buf + 44, (uint32_t)net->num_layers);
    pos = NN_MODEL_HEADER;
    for (l = 0; l < net->num_layers; l++, pos += NN_MODEL_LAYER) {
        const flowpic_layer_desc d = nn_layer_to_desc(&net->layers[l]);
        buf[pos] = (unsigned char)d.kind;
        buf[pos + 1] = 0;
        nn_put_u16(buf + pos + 2, (uint32_t)d.kernel);
        nn_put_u16(buf + pos + 4, (uint32_t)d.stride);
        nn_put_u16(buf + pos + 6, (uint32_t)d.pad_before);
        nn_put_u16(buf + pos + 8, (uint32_t)d.pad_after);
        nn_put_u16(buf + pos + 10, 0);
        nn_put_u32(buf + pos + 12, (uint32_t)d.size);
        nn_put_f32(buf + pos + 16, d.dropout_p);
    }
    nn_put_u64(buf + pos, (uint64_t)net->num_params);
    pos += 8;
    for (l = 0; l < net->num_classes; l++) {
        size_t n = strlen(class_names[l]);
        nn_put_u16(buf + pos, (uint32_t)n);
        memcpy(buf + pos + 2, class_names[l], n);
        pos += 2 + n;
    }
    nn_put_u32(buf + pos, (uint32_t)config_len);
    if (config_len) memcpy(buf + pos + 4, config, config_len);
    pos += 4 + config_len;
    while (pos % 4) buf[pos++] = 0;
    for (i = 0; i < net->num_params; i++, pos += 4) nn_put_f32(buf + pos, net->params[i]);
    if (adam) {
        nn_put_u64(buf + pos, net->adam_t);
        pos += 8;
        for (i = 0; i < net->num_params; i++, pos += 4) nn_put_f32(buf + pos, net->adam_m[i]);
        for (i = 0; i < net->num_params; i++, pos += 4) nn_put_f32(buf + pos, net->adam_v[i]);
    }
    nn_put_u32(buf + pos, flowpic_crc32(0, buf, pos));
    FLOWPIC_ASSERT(pos + 4 == total);
    return FLOWPIC_OK;
}

/* "what" + optional ": got G" + optional ", limit/expected E", without stdio */
static void nn_append(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(dst);
    while (*src && n + 1 < cap) dst[n++] = *src++;
    dst[n] = '\0';
}

static void nn_append_u64(char *dst, size_t cap, uint64_t v)
{
    char digits[24];
    int nd = 0;
    do { digits[nd++] = (char)('0' + (int)(v % 10)); v /= 10; } while (v);
    while (nd > 0) {
        char one[2];
        one[0] = digits[--nd];
        one[1] = '\0';
        nn_append(dst, cap, one);
    }
}

static flowpic_result nn_model_fail(flowpic_error *err, flowpic_result code, uint64_t offset,
                                    const char *what, const char *value_label, uint64_t value,
                                    const char *limit_label, uint64_t limit)
{
    if (!err) return code;
    err->code = code;
    err->offset = offset;
    err->reason[0] = '\0';
    nn_append(err->reason, sizeof err->reason, what);
    if (value_label) {
        nn_append(err->reason, sizeof err->reason, value_label);
        nn_append_u64(err->reason, sizeof err->reason, value);
    }
    if (limit_label) {
        nn_append(err->reason, sizeof err->reason, limit_label);
        nn_append_u64(err->reason, sizeof err->reason, limit);
    }
    return code;
}

#define NN_FAIL(code, off, what) nn_model_fail(err, code, (uint64_t)(off), what, NULL, 0, NULL, 0)
#define NN_FAIL_V(code, off, what, v) nn_model_fail(err, code, (uint64_t)(off), what, " ", (uint64_t)(v), NULL, 0)
#define NN_FAIL_VL(code, off, what, v, lbl, lim) \
    nn_model_fail(err, code, (uint64_t)(off), what, " ", (uint64_t)(v), lbl, (uint64_t)(lim))

/* Checks a u32 header field in [1, max]: 0 is corrupt, above max is a limit. */
static flowpic_result nn_model_dim(flowpic_error *err, const unsigned char *p, size_t off,
                                   const char *what, uint32_t max, int *out)
{
    uint32_t v = nn_get_u32(p + off);
    if (v == 0) return nn_model_fail(err, FLOWPIC_ERR_FORMAT, (uint64_t)off, what, " is ", 0, NULL, 0);
    if (v > max) return NN_FAIL_VL(FLOWPIC_ERR_LIMIT, off, what, v, " > limit ", max);
    *out = (int)v;
    return FLOWPIC_OK;
}

/* Everything up to the parameters: header, layer table (built into *net, no allocation),
 * names and config located (offsets into p). */
static flowpic_result nn_model_parse_meta(const unsigned char *p, size_t len, flowpic_net *net,
                                          size_t *names_off, size_t *config_off, size_t *config_len,
                                          size_t *params_off, int *adam, flowpic_error *err)
{
    flowpic_layer_desc desc[FLOWPIC_NN_MAX_LAYERS];
    uint32_t arch, flags, version, v;
    int in_c = 0, in_h = 0, in_w = 0, m = 0, nl = 0, l, bad = -1;
    size_t pos, need;
    uint64_t stored_len, np;
    flowpic_result r;
    if (len < 8 || memcmp(p, nn_model_magic, 8) != 0)
        return NN_FAIL(FLOWPIC_ERR_FORMAT, 0, "not a flowpic model (bad magic)");
    if (len < NN_MODEL_HEADER + 4) return NN_FAIL_V(FLOWPIC_ERR_FORMAT, len, "truncated header: bytes", len);
    version = nn_get_u32(p + 8);
    if (version != FLOWPIC_MODEL_VERSION) return NN_FAIL_V(FLOWPIC_ERR_FORMAT, 8, "unsupported version", version);
    flags = nn_get_u32(p + 12);
    if (flags & ~FLOWPIC_MODEL_WITH_ADAM) return NN_FAIL_V(FLOWPIC_ERR_FORMAT, 12, "unknown flags", flags);
    *adam = (flags & FLOWPIC_MODEL_WITH_ADAM) != 0;
    stored_len = nn_get_u64(p + 16);
    if (stored_len != (uint64_t)len)
        return NN_FAIL_VL(FLOWPIC_ERR_FORMAT, 16, "length field", stored_len, " != model bytes ", len);
    if (nn_get_u32(p + len - 4) != flowpic_crc32(0, p, len - 4))
        return NN_FAIL_VL(FLOWPIC_ERR_FORMAT, len - 4, "CRC-32 mismatch: stored", nn_get_u32(p + len - 4),
                          ", computed ", flowpic_crc32(0, p, len - 4));
    arch = nn_get_u32(p + 24);
    if (arch > (uint32_t)FLOWPIC_ARCH_MINI) return NN_FAIL_V(FLOWPIC_ERR_FORMAT, 24, "unknown arch", arch);
    if ((r = nn_model_dim(err, p, 28, "input channels", FLOWPIC_NN_MAX_CHANNELS, &in_c)) != FLOWPIC_OK) return r;
    if ((r = nn_model_dim(err, p, 32, "input height", FLOWPIC_NN_MAX_DIM, &in_h)) != FLOWPIC_OK) return r;
    if ((r = nn_model_dim(err, p, 36, "input width", FLOWPIC_NN_MAX_DIM, &in_w)) != FLOWPIC_OK) return r;
    if ((r = nn_model_dim(err, p, 40, "class count", FLOWPIC_NN_MAX_CLASSES, &m)) != FLOWPIC_OK) return r;
    if (m < 2) return NN_FAIL_V(FLOWPIC_ERR_FORMAT, 40, "class count below 2:", m);
    if ((r = nn_model_dim(err, p, 44, "layer count", FLOWPIC_NN_MAX_LAYERS, &nl)) != FLOWPIC_OK) return r;
    pos = NN_MODEL_HEADER;
    if (len - 4 - pos < (size_t)nl * NN_MODEL_LAYER + 8)
        return NN_FAIL(FLOWPIC_ERR_FORMAT, pos, "truncated layer table");
    for (l = 0; l < nl; l++, pos += NN_MODEL_LAYER) {
        const unsigned char *q = p + pos;
        uint32_t size = nn_get_u32(q + 12);
        float dp = nn_get_f32(q + 16);
        if (q[0] < FLOWPIC_LAYER_CONV || q[0] > FLOWPIC_LAYER_DENSE)
            return NN_FAIL_V(FLOWPIC_ERR_FORMAT, pos, "unknown layer kind", q[0]);
        if (q[1] != 0 || nn_get_u16(q + 10) != 0) return NN_FAIL(FLOWPIC_ERR_FORMAT, pos, "reserved layer bytes not zero");
        if (size > (uint32_t)FLOWPIC_NN_MAX_CHANNELS)
            return NN_FAIL_VL(FLOWPIC_ERR_LIMIT, pos + 12, "layer size", size, " > limit ", FLOWPIC_NN_MAX_CHANNELS);
        if (!(dp >= 0.0f && dp < 1.0f)) return NN_FAIL(FLOWPIC_ERR_FORMAT, pos + 16, "dropout probability outside [0, 1)");
        desc[l] = nn_desc((flowpic_layer_kind)q[0], (int)size, (int)nn_get_u16(q + 2), (int)nn_get_u16(q + 4),
                          (int)nn_get_u16(q + 6), (int)nn_get_u16(q + 8), dp);
    }
    r = nn_net_build(net, desc, nl, in_c, in_h, in_w, m, &bad);
    if (r != FLOWPIC_OK)
        return NN_FAIL_V(r == FLOWPIC_ERR_LIMIT ? FLOWPIC_ERR_LIMIT : FLOWPIC_ERR_FORMAT,
                         NN_MODEL_HEADER + (size_t)(bad < 0 ? 0 : bad) * NN_MODEL_LAYER,
                         "layer table impossible or beyond limits at layer", bad < 0 ? 0 : bad);
    if (arch != (uint32_t)FLOWPIC_ARCH_CUSTOM) {
        flowpic_layer_desc pre[FLOWPIC_NN_MAX_LAYERS];
        int n = flowpic_net_preset((flowpic_arch)arch, in_h, pre), same = n == nl && in_c == 1 && in_w == in_h;
        for (l = 0; l < n && same; l++) {
            const flowpic_layer_desc b = nn_layer_to_desc(&net->layers[l]);
            if (pre[l].size == 0 && l == n - 1) pre[l].size = m;
            same = pre[l].kind == b.kind && pre[l].size == b.size && pre[l].kernel == b.kernel
                   && pre[l].stride == b.stride && pre[l].pad_before == b.pad_before
                   && pre[l].pad_after == b.pad_after && pre[l].dropout_p == b.dropout_p;
        }
        if (!same) return NN_FAIL(FLOWPIC_ERR_FORMAT, 24, "layer table does not match the named arch");
        net->arch = (flowpic_arch)arch;
    }
    np = nn_get_u64(p + pos);
    if (np != (uint64_t)net->num_params)
        return NN_FAIL_VL(FLOWPIC_ERR_FORMAT, pos, "parameter count", np, " != layer table's ", net->num_params);
    pos += 8;
    *names_off = pos;
    for (l = 0; l < m; l++) {
        if (len - 4 - pos < 2) return NN_FAIL_V(FLOWPIC_ERR_FORMAT, pos, "truncated class name, index", l);
        v = nn_get_u16(p + pos);
        if (v == 0) return NN_FAIL_V(FLOWPIC_ERR_FORMAT, pos, "empty class name, index", l);
        if (v > FLOWPIC_MODEL_MAX_NAME)
            return NN_FAIL_VL(FLOWPIC_ERR_LIMIT, pos, "class name length", v, " > limit ", FLOWPIC_MODEL_MAX_NAME);
        if (len - 4 - pos - 2 < v) return NN_FAIL_V(FLOWPIC_ERR_FORMAT, pos, "truncated class name, index", l);
        if (memchr(p + pos + 2, 0, v)) return NN_FAIL_V(FLOWPIC_ERR_FORMAT, pos + 2, "NUL byte in class name, index", l);
        pos += 2 + v;
    }
    if (len - 4 - pos < 4) return NN_FAIL(FLOWPIC_ERR_FORMAT, pos, "truncated config length");
    v = nn_get_u32(p + pos);
    if (v > FLOWPIC_MODEL_MAX_CONFIG)
        return NN_FAIL_VL(FLOWPIC_ERR_LIMIT, pos, "config length", v, " > limit ", FLOWPIC_MODEL_MAX_CONFIG);
    if (len - 4 - pos - 4 < v) return NN_FAIL_V(FLOWPIC_ERR_FORMAT, pos, "truncated config blob of bytes", v);
    *config_off = pos + 4;
    *config_len = v;
    pos += 4 + v;
    for (; pos % 4; pos++)
        if (pos >= len - 4 || p[pos] != 0) return NN_FAIL(FLOWPIC_ERR_FORMAT, pos, "padding byte not zero or missing");
    need = 4 * net->num_params + (*adam ? 8 + 8 * net->num_params : 0);
    if (len - 4 - pos != need)
        return NN_FAIL_VL(FLOWPIC_ERR_FORMAT, pos, "parameter section of bytes", len - 4 - pos, ", expected ", need);
    *params_off = pos;
    return FLOWPIC_OK;
}

static int nn_finite(float f) { return f == f && f - f == 0.0f; }

FLOWPIC_DEF flowpic_result flowpic_model_load_mem(flowpic_net *net, flowpic_model_meta *meta,
                                                  const void *data, size_t len, flowpic_error *err)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t names_off = 0, config_off = 0, config_len = 0, params_off = 0, pos, i, name_bytes, block_len;
    int adam = 0, l;
    flowpic_result r;
    if (err) { err->code = FLOWPIC_OK; err->offset = 0; err->reason[0] = '\0'; }
    if (meta) memset(meta, 0, sizeof *meta);
    if (!net) return NN_FAIL(FLOWPIC_ERR_ARG, 0, "no net");
    memset(net, 0, sizeof *net);
    if (!data) return NN_FAIL(FLOWPIC_ERR_ARG, 0, "no data");
    if (len > (size_t)FLOWPIC_MAX_MODEL_BYTES)
        return NN_FAIL_VL(FLOWPIC_ERR_MODEL_LIMIT, 0, "model of bytes", len, " > FLOWPIC_MAX_MODEL_BYTES ", FLOWPIC_MAX_MODEL_BYTES);
    r = nn_model_parse_meta(p, len, net, &names_off, &config_off, &config_len, &params_off, &adam, err);
    if (r != FLOWPIC_OK) { memset(net, 0, sizeof *net); return r; }
    /* values before any allocation */
    for (i = 0, pos = params_off; i < net->num_params; i++, pos += 4)
        if (!nn_finite(nn_get_f32(p + pos)))
            { r = NN_FAIL_V(FLOWPIC_ERR_FORMAT, pos, "parameter not finite, index", i); memset(net, 0, sizeof *net); return r; }
    if (adam) {
        size_t base = params_off + 4 * net->num_params + 8;
        for (i = 0, pos = base; i < 2 * net->num_params; i++, pos += 4) {
            float f = nn_get_f32(p + pos);
            if (!nn_finite(f) || (i >= net->num_params && f < 0.0f)) {
                r = NN_FAIL_V(FLOWPIC_ERR_FORMAT, pos, "Adam moment not finite (or negative v), index", i);
                memset(net, 0, sizeof *net);
                return r;
            }
        }
    }
    r = nn_net_alloc(net);
    if (r != FLOWPIC_OK) return NN_FAIL(r, 0, "cannot allocate the parameters");
    for (i = 0, pos = params_off; i < net->num_params; i++, pos += 4) net->params[i] = nn_get_f32(p + pos);
    if (adam) {
        net->adam_t = nn_get_u64(p + pos);
        pos += 8;
        for (i = 0; i < net->num_params; i++, pos += 4) net->adam_m[i] = nn_get_f32(p + pos);
        for (i = 0; i < net->num_params; i++, pos += 4) net->adam_v[i] = nn_get_f32(p + pos);
    }
    if (!meta) return FLOWPIC_OK;
    /* one block: name pointers, the names with their NULs, the config blob; all bounded by len */
    name_bytes = config_off - 4 - names_off;          /* 2-byte lengths + name bytes */
    block_len = ((size_t)net->num_classes + 1) * sizeof(char *) + name_bytes + config_len + 1;
    {
        unsigned char *block = (unsigned char *)FLOWPIC_MALLOC(block_len);
        const char **ptrs = (const char **)(void *)block;
        char *text;
        if (!block) { /* (no arithmetic on the null pointer: found by the fault test under UBSan) */
            flowpic_net_free(net);
            return NN_FAIL(FLOWPIC_ERR_NOMEM, 0, "cannot allocate the class names");
        }
        text = (char *)(block + ((size_t)net->num_classes + 1) * sizeof(char *));
        for (l = 0, pos = names_off; l < net->num_classes; l++) {
            size_t n = nn_get_u16(p + pos);
            memcpy(text, p + pos + 2, n);
            text[n] = '\0';
            ptrs[l] = text;
            text += n + 1;
            pos += 2 + n;
        }
        ptrs[net->num_classes] = NULL;
        if (config_len) memcpy(text, p + config_off, config_len);
        meta->num_classes = net->num_classes;
        meta->class_names = ptrs;
        meta->config = (const unsigned char *)text;
        meta->config_len = config_len;
        meta->block = block;
    }
    return FLOWPIC_OK;
}

FLOWPIC_DEF void flowpic_model_meta_free(flowpic_model_meta *meta)
{
    if (!meta) return;
    if (meta->block) FLOWPIC_FREE(meta->block);
    memset(meta, 0, sizeof *meta);
}

#undef NN_FAIL
#undef NN_FAIL_V
#undef NN_FAIL_VL

/* ---- train -------------------------------------------------------------------------------------- */

#define FLOWPIC__PREP_BYTES 56u
#define FLOWPIC__PREP_VERSION 1u

FLOWPIC_DEF void flowpic_model_free(flowpic_model *m)
{
    uint32_t i;
    flowpic_net_free(&m->net);
    for (i = 0; i < m->n_classes && m->classes; i++) FLOWPIC_FREE(m->classes[i]);
    FLOWPIC_FREE(m->classes);
    memset(m, 0, sizeof *m);
}

static flowpic_result flowpic__copy_classes(flowpic_model *m, const char *const *classes, uint32_t n)
{
    uint32_t i;
    m->classes = (char **)FLOWPIC_MALLOC((size_t)(n ? n : 1) * sizeof *m->classes);
    if (!m->classes) return FLOWPIC_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        size_t len = strlen(classes[i]);
        m->classes[i] = (char *)FLOWPIC_MALLOC(len + 1);
        if (!m->classes[i]) return FLOWPIC_ERR_NOMEM;
        memcpy(m->classes[i], classes[i], len + 1);
        m->n_classes = i + 1;
    }
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_model_init(flowpic_model *m, flowpic_arch arch, const flowpic_prep *prep,
                                              const char *const *classes, uint32_t n_classes, flowpic_rng *rng)
{
    flowpic_result res;
    memset(m, 0, sizeof *m);
    if (flowpic_block_config_check(&prep->blocks) != FLOWPIC_OK || (unsigned)prep->transform >= FLOWPIC_VALUE_COUNT)
        return FLOWPIC_ERR_ARG;
    m->prep = *prep;
    res = flowpic_net_init(&m->net, arch, (int)prep->res, (int)n_classes);
    if (res == FLOWPIC_OK) res = flowpic__copy_classes(m, classes, n_classes);
    if (res != FLOWPIC_OK) {
        flowpic_model_free(m);
        return res;
    }
    flowpic_net_init_glorot(&m->net, rng);
    return FLOWPIC_OK;
}

static void flowpic__prep_encode(const flowpic_prep *p, uint8_t *w)
{
    const flowpic_block_config *b = &p->blocks;
    w = flowpic__w_le(w, FLOWPIC__PREP_VERSION, 4);
    w = flowpic__w_le(w, p->res, 4);
    w = flowpic__w_le(w, (uint64_t)p->transform, 4);
    w = flowpic__w_le(w, (uint64_t)b->preset, 4);
    w = flowpic__w_le(w, (uint64_t)b->size_policy, 4);
    w = flowpic__w_le(w, (uint64_t)(b->bidirectional != 0), 4);
    w = flowpic__w_le(w, b->min_packets, 4);
    w = flowpic__w_le(w, b->max_size, 4);
    w = flowpic__w_le(w, b->block_ns, 8);
    w = flowpic__w_le(w, b->step_ns, 8);
    flowpic__w_le(w, b->idle_timeout_ns, 8);
}

static uint64_t flowpic__r_le(const uint8_t **r, int bytes)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < bytes; i++) v |= (uint64_t)(*r)[i] << (8 * i);
    *r += bytes;
    return v;
}

/* 1 when the blob is a valid preprocessing configuration for a net of input res. */
static int flowpic__prep_decode(flowpic_prep *p, const uint8_t *r, size_t len, int net_res)
{
    flowpic_block_config *b = &p->blocks;
    uint64_t version, transform, preset, policy, bidir;
    if (len != FLOWPIC__PREP_BYTES) return 0;
    memset(p, 0, sizeof *p);
    version = flowpic__r_le(&r, 4);
    p->res = (uint32_t)flowpic__r_le(&r, 4);
    transform = flowpic__r_le(&r, 4);
    preset = flowpic__r_le(&r, 4);
    policy = flowpic__r_le(&r, 4);
    bidir = flowpic__r_le(&r, 4);
    b->min_packets = (uint32_t)flowpic__r_le(&r, 4);
    b->max_size = (uint32_t)flowpic__r_le(&r, 4);
    b->block_ns = flowpic__r_le(&r, 8);
    b->step_ns = flowpic__r_le(&r, 8);
    b->idle_timeout_ns = flowpic__r_le(&r, 8);
    b->max_flows = FLOWPIC_DEFAULT_MAX_FLOWS;
    if (version != FLOWPIC__PREP_VERSION || transform >= FLOWPIC_VALUE_COUNT || preset >= FLOWPIC_PRESET_COUNT ||
        policy > FLOWPIC_SIZE_CLIP || bidir > 1 || (int)p->res != net_res)
        return 0;
    p->transform = (flowpic_transform)transform;
    b->preset = (flowpic_preset)preset;
    b->size_policy = (flowpic_size_policy)policy;
    b->bidirectional = (int)bidir;
    return flowpic_block_config_check(b) == FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_model_to_memory(const flowpic_model *m, uint8_t **data, size_t *size)
{
    uint8_t prep[FLOWPIC__PREP_BYTES], *buf;
    size_t len = 0;
    flowpic_result res;
    flowpic__prep_encode(&m->prep, prep);
    res = flowpic_model_save_mem(&m->net, (const char *const *)m->classes, prep, sizeof prep, 0, 0, 0, &len);
    if (res != FLOWPIC_OK && res != FLOWPIC_ERR_LIMIT) return res;
    buf = (uint8_t *)FLOWPIC_MALLOC(len ? len : 1);
    if (!buf) return FLOWPIC_ERR_NOMEM;
    res = flowpic_model_save_mem(&m->net, (const char *const *)m->classes, prep, sizeof prep, 0, buf, len, &len);
    if (res != FLOWPIC_OK) {
        FLOWPIC_FREE(buf);
        return res;
    }
    *data = buf;
    *size = len;
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_model_from_memory(flowpic_model *m, const uint8_t *data, size_t size,
                                                     flowpic_error *err)
{
    flowpic_model_meta meta;
    flowpic_result res;
    memset(m, 0, sizeof *m);
    res = flowpic_model_load_mem(&m->net, &meta, data, size, err);
    if (res != FLOWPIC_OK) return res;
    if (!flowpic__prep_decode(&m->prep, meta.config, meta.config_len, m->net.in_h)) {
        flowpic__error(err, FLOWPIC_ERR_FORMAT, 0, "the preprocessing configuration is missing or invalid");
        res = FLOWPIC_ERR_FORMAT;
    }
    if (res == FLOWPIC_OK) res = flowpic__copy_classes(m, meta.class_names, (uint32_t)meta.num_classes);
    flowpic_model_meta_free(&meta);
    if (res != FLOWPIC_OK) {
        if (res == FLOWPIC_ERR_NOMEM) flowpic__error(err, res, 0, "out of memory");
        flowpic_model_free(m);
    }
    return res;
}

FLOWPIC_DEF int flowpic_prep_accepts(const flowpic_prep *prep, const flowpic_block_config *blocks)
{
    return flowpic__same_config(&prep->blocks, blocks);
}

FLOWPIC_DEF flowpic_result flowpic_model_input(const flowpic_model *m, const flowpic_dataset *ds, size_t i,
                                               flowpic_picture *pic, float *out)
{
    flowpic_result res = flowpic_picture_build(pic, ds->config.preset, ds->config.block_ns,
                                               flowpic_dataset_block_packets(ds, i), ds->blocks[i].n_packets,
                                               m->prep.res);
    if (res == FLOWPIC_OK) flowpic_picture_render(pic, m->prep.transform, out);
    return res;
}

/* A batch's input: the sparse pictures when the net takes them (flowpic_net_sparse_ok: the
 * presets), else their dense renders (pic is the scratch picture). */
typedef struct flowpic__batch {
    int sparse;
    flowpic_picture *pics;  /* [batch] sparse */
    float *dense;           /* [batch][res][res] dense */
    flowpic_picture pic;
} flowpic__batch;

static flowpic_result flowpic__batch_init(flowpic__batch *bt, const flowpic_model *m, int batch)
{
    size_t px = (size_t)m->prep.res * m->prep.res;
    memset(bt, 0, sizeof *bt);
    if (batch <= 0) return FLOWPIC_ERR_ARG;
    bt->sparse = flowpic_net_sparse_ok(&m->net);
    if (bt->sparse) {
        bt->pics = (flowpic_picture *)FLOWPIC_MALLOC((size_t)batch * sizeof *bt->pics);
        if (bt->pics) memset(bt->pics, 0, (size_t)batch * sizeof *bt->pics);
        return bt->pics ? FLOWPIC_OK : FLOWPIC_ERR_NOMEM;
    }
    if (px > ((size_t)-1 / sizeof(float)) / (size_t)batch) return FLOWPIC_ERR_NOMEM;
    bt->dense = (float *)FLOWPIC_MALLOC(px * (size_t)batch * sizeof(float));
    return bt->dense ? FLOWPIC_OK : FLOWPIC_ERR_NOMEM;
}

static void flowpic__batch_free(flowpic__batch *bt, int batch)
{
    int i;
    if (bt->pics)
        for (i = 0; i < batch; i++) flowpic_picture_free(&bt->pics[i]);
    FLOWPIC_FREE(bt->pics);
    FLOWPIC_FREE(bt->dense);
    flowpic_picture_free(&bt->pic);
}

/* The pictures of blocks[0 .. n). */
static flowpic_result flowpic__batch_fill(flowpic__batch *bt, const flowpic_model *m, const flowpic_dataset *ds,
                                          const size_t *blocks, size_t n)
{
    size_t i, px = (size_t)m->prep.res * m->prep.res;
    flowpic_result res = FLOWPIC_OK;
    for (i = 0; i < n && res == FLOWPIC_OK; i++) {
        if (bt->sparse)
            res = flowpic_picture_build(&bt->pics[i], ds->config.preset, ds->config.block_ns,
                                        flowpic_dataset_block_packets(ds, blocks[i]), ds->blocks[blocks[i]].n_packets,
                                        m->prep.res);
        else
            res = flowpic_model_input(m, ds, blocks[i], &bt->pic, bt->dense + i * px);
    }
    return res;
}

FLOWPIC_DEF flowpic_result flowpic_model_workspace_init(flowpic_workspace *ws, const flowpic_model *m, int max_batch,
                                                        unsigned flags)
{
    if (flowpic_net_sparse_ok(&m->net)) flags |= FLOWPIC_WS_SPARSE;
    return flowpic_workspace_init(ws, &m->net, max_batch, flags);
}

static flowpic_result flowpic__batch_forward(const flowpic__batch *bt, const flowpic_model *m, flowpic_workspace *ws,
                                             int b, flowpic_mode mode, flowpic_rng *rng)
{
    if (bt->sparse) return flowpic_net_forward_sparse(&m->net, ws, bt->pics, m->prep.transform, b, mode, rng);
    return flowpic_net_forward(&m->net, ws, bt->dense, b, mode, rng);
}

FLOWPIC_DEF flowpic_result flowpic_train_epoch(flowpic_model *m, flowpic_workspace *ws, const flowpic_dataset *ds,
                                               const size_t *blocks, const int *labels, size_t n, int batch,
                                               double lr, flowpic_rng *rng, flowpic_train_progress_fn progress,
                                               void *user, flowpic_epoch_stats *stats)
{
    flowpic__batch bt;
    double loss_sum = 0;
    size_t done;
    flowpic_result res = flowpic__batch_init(&bt, m, batch);
    memset(stats, 0, sizeof *stats);
    for (done = 0; done < n && res == FLOWPIC_OK; done += (size_t)batch) {
        int b = n - done < (size_t)batch ? (int)(n - done) : batch, k, c;
        float loss = 0;
        const float *probs;
        res = flowpic__batch_fill(&bt, m, ds, blocks + done, (size_t)b);
        if (res != FLOWPIC_OK) break;
        flowpic_net_zero_grad(&m->net);
        res = flowpic__batch_forward(&bt, m, ws, b, FLOWPIC_MODE_TRAIN, rng);
        if (res == FLOWPIC_OK) res = flowpic_net_loss(&m->net, ws, labels + done, b, &loss);
        if (res == FLOWPIC_OK)
            res = bt.sparse ? flowpic_net_backward_sparse(&m->net, ws, b) : flowpic_net_backward(&m->net, ws, bt.dense, b);
        if (res == FLOWPIC_OK) res = flowpic_adam_step(&m->net, lr, 0.9, 0.999, 1e-8);
        if (res != FLOWPIC_OK) break;
        probs = flowpic_workspace_probs(ws);
        for (k = 0; k < b; k++) {
            int best = 0;
            for (c = 1; c < m->net.num_classes; c++)
                if (probs[k * m->net.num_classes + c] > probs[k * m->net.num_classes + best]) best = c;
            stats->correct += best == labels[done + (size_t)k];
        }
        loss_sum += (double)loss * b;
        stats->samples += (size_t)b;
        stats->loss = loss_sum / (double)stats->samples;
        if (progress) progress(user, stats->samples, n, stats);
    }
    flowpic__batch_free(&bt, batch);
    return res;
}

FLOWPIC_DEF flowpic_result flowpic_predict_blocks(const flowpic_model *m, flowpic_workspace *ws,
                                                  const flowpic_dataset *ds, const size_t *blocks, size_t n,
                                                  float *probs)
{
    flowpic__batch bt;
    int batch = ws->max_batch;
    size_t done;
    flowpic_result res = flowpic__batch_init(&bt, m, batch);
    for (done = 0; done < n && res == FLOWPIC_OK; done += (size_t)batch) {
        int b = n - done < (size_t)batch ? (int)(n - done) : batch;
        float *out = probs + done * (size_t)m->net.num_classes;
        res = flowpic__batch_fill(&bt, m, ds, blocks + done, (size_t)b);
        if (res == FLOWPIC_OK)
            res = bt.sparse ? flowpic_net_predict_sparse(&m->net, ws, bt.pics, m->prep.transform, b, out)
                            : flowpic_net_predict(&m->net, ws, bt.dense, b, out);
    }
    flowpic__batch_free(&bt, batch);
    return res;
}

FLOWPIC_DEF int flowpic_augment_active(const flowpic_augment *a)
{
    return a->share > 0 && (a->rtt > 0 || a->shift_s > 0 || a->loss_s > 0 || a->thin > 0 || a->truncate_s > 0);
}

/* U(lo, hi) */
static double flowpic__uniform(flowpic_rng *rng, double lo, double hi)
{
    return lo + (hi - lo) * flowpic_rng_uniform(rng);
}

FLOWPIC_DEF uint32_t flowpic_augment_packets(const flowpic_augment *a, uint64_t length_ns, const flowpic_pkt *in,
                                             uint32_t n, flowpic_pkt *out, flowpic_rng *rng)
{
    double length = (double)length_ns, scale = 1, shift = 0, lost = -1, keep_until = length, drop = 0;
    uint32_t i, kept = 0;
    if (!flowpic_augment_active(a) || flowpic_rng_uniform(rng) >= a->share) {
        if (out != in) memmove(out, in, (size_t)n * sizeof *out);
        return n;
    }
    if (a->rtt > 0) scale = flowpic__uniform(rng, 1 - a->rtt, 1 + a->rtt);
    if (a->shift_s > 0) shift = flowpic__uniform(rng, -a->shift_s, a->shift_s) * 1e9;
    if (a->loss_s > 0) lost = flowpic__uniform(rng, 0, length);
    if (a->thin > 0) drop = flowpic__uniform(rng, 0, a->thin);
    if (a->truncate_s > 0 && a->truncate_s * 1e9 < length) keep_until = flowpic__uniform(rng, a->truncate_s * 1e9, length);
    for (i = 0; i < n; i++) {
        double t = (double)FLOWPIC_PKT_OFFSET(in[i]) * scale + shift;
        if (t < 0 || t >= keep_until) continue;
        if (lost >= 0 && fabs(t - lost) <= a->loss_s * 1e9) continue;
        if (drop > 0 && flowpic_rng_uniform(rng) < drop) continue;
        out[kept++] = FLOWPIC_PKT((uint64_t)t, FLOWPIC_PKT_SIZE(in[i]));
    }
    return kept;
}

#ifndef FLOWPIC_NO_STDIO
FLOWPIC_DEF flowpic_result flowpic_model_save(const flowpic_model *m, const char *path, flowpic_error *err)
{
    uint8_t *data = 0;
    size_t size = 0;
    flowpic_result res = flowpic_model_to_memory(m, &data, &size);
    return flowpic__save(res, data, size, path, err);
}

FLOWPIC_DEF flowpic_result flowpic_model_load(flowpic_model *m, const char *path, flowpic_error *err)
{
    uint8_t *data;
    size_t size;
    flowpic_result res = flowpic_read_file(path, FLOWPIC_MAX_MODEL_BYTES, &data, &size, err);
    if (res == FLOWPIC_ERR_LIMIT) { /* the file is larger than FLOWPIC_MAX_MODEL_BYTES */
        res = FLOWPIC_ERR_MODEL_LIMIT;
        if (err) err->code = res;
    }
    if (res != FLOWPIC_OK) {
        memset(m, 0, sizeof *m);
        return res;
    }
    res = flowpic_model_from_memory(m, data, size, err);
    FLOWPIC_FREE(data);
    return res;
}
#endif

/* ---- classifier -------------------------------------------------------------------------------
 * Flows sit in one of two lists, oldest activity first: active (a window may be open) and quiet
 * (every window closed). A packet moves its flow to the active tail. Time passing walks the
 * heads only: an active flow silent for a block length has all its windows closed (a packet now
 * would close them too) and goes quiet; a flow silent for the idle timeout ends. Eviction ends
 * the older of the two heads. Blocks wait in a small data set until the batch is full, then
 * flowpic_predict_blocks classifies them all; the batch is always classified before a flow is
 * removed, since removal moves the last flow's index. */

#define FLOWPIC__NIL 0xFFFFFFFFu
enum { FLOWPIC__ACTIVE = 0, FLOWPIC__QUIET = 1 };

static const char *const flowpic__decision_names[] = {"partial", "final", "flow"};

FLOWPIC_DEF const char *flowpic_decision_state_name(flowpic_decision_state state)
{
    return (unsigned)state <= FLOWPIC_DECISION_FLOW ? flowpic__decision_names[state] : "unknown";
}

/* The first class of the largest probability. */
static uint32_t flowpic__top_class(const float *probs, uint32_t n_classes)
{
    uint32_t c, top = 0;
    for (c = 1; c < n_classes; c++)
        if (probs[c] > probs[top]) top = c;
    return top;
}

FLOWPIC_DEF void flowpic_vote_add(uint32_t *votes, double *sums, const float *probs, uint32_t n_classes)
{
    uint32_t c;
    for (c = 0; c < n_classes; c++) sums[c] += (double)probs[c];
    votes[flowpic__top_class(probs, n_classes)]++;
}

FLOWPIC_DEF uint32_t flowpic_vote_result(const uint32_t *votes, const double *sums, uint32_t n_classes,
                                         flowpic_vote_kind kind, double *confidence)
{
    uint32_t c, best = 0;
    uint64_t n = 0;
    for (c = 0; c < n_classes; c++) n += votes[c];
    for (c = 1; c < n_classes; c++)
        if (kind == FLOWPIC_VOTE_MEAN ? sums[c] > sums[best]
                                      : votes[c] > votes[best] || (votes[c] == votes[best] && sums[c] > sums[best]))
            best = c;
    *confidence = !n ? 0.0 : kind == FLOWPIC_VOTE_MEAN ? sums[best] / (double)n : (double)votes[best] / (double)n;
    return best;
}

FLOWPIC_DEF void flowpic_classifier_config_default(flowpic_classifier_config *config)
{
    memset(config, 0, sizeof *config);
    config->max_flows = FLOWPIC_CLASSIFIER_DEFAULT_FLOWS;
    config->batch = FLOWPIC_CLASSIFIER_DEFAULT_BATCH;
    config->vote = FLOWPIC_VOTE_MAJORITY;
    config->second_thread = 1;
}

static void flowpic__cl_unlink(flowpic_classifier *cl, uint32_t i)
{
    flowpic_clflow *f = &cl->flows[i];
    uint32_t *ends = cl->lists[f->quiet];
    if (f->prev != FLOWPIC__NIL) cl->flows[f->prev].next = f->next;
    else ends[0] = f->next;
    if (f->next != FLOWPIC__NIL) cl->flows[f->next].prev = f->prev;
    else ends[1] = f->prev;
}

static void flowpic__cl_append(flowpic_classifier *cl, uint32_t i, uint32_t quiet)
{
    flowpic_clflow *f = &cl->flows[i];
    uint32_t *ends = cl->lists[quiet];
    f->quiet = quiet;
    f->prev = ends[1];
    f->next = FLOWPIC__NIL;
    if (ends[1] != FLOWPIC__NIL) cl->flows[ends[1]].next = i;
    else ends[0] = i;
    ends[1] = i;
}

/* Flow `from` takes index `to` (after the cutter moved it there): state, links and vote. */
static void flowpic__cl_move(flowpic_classifier *cl, uint32_t from, uint32_t to)
{
    const uint32_t m = cl->model->n_classes;
    flowpic_clflow *f = &cl->flows[from];
    uint32_t *ends = cl->lists[f->quiet];
    if (f->prev != FLOWPIC__NIL) cl->flows[f->prev].next = to;
    else ends[0] = to;
    if (f->next != FLOWPIC__NIL) cl->flows[f->next].prev = to;
    else ends[1] = to;
    cl->flows[to] = *f;
    memcpy(cl->votes + (size_t)to * m, cl->votes + (size_t)from * m, m * sizeof *cl->votes);
    memcpy(cl->sums + (size_t)to * m, cl->sums + (size_t)from * m, m * sizeof *cl->sums);
}

/* Room for `need` flows in the per-flow arrays (doubling). */
static flowpic_result flowpic__cl_reserve(flowpic_classifier *cl, size_t need)
{
    const size_t m = cl->model->n_classes;
    size_t n = cl->flows_cap ? cl->flows_cap : 64;
    void *p;
    if (need <= cl->flows_cap) return FLOWPIC_OK;
    while (n < need) n *= 2;
    if (n > (size_t)-1 / (m * sizeof *cl->sums)) return FLOWPIC_ERR_NOMEM;
    if (!(p = FLOWPIC_REALLOC(cl->flows, n * sizeof *cl->flows))) return FLOWPIC_ERR_NOMEM;
    cl->flows = (flowpic_clflow *)p;
    if (!(p = FLOWPIC_REALLOC(cl->votes, n * m * sizeof *cl->votes))) return FLOWPIC_ERR_NOMEM;
    cl->votes = (uint32_t *)p;
    if (!(p = FLOWPIC_REALLOC(cl->sums, n * m * sizeof *cl->sums))) return FLOWPIC_ERR_NOMEM;
    cl->sums = (double *)p;
    cl->flows_cap = n;
    return FLOWPIC_OK;
}

static void flowpic__cl_block(void *user, const flowpic_block *b);

FLOWPIC_DEF flowpic_result flowpic_classifier_init(flowpic_classifier *cl, const flowpic_model *model,
                                                   const flowpic_classifier_config *config,
                                                   flowpic_decision_fn emit, void *user)
{
    flowpic_block_config blocks = model->prep.blocks;
    flowpic_result res;
    uint16_t label;
    uint32_t source;
    int i;
    memset(cl, 0, sizeof *cl);
    if (config) cl->config = *config;
    else flowpic_classifier_config_default(&cl->config);
    if (cl->config.max_flows == 0) cl->config.max_flows = FLOWPIC_CLASSIFIER_DEFAULT_FLOWS;
    if (cl->config.max_flows > 0x7FFFFFFFu) return FLOWPIC_ERR_ARG; /* 32-bit links */
    if (cl->config.batch <= 0 || cl->config.batch > FLOWPIC_NN_MAX_BATCH) return FLOWPIC_ERR_ARG;
    /* end a flow no later than the cutter would restart it, so a flow is one generation */
    if (blocks.idle_timeout_ns && (!cl->config.idle_timeout_ns || blocks.idle_timeout_ns < cl->config.idle_timeout_ns))
        cl->config.idle_timeout_ns = blocks.idle_timeout_ns;
    blocks.max_flows = cl->config.max_flows;
    cl->model = model;
    cl->emit = emit;
    cl->user = user;
    cl->lists[0][0] = cl->lists[0][1] = cl->lists[1][0] = cl->lists[1][1] = FLOWPIC__NIL;
    res = flowpic_cutter_init(&cl->cutter, &blocks, flowpic__cl_block, cl);
    if (res == FLOWPIC_OK) /* the presets classify sparse pictures: no dense first layers */
        res = flowpic_model_workspace_init(&cl->ws, model, cl->config.batch, 0);
    for (i = 0; i < 2; i++) {
        flowpic_clbatch *b = &cl->batches[i];
        flowpic_dataset_init(&b->blocks, &blocks);
        if (res == FLOWPIC_OK) res = flowpic_dataset_class(&b->blocks, "pending", &label);
        if (res == FLOWPIC_OK) res = flowpic_dataset_source(&b->blocks, "stream", &source);
        b->probs = (float *)FLOWPIC_MALLOC((size_t)cl->config.batch * model->n_classes * sizeof *b->probs);
        if (!b->probs) res = FLOWPIC_ERR_NOMEM;
    }
    cl->batch_index = (size_t *)FLOWPIC_MALLOC((size_t)cl->config.batch * sizeof *cl->batch_index);
    if (res == FLOWPIC_OK && !cl->batch_index) res = FLOWPIC_ERR_NOMEM;
    if (res != FLOWPIC_OK) {
        flowpic_classifier_free(cl);
        return res;
    }
    for (i = 0; i < cl->config.batch; i++) cl->batch_index[i] = (size_t)i;
    return FLOWPIC_OK;
}

FLOWPIC_DEF void flowpic_classifier_free(flowpic_classifier *cl)
{
    int i;
#ifdef _OPENMP
    if (cl->in_flight) { /* its decisions are dropped, but its memory must not go under it */
#pragma omp taskwait
    }
#endif
    flowpic_cutter_free(&cl->cutter);
    flowpic_workspace_free(&cl->ws);
    for (i = 0; i < 2; i++) {
        flowpic_dataset_free(&cl->batches[i].blocks);
        FLOWPIC_FREE(cl->batches[i].info);
        FLOWPIC_FREE(cl->batches[i].probs);
    }
    FLOWPIC_FREE(cl->flows);
    FLOWPIC_FREE(cl->votes);
    FLOWPIC_FREE(cl->sums);
    FLOWPIC_FREE(cl->batch_index);
    memset(cl, 0, sizeof *cl);
}

/* The flow's running vote into d. */
static void flowpic__cl_vote(const flowpic_classifier *cl, uint32_t flow, flowpic_decision *d)
{
    const uint32_t m = cl->model->n_classes;
    const uint32_t *votes = cl->votes + (size_t)flow * m;
    const double *sums = cl->sums + (size_t)flow * m;
    d->vote_blocks = cl->flows[flow].blocks;
    d->majority = flowpic_vote_result(votes, sums, m, FLOWPIC_VOTE_MAJORITY, &d->majority_confidence);
    d->mean = flowpic_vote_result(votes, sums, m, FLOWPIC_VOTE_MEAN, &d->mean_confidence);
}

/* The decision on block i of a batch, whose probabilities are probs. */
static void flowpic__cl_decide(flowpic_classifier *cl, const flowpic_clbatch *batch, size_t i, const float *probs)
{
    const uint32_t m = cl->model->n_classes;
    const flowpic_clpending *info = &batch->info[i];
    const flowpic_ds_block *b = &batch->blocks.blocks[i];
    flowpic_decision d;
    memset(&d, 0, sizeof d);
    d.state = info->state;
    d.key = batch->blocks.flows[b->flow].key;
    d.time_ns = info->time_ns;
    d.start_ns = b->start_ns;
    d.block = b->index;
    d.packets = flowpic_picture_packets(batch->blocks.config.preset, flowpic_dataset_block_packets(&batch->blocks, i),
                                        b->n_packets);
    d.label = flowpic__top_class(probs, m);
    d.confidence = (double)probs[d.label];
    d.probs = probs;
    if (info->state == FLOWPIC_DECISION_FINAL) {
        flowpic_vote_add(cl->votes + (size_t)info->flow * m, cl->sums + (size_t)info->flow * m, probs, m);
        cl->flows[info->flow].blocks++;
        cl->stats.decisions_final++;
    } else {
        cl->stats.decisions_partial++;
    }
    flowpic__cl_vote(cl, info->flow, &d);
    if (cl->emit) cl->emit(cl->user, &d);
}

/* The network on a batch (on either thread: it touches only the batch and the workspace). */
static void flowpic__cl_forward(flowpic_classifier *cl, flowpic_clbatch *batch)
{
    batch->result = flowpic_predict_blocks(cl->model, &cl->ws, &batch->blocks, cl->batch_index,
                                           batch->blocks.n_blocks, batch->probs);
}

/* The decisions of a classified batch, in order; the batch is empty again. */
static flowpic_result flowpic__cl_emit(flowpic_classifier *cl, flowpic_clbatch *batch)
{
    size_t i;
    const size_t n = batch->blocks.n_blocks;
    flowpic_result res = batch->result;
    cl->stats.batches++;
    for (i = 0; res == FLOWPIC_OK && i < n; i++) flowpic__cl_decide(cl, batch, i, batch->probs + i * cl->model->n_classes);
    batch->blocks.n_blocks = batch->blocks.n_flows = batch->blocks.n_packets = 0;
    return res;
}

/* Waits for the batch on the second thread, if any, and emits its decisions. */
static flowpic_result flowpic__cl_wait(flowpic_classifier *cl)
{
    if (!cl->in_flight) return FLOWPIC_OK;
#ifdef _OPENMP
#pragma omp taskwait
#endif
    cl->in_flight = 0;
    return flowpic__cl_emit(cl, &cl->batches[1 - cl->filling]);
}

/* Classifies every waiting block now (the batch in flight first) and emits the decisions. */
static flowpic_result flowpic__cl_classify(flowpic_classifier *cl)
{
    flowpic_clbatch *batch = &cl->batches[cl->filling];
    flowpic_result res = flowpic__cl_wait(cl);
    if (res != FLOWPIC_OK || !batch->blocks.n_blocks) return res;
    flowpic__cl_forward(cl, batch);
    return flowpic__cl_emit(cl, batch);
}

/* A full batch: to the second thread when there is one (inside an OpenMP parallel region of 2+
 * threads), else classified now. */
static flowpic_result flowpic__cl_batch_full(flowpic_classifier *cl)
{
#ifdef _OPENMP
    if (cl->config.second_thread && omp_in_parallel() && omp_get_num_threads() > 1) {
        flowpic_clbatch *batch = &cl->batches[cl->filling];
        flowpic_result res = flowpic__cl_wait(cl);
        if (res != FLOWPIC_OK) return res;
#pragma omp task firstprivate(cl, batch)
        flowpic__cl_forward(cl, batch);
        cl->in_flight = 1;
        cl->filling = 1 - cl->filling;
        cl->stats.batches_threaded++;
        return FLOWPIC_OK;
    }
#endif
    return flowpic__cl_classify(cl);
}

/* A block (copied: its packets belong to the cutter) joins the batch. */
static flowpic_result flowpic__cl_queue(flowpic_classifier *cl, const flowpic_block *b, flowpic_decision_state state)
{
    flowpic_clflow *f = &cl->flows[b->flow];
    flowpic_clbatch *batch = &cl->batches[cl->filling];
    flowpic_clpending *info;
    uint32_t ds_flow;
    flowpic_result res = flowpic__reserve((void **)&batch->info, &batch->info_cap, batch->blocks.n_blocks + 1,
                                          sizeof *batch->info);
    if (res == FLOWPIC_OK) res = flowpic_dataset_add_flow(&batch->blocks, &b->key, 0, b->flow_generation, &ds_flow);
    if (res == FLOWPIC_OK) res = flowpic_dataset_add_block(&batch->blocks, ds_flow, 0, b);
    if (res != FLOWPIC_OK) return res;
    info = &batch->info[batch->blocks.n_blocks - 1];
    info->time_ns = cl->now_ns;
    info->flow = (uint32_t)b->flow;
    info->state = state;
    f->since = 0; /* early decisions count from the last decision */
    if (state == FLOWPIC_DECISION_FINAL) f->early_ns = 0;
    if (batch->blocks.n_blocks >= (size_t)cl->config.batch) return flowpic__cl_batch_full(cl);
    return FLOWPIC_OK;
}

/* The cutter's callback: a window closed. */
static void flowpic__cl_block(void *user, const flowpic_block *b)
{
    flowpic_classifier *cl = (flowpic_classifier *)user;
    if (cl->status == FLOWPIC_OK) cl->status = flowpic__cl_queue(cl, b, FLOWPIC_DECISION_FINAL);
}

/* Closes the flow's windows that end by now_ns (UINT64_MAX: all of them). */
static flowpic_result flowpic__cl_close(flowpic_classifier *cl, size_t flow, uint64_t now_ns)
{
    flowpic_result res;
    res = flowpic_cutter_close(&cl->cutter, flow, now_ns);
    return res != FLOWPIC_OK ? res : cl->status;
}

/* An early decision on the open block of a flow. */
static flowpic_result flowpic__cl_partial(flowpic_classifier *cl, size_t flow)
{
    flowpic_block b;
    flowpic_result res;
    cl->flows[flow].since = 0;
    if (cl->config.early_after_ns) cl->flows[flow].early_ns = cl->now_ns + cl->config.early_after_ns;
    res = flowpic_cutter_partial(&cl->cutter, flow, &b);
    if (res == FLOWPIC_ERR_ARG || (res == FLOWPIC_OK && !b.n_packets)) return FLOWPIC_OK; /* nothing open */
    return res != FLOWPIC_OK ? res : flowpic__cl_queue(cl, &b, FLOWPIC_DECISION_PARTIAL);
}

/* Ends a flow: its last blocks, the waiting batch, its FLOW decision; then it is forgotten. */
static flowpic_result flowpic__cl_end(flowpic_classifier *cl, uint32_t flow, flowpic_flow_end why)
{
    const uint32_t m = cl->model->n_classes;
    uint32_t last;
    flowpic_result res = flowpic__cl_close(cl, flow, UINT64_MAX);
    if (res == FLOWPIC_OK) res = flowpic__cl_classify(cl);
    if (res != FLOWPIC_OK) return res;
    if (cl->flows[flow].blocks) {
        flowpic_decision d;
        memset(&d, 0, sizeof d);
        d.state = FLOWPIC_DECISION_FLOW;
        d.key = cl->cutter.flows.flows[flow].key;
        d.time_ns = cl->now_ns;
        d.block = cl->flows[flow].blocks;
        d.label = flowpic_vote_result(cl->votes + (size_t)flow * m, cl->sums + (size_t)flow * m, m, cl->config.vote,
                                      &d.confidence);
        d.end = why;
        flowpic__cl_vote(cl, flow, &d);
        cl->stats.decisions_flow++;
        if (cl->emit) cl->emit(cl->user, &d);
    }
    if (why == FLOWPIC_END_IDLE) cl->stats.flows_idle++;
    if (why == FLOWPIC_END_EVICT) cl->stats.flows_evicted++;
    flowpic__cl_unlink(cl, flow);
    last = (uint32_t)cl->cutter.flows.count - 1;
    flowpic_cutter_remove(&cl->cutter, flow);
    if (flow != last) flowpic__cl_move(cl, last, flow);
    return FLOWPIC_OK;
}

/* Time passed (cl->now_ns): windows of silent flows close, idle flows end. */
static flowpic_result flowpic__cl_expire(flowpic_classifier *cl)
{
    const uint64_t now = cl->now_ns, idle = cl->config.idle_timeout_ns, len = cl->cutter.config.block_ns;
    uint32_t i;
    flowpic_result res = FLOWPIC_OK;
    while (res == FLOWPIC_OK && (i = cl->lists[FLOWPIC__ACTIVE][0]) != FLOWPIC__NIL) {
        uint64_t silent = now - cl->flows[i].last_ns;
        if (idle && silent >= idle) {
            res = flowpic__cl_end(cl, i, FLOWPIC_END_IDLE);
        } else if (silent >= len) { /* every window ends by now: a packet now would close them */
            res = flowpic__cl_close(cl, i, now);
            flowpic__cl_unlink(cl, i);
            flowpic__cl_append(cl, i, FLOWPIC__QUIET);
        } else {
            break;
        }
    }
    while (res == FLOWPIC_OK && idle && (i = cl->lists[FLOWPIC__QUIET][0]) != FLOWPIC__NIL &&
           now - cl->flows[i].last_ns >= idle)
        res = flowpic__cl_end(cl, i, FLOWPIC_END_IDLE);
    return res;
}

/* The early_after decisions that fell due, over the active flows. */
static flowpic_result flowpic__cl_early_sweep(flowpic_classifier *cl)
{
    uint32_t i;
    flowpic_result res = FLOWPIC_OK;
    cl->sweep_ns = cl->now_ns + flowpic__ns_per_s;
    for (i = cl->lists[FLOWPIC__ACTIVE][0]; res == FLOWPIC_OK && i != FLOWPIC__NIL; i = cl->flows[i].next)
        if (cl->flows[i].early_ns && cl->now_ns >= cl->flows[i].early_ns) res = flowpic__cl_partial(cl, i);
    return res;
}

/* Makes room for a new flow: ends the flow idle longest (the older of the two list heads). */
static flowpic_result flowpic__cl_evict(flowpic_classifier *cl)
{
    uint32_t a = cl->lists[FLOWPIC__ACTIVE][0], q = cl->lists[FLOWPIC__QUIET][0];
    uint32_t victim = a == FLOWPIC__NIL ? q
                      : q == FLOWPIC__NIL ? a
                      : cl->flows[q].last_ns <= cl->flows[a].last_ns ? q : a;
    return flowpic__cl_end(cl, victim, FLOWPIC_END_EVICT);
}

/* A flow the cutter just created, at index flow. */
static flowpic_result flowpic__cl_new_flow(flowpic_classifier *cl, size_t flow)
{
    const size_t m = cl->model->n_classes;
    flowpic_result res = flowpic__cl_reserve(cl, flow + 1);
    if (res != FLOWPIC_OK) return res;
    memset(&cl->flows[flow], 0, sizeof cl->flows[flow]);
    memset(cl->votes + flow * m, 0, m * sizeof *cl->votes);
    memset(cl->sums + flow * m, 0, m * sizeof *cl->sums);
    cl->stats.flows_total++;
    if (cl->cutter.flows.count > cl->stats.flows_peak) cl->stats.flows_peak = cl->cutter.flows.count;
    return FLOWPIC_OK;
}

/* flowpic_classifier_add with the key's hash h computed. */
static flowpic_result flowpic__cl_add(flowpic_classifier *cl, const flowpic_packet *p, uint64_t h)
{
    const flowpic_classifier_config *cfg = &cl->config;
    size_t flow, before, slot;
    uint64_t kept = cl->cutter.packets_kept;
    flowpic_clflow *f;
    flowpic_result res;
    cl->stats.packets++;
    if (p->ts_ns > cl->now_ns) cl->now_ns = p->ts_ns;
    res = flowpic__cl_expire(cl);
    if (res != FLOWPIC_OK) return res;
    flow = flowpic__find_flow(&cl->cutter.flows, &p->key, h, &slot);
    if (flow == (size_t)-1 && cl->cutter.flows.count >= cfg->max_flows) {
        res = flowpic__cl_evict(cl);
        if (res != FLOWPIC_OK) return res;
    }
    before = cl->cutter.flows.count; /* (after the flows that ended above) */
    res = flowpic__cutter_add_hashed(&cl->cutter, p, h, flow); /* (a flow found is still where it was) */
    if (res == FLOWPIC_OK) res = cl->status;
    if (res != FLOWPIC_OK) return res;
    if (flow == (size_t)-1) {
        if (cl->cutter.flows.count == before) return FLOWPIC_OK; /* not taken (the original preset's IPv6) */
        flow = cl->cutter.flows.count - 1;
        res = flowpic__cl_new_flow(cl, flow);
        if (res != FLOWPIC_OK) return res;
    } else {
        flowpic__cl_unlink(cl, (uint32_t)flow);
    }
    f = &cl->flows[flow];
    if (p->ts_ns > f->last_ns) f->last_ns = p->ts_ns;
    flowpic__cl_append(cl, (uint32_t)flow, FLOWPIC__ACTIVE);
    if (cl->cutter.packets_kept > kept) {
        f->since++;
        if (cfg->early_after_ns && !f->early_ns) f->early_ns = p->ts_ns + cfg->early_after_ns;
    }
    if ((cfg->early_packets && f->since >= cfg->early_packets) || (f->early_ns && cl->now_ns >= f->early_ns))
        res = flowpic__cl_partial(cl, flow);
    if (res == FLOWPIC_OK && cfg->early_after_ns && cl->now_ns >= cl->sweep_ns) res = flowpic__cl_early_sweep(cl);
    return res;
}

FLOWPIC_DEF flowpic_result flowpic_classifier_add(flowpic_classifier *cl, const flowpic_packet *p)
{
    return flowpic__cl_add(cl, p, flowpic__key_hash(&p->key));
}

/* As flowpic_cutter_add_batch: flowpic__prefetch_flows (and each flow's classifier state), then
 * the packets one by one. */
FLOWPIC_DEF flowpic_result flowpic_classifier_add_batch(flowpic_classifier *cl, const flowpic_packet *p, size_t n)
{
    uint64_t h[FLOWPIC_BATCH];
    uint32_t slot_flow[FLOWPIC_BATCH];
    size_t i, done;
    for (done = 0; done < n; done += i) {
        const size_t m = n - done < FLOWPIC_BATCH ? n - done : FLOWPIC_BATCH;
        const flowpic_packet *q = p + done;
        flowpic__prefetch_flows(&cl->cutter, q, m, h, slot_flow);
        for (i = 0; i < m; i++)
            if (slot_flow[i]) FLOWPIC_PREFETCH(&cl->flows[slot_flow[i] - 1]);
        for (i = 0; i < m; i++) {
            flowpic_result res = flowpic__cl_add(cl, &q[i], h[i]);
            if (res != FLOWPIC_OK) return res;
        }
    }
    return FLOWPIC_OK;
}

FLOWPIC_DEF flowpic_result flowpic_classifier_tick(flowpic_classifier *cl, uint64_t now_ns)
{
    flowpic_result res;
    if (now_ns > cl->now_ns) cl->now_ns = now_ns;
    res = flowpic__cl_expire(cl);
    if (res == FLOWPIC_OK && cl->config.early_after_ns) res = flowpic__cl_early_sweep(cl);
    return res != FLOWPIC_OK ? res : flowpic__cl_classify(cl);
}

FLOWPIC_DEF flowpic_result flowpic_classifier_flush(flowpic_classifier *cl)
{
    flowpic_result res = FLOWPIC_OK;
    uint32_t i;
    int list;
    /* every open block first, so they fill whole batches; then the flows end one by one */
    for (list = FLOWPIC__ACTIVE; list <= FLOWPIC__QUIET; list++)
        for (i = cl->lists[list][0]; res == FLOWPIC_OK && i != FLOWPIC__NIL; i = cl->flows[i].next)
            res = flowpic__cl_close(cl, i, UINT64_MAX);
    for (list = FLOWPIC__QUIET; list >= FLOWPIC__ACTIVE; list--)
        while (res == FLOWPIC_OK && cl->lists[list][0] != FLOWPIC__NIL)
            res = flowpic__cl_end(cl, cl->lists[list][0], FLOWPIC_END_FLUSH);
    return res != FLOWPIC_OK ? res : flowpic__cl_classify(cl);
}

FLOWPIC_DEF void flowpic_classifier_stats_get(const flowpic_classifier *cl, flowpic_classifier_stats *stats)
{
    *stats = cl->stats;
    stats->flows_live = cl->cutter.flows.count;
}

#ifdef __cplusplus
}
#endif
#endif /* FLOWPIC_IMPLEMENTATION_DONE */
#endif /* FLOWPIC_IMPLEMENTATION */
