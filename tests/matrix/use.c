/* The build matrix's API user (tests/build_matrix.sh): compiled on its own (only the
 * declarations), next to an implementation unit, as C++, with FLOWPIC_STATIC (then with the
 * implementation, MATRIX_IMPL), FLOWPIC_NO_STDIO, custom allocators and OpenMP. It exercises the
 * flow table, the reader, a data set and a model round trip in memory, and prints "ok". */
#ifdef MATRIX_IMPL
#define FLOWPIC_IMPLEMENTATION
#endif
#include "flowpic.h"

#include <stdio.h>
#include <string.h>

#ifdef MATRIX_ALLOCATOR
long matrix_allocations; /* counted by the custom allocator of alloc.c */
void matrix_free(void *p);
#define FLOWPIC_FREE_FOR_MATRIX(p) matrix_free(p) /* buffers the library hands out */
#else
#include <stdlib.h>
#define FLOWPIC_FREE_FOR_MATRIX(p) free(p)
#endif

static int flows(void)
{
    flowpic_flowtable ft;
    flowpic_packet p;
    int i, ok;
    memset(&p, 0, sizeof p);
    p.key.ip_version = 4;
    p.key.proto = 17;
    if (flowpic_flowtable_init(&ft, 0, 16) != FLOWPIC_OK) return 0;
    for (i = 0; i < 10; i++) {
        p.ts_ns = (uint64_t)i * 1000u;
        p.size = 100;
        p.key.sport = (uint16_t)(i % 3);
        if (flowpic_flowtable_add(&ft, &p, 0) != FLOWPIC_OK) break;
    }
    ok = ft.count == 3 && ft.flows[0].packets == 4;
    flowpic_flowtable_free(&ft);
    return ok;
}

static int reader(void)
{
    static const uint8_t header[24] = {0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0,
                                       0,    0,    0,    0,    0xff, 0xff, 0, 0, 1, 0, 0, 0};
    pcapl_reader r;
    pcapl_packet pkt;
    int ok;
    if (pcapl_open_memory(&r, header, sizeof header) != PCAPL_OK) return 0;
    ok = pcapl_next(&r, &pkt) == PCAPL_END && r.linktype == 1;
    pcapl_close(&r);
    return ok;
}

static int dataset_and_model(void)
{
    static const char *const classes[] = {"a", "b"};
    flowpic_block_config cfg;
    flowpic_dataset ds, back;
    flowpic_model m, m2;
    flowpic_prep prep;
    flowpic_rng rng;
    flowpic_error err;
    uint8_t *data = 0;
    size_t size = 0;
    uint16_t label;
    int ok;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    flowpic_dataset_init(&ds, &cfg);
    ok = flowpic_dataset_class(&ds, "a", &label) == FLOWPIC_OK &&
         flowpic_dataset_to_memory(&ds, &data, &size) == FLOWPIC_OK &&
         flowpic_dataset_from_memory(&back, data, size, &err) == FLOWPIC_OK;
    if (ok) {
        ok = back.n_classes == 1 && !strcmp(back.classes[0], "a");
        flowpic_dataset_free(&back);
    }
    FLOWPIC_FREE_FOR_MATRIX(data);
    flowpic_dataset_free(&ds);
    prep.blocks = cfg;
    prep.res = 32;
    prep.transform = FLOWPIC_VALUE_LOG1P;
    flowpic_rng_seed(&rng, 1);
    if (!ok || flowpic_model_init(&m, FLOWPIC_ARCH_MINI, &prep, classes, 2, &rng) != FLOWPIC_OK) return 0;
    ok = flowpic_model_to_memory(&m, &data, &size) == FLOWPIC_OK &&
         flowpic_model_from_memory(&m2, data, size, &err) == FLOWPIC_OK;
    if (ok) {
        ok = m2.n_classes == 2 && m2.net.num_params == m.net.num_params;
        flowpic_model_free(&m2);
    }
    FLOWPIC_FREE_FOR_MATRIX(data);
    flowpic_model_free(&m);
    return ok;
}

int main(void)
{
    int ok = flows() && reader() && dataset_and_model() && !strcmp(flowpic_version_string(), FLOWPIC_VERSION_STRING);
#ifdef MATRIX_ALLOCATOR
    ok = ok && matrix_allocations > 0; /* the library used the caller's allocator */
#endif
    printf("%s\n", ok ? "ok" : "FAILED");
    return !ok;
}
