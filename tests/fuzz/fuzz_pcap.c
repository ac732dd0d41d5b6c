/* libFuzzer target: the pcap/pcapng reader with the decoder and the flow table.
 * Any byte sequence must give packets or a specific error, never a crash, hang, leak or
 * out-of-bounds read; and the reader must see the same packets whatever the chunk size of a
 * streaming source (differential check: memory source vs. callback source). */
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct chunked {
    const uint8_t *data;
    size_t size, pos, chunk;
} chunked;

static long chunked_read(void *user, void *buf, size_t want)
{
    chunked *c = (chunked *)user;
    size_t n = c->size - c->pos;
    if (n > c->chunk) n = c->chunk;
    if (n > want) n = want;
    memcpy(buf, c->data + c->pos, n);
    c->pos += n;
    return (long)n;
}

/* Reads everything; returns a digest of what was seen, the final result in *end. */
static uint64_t consume(pcapl_reader *r, pcapl_result open_res, pcapl_result *end, flowpic_flowtable *ft)
{
    pcapl_packet pkt;
    pcapl_decoded d;
    uint64_t h = 1469598103934665603ull;
    char text[46];
    if (open_res != PCAPL_OK) {
        *end = open_res;
        return h ^ r->error.offset;
    }
    while ((*end = pcapl_next(r, &pkt)) == PCAPL_OK) {
        pcapl_skip skip = pcapl_decode(&pkt, &d);
        h = (h ^ pkt.ts_ns ^ pkt.caplen ^ (uint64_t)skip << 40) * 1099511628211ull;
        if (pkt.caplen) h = (h ^ pkt.data[0] ^ (uint64_t)pkt.data[pkt.caplen - 1] << 8) * 1099511628211ull;
        if (d.ip_version) {
            pcapl_format_address(d.ip_version, d.src, text);
            h = (h ^ strlen(text)) * 1099511628211ull;
        }
        if (ft && skip == PCAPL_SKIP_NONE) {
            flowpic_packet p;
            flowpic_packet_from_decoded(&p, pkt.ts_ns, &d);
            (void)flowpic_flowtable_add(ft, &p, 0);
        }
    }
    return h ^ r->error.offset ^ r->error.record << 32;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pcapl_reader r;
    pcapl_result end_mem, end_cb, res;
    flowpic_flowtable ft;
    chunked c;
    uint64_t h_mem, h_cb;
    flowpic_flowtable_init(&ft, size & 1, 1000);
    res = pcapl_open_memory(&r, data, size);
    h_mem = consume(&r, res, &end_mem, &ft);
    pcapl_close(&r);
    flowpic_flowtable_free(&ft);

    c.data = data;
    c.size = size;
    c.pos = 0;
    c.chunk = size ? 1u + data[size - 1] % 97u : 1u;
    res = pcapl_open_callback(&r, chunked_read, &c);
    h_cb = consume(&r, res, &end_cb, 0);
    pcapl_close(&r);
    if (end_mem != end_cb || h_mem != h_cb) abort(); /* the source must not matter */
    return 0;
}
