/* test_online.c - the online classifier (flowpic.h >>classifier) and the flow-table / cutter calls
 * it stands on (flowtable find / remove, cutter close / remove).
 *
 *   ./test_online [filter]     run the tests whose name contains filter
 *
 * The library is compiled here with a counting allocator, so the flood test can hold the
 * classifier to its documented memory bound. Last line: "N passed, N failed". */
#include <stddef.h>
#include <stdlib.h>

static size_t alloc_now, alloc_peak;
/* (OpenMP: the second thread allocates too) */
#ifdef _OPENMP
#define COUNT_LOCK _Pragma("omp critical(count_alloc)")
#else
#define COUNT_LOCK
#endif
#define HEADER_BYTES 16 /* keeps the blocks 16-byte aligned, as malloc does */

/* A size header in front of every block, so free knows what it gives back. */
static void *count_malloc(size_t size)
{
    size_t *p = (size_t *)malloc(size + HEADER_BYTES);
    if (!p) return 0;
    *p = size;
    COUNT_LOCK
    {
        alloc_now += size;
        if (alloc_now > alloc_peak) alloc_peak = alloc_now;
    }
    return (char *)p + HEADER_BYTES;
}

static void count_free(void *ptr)
{
    size_t *p;
    if (!ptr) return;
    p = (size_t *)(void *)((char *)ptr - HEADER_BYTES);
    COUNT_LOCK
    alloc_now -= *p;
    free(p);
}

static void *count_realloc(void *ptr, size_t size)
{
    size_t *p, old;
    if (!ptr) return count_malloc(size);
    p = (size_t *)(void *)((char *)ptr - HEADER_BYTES);
    old = *p;
    p = (size_t *)realloc(p, size + HEADER_BYTES);
    if (!p) return 0;
    *p = size;
    COUNT_LOCK
    {
        alloc_now = alloc_now - old + size;
        if (alloc_now > alloc_peak) alloc_peak = alloc_now;
    }
    return (char *)p + HEADER_BYTES;
}

#define FLOWPIC_MALLOC(sz) count_malloc(sz)
#define FLOWPIC_REALLOC(p, sz) count_realloc(p, sz)
#define FLOWPIC_FREE(p) count_free(p)
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"
#define HARNESS_IMPLEMENTATION
#include "harness.h"

#include <stdio.h>

/* ---- traffic --------------------------------------------------------------------------------- */

static flowpic_key make_key(uint32_t n, uint8_t proto)
{
    flowpic_key k;
    memset(&k, 0, sizeof k);
    k.ip_version = 4;
    k.proto = proto;
    k.src[0] = 10;
    k.src[1] = (uint8_t)(n >> 16);
    k.src[2] = (uint8_t)(n >> 8);
    k.src[3] = (uint8_t)n;
    k.dst[0] = 198;
    k.dst[1] = 18;
    k.sport = (uint16_t)(1024 + n % 60000);
    k.dport = 443;
    return k;
}

static int cmp_ts(const void *a, const void *b)
{
    const flowpic_packet *x = (const flowpic_packet *)a, *y = (const flowpic_packet *)b;
    return x->ts_ns < y->ts_ns ? -1 : x->ts_ns > y->ts_ns;
}

/* Flows of three kinds over `seconds`, in time order: VoIP-like (small packets every 20 ms),
 * bulk (near-MTU bursts), sparse chat; some start late, some stop early. *n receives the count;
 * free the result. */
static flowpic_packet *make_traffic(uint32_t flows, uint32_t seconds, uint64_t seed, size_t *n)
{
    flowpic_rng rng;
    size_t cap = 1024, count = 0;
    flowpic_packet *pk = (flowpic_packet *)malloc(cap * sizeof *pk);
    uint32_t f;
    flowpic_rng_seed(&rng, seed);
    for (f = 0; f < flows && pk; f++) {
        uint64_t base = 1000000000000u, t = base + (uint64_t)(flowpic_rng_uniform(&rng) * 30e9);
        uint64_t end = base + (uint64_t)seconds * 1000000000u - (uint64_t)(flowpic_rng_uniform(&rng) * 40e9);
        int kind = (int)(f % 3);
        while (t < end) {
            flowpic_packet *p;
            if (count == cap) {
                flowpic_packet *np = (flowpic_packet *)realloc(pk, (cap *= 2) * sizeof *pk);
                if (!np) {
                    free(pk);
                    return 0;
                }
                pk = np;
            }
            p = &pk[count++];
            memset(p, 0, sizeof *p);
            p->key = make_key(f, kind == 0 ? 17 : 6);
            p->ts_ns = t;
            if (kind == 0) {
                p->size = 160 + (uint32_t)(flowpic_rng_next(&rng) % 40);
                t += 20000000u + flowpic_rng_next(&rng) % 2000000u;
            } else if (kind == 1) {
                p->size = flowpic_rng_next(&rng) % 10 ? 1500 : 1501 + (uint32_t)(flowpic_rng_next(&rng) % 100);
                t += flowpic_rng_next(&rng) % 50 ? 300000u : 2000000000u + flowpic_rng_next(&rng) % 3000000000u;
            } else {
                p->size = 60 + (uint32_t)(flowpic_rng_next(&rng) % 600);
                t += 300000000u + flowpic_rng_next(&rng) % 3000000000u;
            }
        }
    }
    if (pk) qsort(pk, count, sizeof *pk, cmp_ts);
    *n = count;
    return pk;
}

/* A mini net at 32 with random weights: the decisions need not be right, only repeatable. */
static int make_model(flowpic_model *m, uint64_t idle_ns)
{
    static const char *const classes[3] = {"voip", "bulk", "chat"};
    flowpic_prep prep;
    flowpic_rng rng;
    flowpic_rng_seed(&rng, 5);
    memset(&prep, 0, sizeof prep);
    flowpic_block_config_preset(&prep.blocks, FLOWPIC_PRESET_PAPER);
    prep.blocks.idle_timeout_ns = idle_ns;
    prep.res = 32;
    prep.transform = FLOWPIC_VALUE_LOG1P;
    return flowpic_model_init(m, FLOWPIC_ARCH_MINI, &prep, classes, 3, &rng) == FLOWPIC_OK;
}

/* ---- collecting decisions -------------------------------------------------------------------- */

typedef struct seen {
    flowpic_decision d[4096];
    float probs[4096][3];
    size_t n;
} seen;

static void collect(void *user, const flowpic_decision *d)
{
    seen *s = (seen *)user;
    if (s->n >= 4096) return;
    s->d[s->n] = *d;
    if (d->probs) memcpy(s->probs[s->n], d->probs, sizeof s->probs[0]);
    s->d[s->n].probs = 0;
    s->n++;
}

/* The offline path: a cutter with the model's settings, every block into a data set, then
 * flowpic_predict_blocks with another batch size. */
typedef struct offline {
    flowpic_dataset ds;
    flowpic_key keys[4096];
} offline;

static void offline_block(void *user, const flowpic_block *b)
{
    offline *o = (offline *)user;
    uint32_t flow;
    if (o->ds.n_blocks >= 4096) return;
    o->keys[o->ds.n_blocks] = b->key;
    if (flowpic_dataset_add_flow(&o->ds, &b->key, 0, b->flow_generation, &flow) == FLOWPIC_OK)
        flowpic_dataset_add_block(&o->ds, flow, 0, b);
}

static int run_offline(const flowpic_model *m, const flowpic_packet *pk, size_t n, offline *o, float *probs)
{
    flowpic_cutter c;
    flowpic_workspace ws;
    size_t i, idx[4096];
    uint16_t label;
    uint32_t source;
    int ok;
    flowpic_dataset_init(&o->ds, &m->prep.blocks);
    flowpic_dataset_class(&o->ds, "x", &label);
    flowpic_dataset_source(&o->ds, "x", &source);
    if (flowpic_cutter_init(&c, &m->prep.blocks, offline_block, o) != FLOWPIC_OK) return 0;
    for (i = 0; i < n; i++) flowpic_cutter_add(&c, &pk[i]);
    flowpic_cutter_flush(&c);
    flowpic_cutter_free(&c);
    for (i = 0; i < o->ds.n_blocks; i++) idx[i] = i;
    memset(&ws, 0, sizeof ws);
    ok = flowpic_workspace_init(&ws, &m->net, 7, 0) == FLOWPIC_OK &&
         flowpic_predict_blocks(m, &ws, &o->ds, idx, o->ds.n_blocks, probs) == FLOWPIC_OK;
    flowpic_workspace_free(&ws);
    return ok;
}

/* The packets one by one (chunk 0) or chunk at a time through flowpic_classifier_add_batch. */
static int run_online_in(const flowpic_model *m, const flowpic_classifier_config *cfg, const flowpic_packet *pk,
                         size_t n, size_t chunk, seen *s, flowpic_classifier_stats *stats)
{
    flowpic_classifier cl;
    size_t i, k;
    s->n = 0;
    if (flowpic_classifier_init(&cl, m, cfg, collect, s) != FLOWPIC_OK) return 0;
    for (i = 0; i < n; i += k) {
        k = chunk == 0 ? 1 : n - i < chunk ? n - i : chunk;
        if ((chunk == 0 ? flowpic_classifier_add(&cl, &pk[i]) : flowpic_classifier_add_batch(&cl, pk + i, k)) != FLOWPIC_OK)
            return 0;
    }
    if (flowpic_classifier_flush(&cl) != FLOWPIC_OK) return 0;
    flowpic_classifier_stats_get(&cl, stats);
    flowpic_classifier_free(&cl);
    return 1;
}

static int run_online(const flowpic_model *m, const flowpic_classifier_config *cfg, const flowpic_packet *pk,
                      size_t n, seen *s, flowpic_classifier_stats *stats)
{
    return run_online_in(m, cfg, pk, n, 0, s, stats);
}

/* The same decisions, in the same order, bit for bit (probabilities included). */
static void check_same_decisions(const seen *a, const seen *b)
{
    size_t i;
    CHECK_EQ(a->n, b->n);
    for (i = 0; i < a->n && i < b->n; i++) {
        CHECK(!memcmp(&a->d[i], &b->d[i], sizeof a->d[i]));
        CHECK(!memcmp(a->probs[i], b->probs[i], sizeof a->probs[i]));
    }
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_flowtable_remove(void)
{
    flowpic_flowtable ft;
    flowpic_packet p;
    uint8_t *alive = (uint8_t *)calloc(20000, 1);
    uint32_t i, live = 20000;
    flowpic_rng rng;
    CHECK(alive != 0);
    flowpic_rng_seed(&rng, 9);
    flowpic_flowtable_init(&ft, 0, 0);
    memset(&p, 0, sizeof p);
    for (i = 0; i < 20000; i++) {
        p.key = make_key(i, 6);
        CHECK(flowpic_flowtable_add(&ft, &p, 0) == FLOWPIC_OK);
        alive[i] = 1;
    }
    while (live > 5000) { /* remove at random, then every key must still be found where it is */
        flowpic_key k;
        size_t idx = (size_t)(flowpic_rng_next(&rng) % ft.count);
        k = ft.flows[idx].key;
        flowpic_flowtable_remove(&ft, idx);
        CHECK_EQ(flowpic_flowtable_find(&ft, &k), (size_t)-1);
        alive[((uint32_t)k.src[1] << 16) | ((uint32_t)k.src[2] << 8) | k.src[3]] = 0;
        live--;
    }
    CHECK_EQ(ft.count, 5000);
    for (i = 0; i < 20000; i++) {
        flowpic_key k = make_key(i, 6);
        size_t idx = flowpic_flowtable_find(&ft, &k);
        if (!alive[i]) {
            CHECK_EQ(idx, (size_t)-1);
            continue;
        }
        CHECK(idx < ft.count);
        CHECK(!memcmp(&ft.flows[idx].key, &k, sizeof k));
    }
    /* bidirectional: the reverse key finds the flow too */
    flowpic_flowtable_free(&ft);
    flowpic_flowtable_init(&ft, 1, 0);
    p.key = make_key(1, 17);
    CHECK(flowpic_flowtable_add(&ft, &p, 0) == FLOWPIC_OK);
    flowpic_key_reverse(&p.key, &p.key);
    CHECK_EQ(flowpic_flowtable_find(&ft, &p.key), 0);
    flowpic_flowtable_free(&ft);
    free(alive);
}

/* Every final decision equals the offline decision on the same block, bit for bit, whatever the
 * batch size; every flow decision equals the offline vote over its blocks. */
static void test_online_equals_offline(void)
{
    static seen s1, s2;
    static offline off;
    static float probs[4096 * 3];
    flowpic_model m;
    flowpic_classifier_config cfg;
    flowpic_classifier_stats st;
    size_t n, i, j, finals = 0, flows = 0;
    flowpic_packet *pk = make_traffic(24, 400, 1, &n);
    CHECK(pk != 0);
    CHECK(make_model(&m, 0));
    CHECK(run_offline(&m, pk, n, &off, probs));
    CHECK(off.ds.n_blocks > 40);
    flowpic_classifier_config_default(&cfg);
    cfg.batch = 1;
    CHECK(run_online(&m, &cfg, pk, n, &s1, &st));
    cfg.batch = 32;
    CHECK(run_online(&m, &cfg, pk, n, &s2, &st));
    check_same_decisions(&s1, &s2);
    CHECK_EQ(st.packets, n);
    CHECK_EQ(st.batches > 0, 1);
    for (i = 0; i < s2.n; i++) {
        const flowpic_decision *d = &s2.d[i];
        if (d->state == FLOWPIC_DECISION_FINAL) {
            finals++;
            for (j = 0; j < off.ds.n_blocks; j++)
                if (!memcmp(&off.keys[j], &d->key, sizeof d->key) && off.ds.blocks[j].index == d->block) break;
            CHECK(j < off.ds.n_blocks);
            CHECK(!memcmp(s2.probs[i], probs + j * 3, sizeof s2.probs[i]));
            CHECK_EQ(d->packets, off.ds.blocks[j].n_packets);
            CHECK_EQ(d->start_ns, off.ds.blocks[j].start_ns);
        } else if (d->state == FLOWPIC_DECISION_FLOW) {
            uint32_t votes[3] = {0, 0, 0}, label;
            double sums[3] = {0, 0, 0}, conf;
            uint32_t blocks = 0;
            flows++;
            for (j = 0; j < off.ds.n_blocks; j++)
                if (!memcmp(&off.keys[j], &d->key, sizeof d->key)) {
                    flowpic_vote_add(votes, sums, probs + j * 3, 3);
                    blocks++;
                }
            label = flowpic_vote_result(votes, sums, 3, FLOWPIC_VOTE_MAJORITY, &conf);
            CHECK_EQ(d->block, blocks);
            CHECK_EQ(d->label, label);
            CHECK(d->confidence == conf);
            CHECK_EQ(d->end, FLOWPIC_END_FLUSH);
        }
    }
    CHECK_EQ(finals, off.ds.n_blocks);
    CHECK_EQ(st.decisions_final, finals);
    CHECK_EQ(st.decisions_flow, flows);
    CHECK(flows > 10);
    flowpic_dataset_free(&off.ds);
    flowpic_model_free(&m);
    free(pk);
}

/* Early decisions: every N packets of a flow since its last decision, on the open block. */
static void test_early_decisions(void)
{
    static seen s;
    flowpic_model m;
    flowpic_classifier_config cfg;
    flowpic_classifier_stats st;
    flowpic_packet pk[40];
    size_t i, partial = 0;
    CHECK(make_model(&m, 0));
    for (i = 0; i < 40; i++) { /* one flow, a packet a second: all in block 0 */
        memset(&pk[i], 0, sizeof pk[i]);
        pk[i].key = make_key(7, 17);
        pk[i].ts_ns = 5000000000u + i * 1000000000u;
        pk[i].size = 200;
    }
    flowpic_classifier_config_default(&cfg);
    cfg.batch = 1;
    cfg.early_packets = 12;
    CHECK(run_online(&m, &cfg, pk, 40, &s, &st));
    for (i = 0; i < s.n; i++) {
        if (s.d[i].state != FLOWPIC_DECISION_PARTIAL) continue;
        partial++;
        CHECK_EQ(s.d[i].packets, 12 * partial);        /* the open block as it was */
        CHECK_EQ(s.d[i].time_ns, pk[12 * partial - 1].ts_ns); /* decided at that packet */
        CHECK_EQ(s.d[i].block, 0);
        CHECK_EQ(s.d[i].vote_blocks, 0);
    }
    CHECK_EQ(partial, 3);
    CHECK_EQ(st.decisions_partial, 3);
    CHECK_EQ(st.decisions_final, 1);
    /* early_after: every 10 s of an open block, also for a flow that has gone quiet (tick) */
    cfg.early_packets = 0;
    cfg.early_after_ns = 10000000000u;
    CHECK(run_online(&m, &cfg, pk, 25, &s, &st)); /* packets at 5 .. 29 s: decisions at 15, 25 s */
    for (i = 0, partial = 0; i < s.n; i++)
        if (s.d[i].state == FLOWPIC_DECISION_PARTIAL) {
            partial++;
            CHECK_EQ(s.d[i].time_ns, 5000000000u + partial * 10000000000u);
        }
    CHECK_EQ(partial, 2);
    flowpic_model_free(&m);
}

/* Time alone closes windows (tick), the idle timeout ends a flow with its flow decision, and a
 * later packet of the same 5-tuple starts a new flow. */
static void test_tick_and_idle(void)
{
    static seen s;
    flowpic_model m;
    flowpic_classifier cl;
    flowpic_classifier_config cfg;
    flowpic_classifier_stats st;
    flowpic_packet p;
    uint64_t t0 = 7000000000000u;
    int i;
    CHECK(make_model(&m, 0));
    flowpic_classifier_config_default(&cfg);
    cfg.idle_timeout_ns = 120000000000u;
    cfg.batch = 4;
    s.n = 0;
    CHECK(flowpic_classifier_init(&cl, &m, &cfg, collect, &s) == FLOWPIC_OK);
    memset(&p, 0, sizeof p);
    p.key = make_key(3, 6);
    p.size = 1500;
    for (i = 0; i < 20; i++) {
        p.ts_ns = t0 + (uint64_t)i * 100000000u;
        CHECK(flowpic_classifier_add(&cl, &p) == FLOWPIC_OK);
    }
    CHECK(flowpic_classifier_tick(&cl, t0 + 59000000000u) == FLOWPIC_OK);
    CHECK_EQ(s.n, 0); /* silent for less than a block: the window may still get packets */
    CHECK(flowpic_classifier_tick(&cl, t0 + 62000000000u) == FLOWPIC_OK);
    CHECK_EQ(s.n, 1);
    CHECK_EQ(s.d[0].state, FLOWPIC_DECISION_FINAL);
    CHECK_EQ(s.d[0].packets, 20);
    CHECK_EQ(s.d[0].time_ns, t0 + 62000000000u);
    flowpic_classifier_stats_get(&cl, &st);
    CHECK_EQ(st.flows_live, 1);
    CHECK(flowpic_classifier_tick(&cl, t0 + 121899999999u) == FLOWPIC_OK);
    CHECK_EQ(s.n, 1);
    CHECK(flowpic_classifier_tick(&cl, t0 + 121900000000u) == FLOWPIC_OK); /* 120 s after the last packet */
    CHECK_EQ(s.n, 2);
    CHECK_EQ(s.d[1].state, FLOWPIC_DECISION_FLOW);
    CHECK_EQ(s.d[1].end, FLOWPIC_END_IDLE);
    CHECK_EQ(s.d[1].block, 1);
    CHECK_EQ(s.d[1].label, s.d[0].label);
    flowpic_classifier_stats_get(&cl, &st);
    CHECK_EQ(st.flows_live, 0);
    CHECK_EQ(st.flows_idle, 1);
    p.ts_ns = t0 + 200000000000u;
    CHECK(flowpic_classifier_add(&cl, &p) == FLOWPIC_OK);
    flowpic_classifier_stats_get(&cl, &st);
    CHECK_EQ(st.flows_live, 1);
    CHECK_EQ(st.flows_total, 2);
    flowpic_classifier_free(&cl);
    flowpic_model_free(&m);
}

/* Eviction takes the flow idle longest: with a cap of 3, flows A B C, then A again, then D:
 * B goes (A was refreshed). */
static void test_evict_oldest_idle(void)
{
    static seen s;
    flowpic_model m;
    flowpic_classifier cl;
    flowpic_classifier_config cfg;
    flowpic_classifier_stats st;
    flowpic_packet p;
    uint32_t order[5] = {0, 1, 2, 0, 3};
    int i;
    CHECK(make_model(&m, 0));
    flowpic_classifier_config_default(&cfg);
    cfg.max_flows = 3;
    s.n = 0;
    CHECK(flowpic_classifier_init(&cl, &m, &cfg, collect, &s) == FLOWPIC_OK);
    memset(&p, 0, sizeof p);
    p.size = 100;
    for (i = 0; i < 5; i++) {
        p.key = make_key(order[i], 17);
        p.ts_ns = 1000000000u * (uint64_t)(i + 1);
        CHECK(flowpic_classifier_add(&cl, &p) == FLOWPIC_OK);
    }
    flowpic_classifier_stats_get(&cl, &st);
    CHECK_EQ(st.flows_live, 3);
    CHECK_EQ(st.flows_evicted, 1);
    for (i = 0; i < 4; i++) {
        flowpic_key k = make_key((uint32_t)i, 17);
        CHECK_EQ(flowpic_flowtable_find(&cl.cutter.flows, &k) == (size_t)-1, i == 1);
    }
    flowpic_classifier_free(&cl);
    flowpic_model_free(&m);
}

static size_t list_length(const flowpic_classifier *cl, int list)
{
    size_t n = 0;
    uint32_t i;
    for (i = cl->lists[list][0]; i != 0xFFFFFFFFu && n <= cl->cutter.flows.count; i = cl->flows[i].next) n++;
    return n;
}

/* Every live flow is in exactly one of the two lists, after every packet, whatever ends flows:
 * idle timeouts, evictions, early decisions, with time going back now and then (a regression: a flow created by the packet whose
 * arrival had just ended another one was left out of the lists, so flush never ended it). */
static void test_lists_track_every_flow(void)
{
    flowpic_model m;
    flowpic_classifier cl;
    flowpic_classifier_config cfg;
    flowpic_classifier_stats st;
    size_t n, i;
    int round;
    flowpic_packet *pk = make_traffic(24, 300, 3, &n);
    CHECK(pk != 0);
    CHECK(make_model(&m, 0));
    for (i = 0; i + 1 < n; i += 7) { /* time goes back now and then (merged captures) */
        flowpic_packet t = pk[i];
        pk[i] = pk[i + 1];
        pk[i + 1] = t;
    }
    for (round = 0; round < 3; round++) {
        flowpic_classifier_config_default(&cfg);
        cfg.idle_timeout_ns = round == 1 ? 0 : 2000000000u;
        cfg.early_after_ns = 1000000000u;
        cfg.early_packets = round == 2 ? 3 : 0;
        cfg.max_flows = round == 0 ? 1000 : 5;
        cfg.batch = 3;
        CHECK(flowpic_classifier_init(&cl, &m, &cfg, 0, 0) == FLOWPIC_OK);
        for (i = 0; i < n; i++) {
            CHECK(flowpic_classifier_add(&cl, &pk[i]) == FLOWPIC_OK);
            CHECK_EQ(list_length(&cl, 0) + list_length(&cl, 1), cl.cutter.flows.count);
        }
        CHECK(flowpic_classifier_flush(&cl) == FLOWPIC_OK);
        flowpic_classifier_stats_get(&cl, &st);
        CHECK_EQ(st.flows_live, 0);
        CHECK(round == 1 ? st.flows_evicted > 0 : st.flows_idle > 0);
        flowpic_classifier_free(&cl);
    }
    flowpic_model_free(&m);
    free(pk);
}

/* One million distinct 5-tuples: live flows never pass the cap, every flow beyond it is an
 * eviction, and the memory stays under the documented bound (FLOWPIC_CLASSIFIER_FLOW_BYTES per
 * flow of the cap, plus a 16-packet buffer of 10 bytes a packet per flow, plus the fixed part). */
static void test_flood(void)
{
    const uint32_t total = 1000000, cap = 10000;
    flowpic_model m;
    flowpic_classifier cl;
    flowpic_classifier_config cfg;
    flowpic_classifier_stats st;
    flowpic_packet p;
    size_t start = alloc_now, base, bound;
    uint32_t i;
    CHECK(make_model(&m, 0));
    flowpic_classifier_config_default(&cfg);
    cfg.max_flows = cap;
    CHECK(flowpic_classifier_init(&cl, &m, &cfg, 0, 0) == FLOWPIC_OK);
    base = alloc_now;
    alloc_peak = alloc_now;
    bound = base + cap * (FLOWPIC_CLASSIFIER_FLOW_BYTES(3) + 16 * 10) + (64u << 10); /* + a batch of blocks */
    memset(&p, 0, sizeof p);
    p.size = 100;
    for (i = 0; i < total; i++) {
        p.key = make_key(i, (uint8_t)(i & 1 ? 6 : 17));
        p.key.sport = (uint16_t)(i >> 24);
        p.ts_ns = 1000000000000u + (uint64_t)i * 1000u;
        CHECK(flowpic_classifier_add(&cl, &p) == FLOWPIC_OK);
        if ((i & 1023) == 0) {
            flowpic_classifier_stats_get(&cl, &st);
            CHECK(st.flows_live <= cap);
        }
    }
    flowpic_classifier_stats_get(&cl, &st);
    printf("  flood: %u flows, cap %u: live %llu, evicted %llu, peak %zu bytes above the start (bound %zu)\n", total,
           cap, (unsigned long long)st.flows_live, (unsigned long long)st.flows_evicted, alloc_peak - base,
           bound - base);
    CHECK_EQ(st.flows_live, cap);
    CHECK_EQ(st.flows_peak, cap);
    CHECK_EQ(st.flows_total, total);
    CHECK_EQ(st.flows_evicted, total - cap);
    CHECK(alloc_peak <= bound);
    CHECK(flowpic_classifier_flush(&cl) == FLOWPIC_OK);
    flowpic_classifier_stats_get(&cl, &st);
    CHECK_EQ(st.flows_live, 0);
    flowpic_classifier_free(&cl);
    flowpic_model_free(&m);
    CHECK_EQ(alloc_now, start); /* everything given back */
}

#ifdef _OPENMP
/* With OpenMP, inside a parallel region, full batches go to the second thread: the decisions
 * are the same, in the same order, as on one thread. */
static void test_second_thread(void)
{
    static seen s1, s2;
    flowpic_model m;
    flowpic_classifier_config cfg;
    flowpic_classifier_stats st1, st2;
    size_t n;
    int ok = 0;
    flowpic_packet *pk = make_traffic(24, 400, 4, &n);
    CHECK(pk != 0);
    CHECK(make_model(&m, 0));
    flowpic_classifier_config_default(&cfg);
    cfg.batch = 3;
    cfg.early_packets = 40;
    cfg.second_thread = 0;
    CHECK(run_online(&m, &cfg, pk, n, &s1, &st1));
    cfg.second_thread = 1;
#pragma omp parallel num_threads(2)
#pragma omp single
    ok = run_online(&m, &cfg, pk, n, &s2, &st2);
    CHECK(ok);
    printf("  %llu batches, %llu of them on the second thread\n", (unsigned long long)st2.batches,
           (unsigned long long)st2.batches_threaded);
    CHECK_EQ(st1.batches_threaded, 0);
    CHECK(st2.batches_threaded > 10);
    check_same_decisions(&s1, &s2);
    flowpic_model_free(&m);
    free(pk);
}
#endif

/* flowpic_classifier_add_batch gives the decisions of one flowpic_classifier_add a packet, also
 * when flows end in the middle of a batch (a cap of 5 live flows, an idle timeout) and with batch
 * sizes below, at and above FLOWPIC_BATCH. */
static void test_add_batch(void)
{
    static seen s1, s2;
    flowpic_model m;
    flowpic_classifier_config cfg;
    flowpic_classifier_stats st1, st2;
    const size_t chunks[] = {1, 7, FLOWPIC_BATCH, 1000};
    size_t n, c;
    flowpic_packet *pk = make_traffic(24, 400, 5, &n);
    CHECK(pk != 0);
    CHECK(make_model(&m, 0));
    flowpic_classifier_config_default(&cfg);
    cfg.batch = 4;
    cfg.early_packets = 30;
    cfg.max_flows = 5;
    cfg.idle_timeout_ns = 20 * (uint64_t)1000000000u;
    CHECK(run_online(&m, &cfg, pk, n, &s1, &st1));
    CHECK(st1.flows_evicted > 0);
    CHECK(st1.decisions_final > 20);
    for (c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        CHECK(run_online_in(&m, &cfg, pk, n, chunks[c], &s2, &st2));
        CHECK(!memcmp(&st1, &st2, sizeof st1));
        check_same_decisions(&s1, &s2);
    }
    printf("  %zu decisions, %llu evictions, %llu idle ends: equal for batches of 1, 7, %d, 1000\n", s1.n,
           (unsigned long long)st1.flows_evicted, (unsigned long long)st1.flows_idle, FLOWPIC_BATCH);
    flowpic_model_free(&m);
    free(pk);
}

/* ---- harness --------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"flowtable_remove", test_flowtable_remove},     {"online_equals_offline", test_online_equals_offline},
        {"early_decisions", test_early_decisions},       {"tick_and_idle", test_tick_and_idle},
        {"evict_oldest_idle", test_evict_oldest_idle},   {"lists_track_every_flow", test_lists_track_every_flow},
        {"flood", test_flood},                           {"add_batch", test_add_batch},
#ifdef _OPENMP
        {"second_thread", test_second_thread},
#endif
    };
    size_t i;
    int passed = 0, failed = 0;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1])) continue;
        harness_failed = 0;
        tests[i].fn();
        printf("%s %s\n", harness_failed ? "FAIL" : "ok  ", tests[i].name);
        if (harness_failed) failed++;
        else passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
