/* The named limits, each lowered here so that a test can cross it: the largest capture record
 * and pcapng block, the most live flows, the most packets in one block, the largest model.
 * Crossing one gives its own result code, and the allocator hook checks that no allocation on
 * the way grew with the size the input asked for (a record header claiming 4 GiB allocates
 * nothing of that size). The unit tests check the same limits at their default values where
 * that is cheap (tests/test_pcap.c, test_flows.c, test_nn.c).
 * Last line: "N passed, N failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t largest_allocation;

static void *limits_malloc(size_t n)
{
    if (n > largest_allocation) largest_allocation = n;
    return malloc(n);
}

static void *limits_realloc(void *p, size_t n)
{
    if (n > largest_allocation) largest_allocation = n;
    return realloc(p, n);
}

#define FLOWPIC_MALLOC(sz) limits_malloc(sz)
#define FLOWPIC_REALLOC(p, sz) limits_realloc(p, sz)
#define FLOWPIC_FREE(p) free(p)
#define PCAPL_BUFFER_SIZE 4096u
#define PCAPL_MAX_CAPLEN 2048u
#define PCAPL_MAX_BLOCK 8192u
#define FLOWPIC_DEFAULT_MAX_FLOWS 8u
#define FLOWPIC_MAX_BLOCK_PACKETS 64u
#define FLOWPIC_MAX_MODEL_BYTES 100000u
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"
#include "capbuild.h"

static int passed, failed;

#define CHECK_LIMIT(name, cond)                                                                \
    do {                                                                                       \
        if (cond) {                                                                            \
            passed++;                                                                          \
            printf("ok   %s\n", name);                                                      \
        } else {                                                                               \
            failed++;                                                                          \
            printf("FAIL %s: %s (largest allocation %zu)\n", name, #cond, largest_allocation); \
        }                                                                                      \
    } while (0)

/* A read callback over a buffer, so the reader takes its stream path (buffer growth). */
typedef struct mem_stream {
    const uint8_t *data;
    size_t len, pos;
} mem_stream;

static long read_mem(void *user, void *buf, size_t size)
{
    mem_stream *m = (mem_stream *)user;
    size_t n = m->len - m->pos < size ? m->len - m->pos : size;
    memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    return (long)n;
}

/* Reads every packet of b through a stream; the result that ends the reading. */
static pcapl_result read_stream(const cb *b)
{
    pcapl_reader r;
    pcapl_packet pkt;
    pcapl_result res;
    mem_stream m;
    m.data = b->data;
    m.len = b->len;
    m.pos = 0;
    largest_allocation = 0;
    res = pcapl_open_callback(&r, read_mem, &m);
    while (res == PCAPL_OK) res = pcapl_next(&r, &pkt);
    pcapl_close(&r);
    return res;
}

/* n packets of flows 0 .. flows-1 (source port = flow), four a second. */
static void udp_packets(cb *b, int ng, int n, int flows)
{
    uint8_t frame[256];
    frame_spec s;
    int i;
    for (i = 0; i < n; i++) {
        uint32_t len;
        spec_default(&s, 4, 17);
        s.sport = (uint16_t)(1000 + i % flows);
        s.payload = 100;
        len = build_eth(frame, &s);
        if (ng)
            cb_ng_epb(b, 0, (uint64_t)(4000 + i) * 250000u, frame, len, len);
        else
            cb_pcap_record(b, (uint32_t)(1000 + i / 4), (uint32_t)(i % 4) * 250000u, frame, len, len);
    }
}

static void record_and_block(void)
{
    cb b;
    size_t at;
    cb_init(&b, 0);
    cb_pcap_header(&b, 0, 1, 65535);
    udp_packets(&b, 0, 3, 1);
    at = b.len;
    udp_packets(&b, 0, 1, 1);
    cb_put_u32(&b, at + 8, 0xFFFFFFFFu); /* a record of 4 GiB - 1 */
    CHECK_LIMIT("pcap record over PCAPL_MAX_CAPLEN", read_stream(&b) == PCAPL_ERR_CAPLEN);
    CHECK_LIMIT("  nothing of its size allocated", largest_allocation <= PCAPL_BUFFER_SIZE);
    cb_put_u32(&b, at + 8, PCAPL_MAX_CAPLEN); /* the largest allowed record: the buffer grows */
    CHECK_LIMIT("pcap record at PCAPL_MAX_CAPLEN", read_stream(&b) == PCAPL_ERR_TRUNCATED);
    cb_free(&b);

    cb_init(&b, 0);
    cb_ng_shb(&b);
    cb_ng_idb(&b, 1, 0, -1, 0, 0);
    udp_packets(&b, 1, 3, 1);
    at = b.len;
    udp_packets(&b, 1, 1, 1);
    cb_put_u32(&b, at + 4, 0xFFFFFFFCu); /* a block of 4 GiB - 4 */
    CHECK_LIMIT("pcapng block over PCAPL_MAX_BLOCK", read_stream(&b) == PCAPL_ERR_BLOCK_LARGE);
    CHECK_LIMIT("  nothing of its size allocated", largest_allocation <= PCAPL_BUFFER_SIZE);
    cb_put_u32(&b, at + 4, PCAPL_MAX_BLOCK + 4);
    CHECK_LIMIT("pcapng block 4 bytes over PCAPL_MAX_BLOCK", read_stream(&b) == PCAPL_ERR_BLOCK_LARGE);
    cb_free(&b);
}

/* A capture into a data set with the paper preset; the result of flowpic_dataset_add_capture. */
static flowpic_result extract(int n, int flows)
{
    cb b;
    pcapl_reader r;
    flowpic_block_config cfg;
    flowpic_dataset ds;
    flowpic_result res;
    cb_init(&b, 0);
    cb_pcap_header(&b, 0, 1, 65535);
    udp_packets(&b, 0, n, flows);
    largest_allocation = 0;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    flowpic_dataset_init(&ds, &cfg);
    res = pcapl_open_memory(&r, b.data, b.len) == PCAPL_OK ? flowpic_dataset_add_capture(&ds, &r, "mem", 0, 0, 0, 0)
                                                           : FLOWPIC_ERR_FORMAT;
    pcapl_close(&r);
    flowpic_dataset_free(&ds);
    cb_free(&b);
    return res;
}

static void flows_and_block_packets(void)
{
    CHECK_LIMIT("8 flows (FLOWPIC_DEFAULT_MAX_FLOWS)", extract(16, 8) == FLOWPIC_OK);
    CHECK_LIMIT("9 flows", extract(18, 9) == FLOWPIC_ERR_FLOW_LIMIT);
    CHECK_LIMIT("60 packets in a block (FLOWPIC_MAX_BLOCK_PACKETS 64)", extract(60, 1) == FLOWPIC_OK);
    CHECK_LIMIT("120 packets in a block", extract(120, 1) == FLOWPIC_ERR_BLOCK_LIMIT);
    CHECK_LIMIT("result strings", !strcmp(flowpic_result_string(FLOWPIC_ERR_BLOCK_LIMIT), "too many packets in one block") &&
                                      !strcmp(flowpic_result_string(FLOWPIC_ERR_MODEL_LIMIT), "model larger than the limit"));
}

static void model_size(void)
{
    static const char *const classes[] = {"a", "b"};
    flowpic_model m;
    flowpic_prep prep;
    flowpic_rng rng;
    flowpic_error err;
    uint8_t *data = 0;
    size_t size = 0;
    memset(&err, 0, sizeof err);
    largest_allocation = 0;
    CHECK_LIMIT("model file over FLOWPIC_MAX_MODEL_BYTES",
                flowpic_model_load(&m, "tests/fuzz/corpus/model/mini32.fpm", &err) == FLOWPIC_ERR_MODEL_LIMIT &&
                    err.code == FLOWPIC_ERR_MODEL_LIMIT);
    CHECK_LIMIT("  read no further than the limit", largest_allocation <= 2 * (FLOWPIC_MAX_MODEL_BYTES + 65536));
    flowpic_block_config_preset(&prep.blocks, FLOWPIC_PRESET_TCBENCH);
    prep.res = 32;
    prep.transform = FLOWPIC_VALUE_LOG1P;
    flowpic_rng_seed(&rng, 1);
    if (flowpic_model_init(&m, FLOWPIC_ARCH_MINI, &prep, classes, 2, &rng) != FLOWPIC_OK) {
        CHECK_LIMIT("model init", 0);
        return;
    }
    largest_allocation = 0;
    CHECK_LIMIT("model over FLOWPIC_MAX_MODEL_BYTES not encoded",
                flowpic_model_to_memory(&m, &data, &size) == FLOWPIC_ERR_MODEL_LIMIT && data == 0);
    CHECK_LIMIT("  nothing of its size allocated", largest_allocation == 0);
    flowpic_model_free(&m);
}

int main(void)
{
    record_and_block();
    flows_and_block_packets();
    model_size();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
