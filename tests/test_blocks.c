/* flowpic.h blocks and pictures: each preset against blocks and pixels computed by hand on
 * constructed flows, with the boundary cases (a packet exactly at a window edge, size 1500, size
 * > 1500, a single-packet flow, ns timestamps, time going backwards, overlap, gaps, timeouts). */
#include "flowpic.h"

#include <math.h>
#include <stdlib.h>

#include "harness.h"

void test_paper_windows_and_edges(void);
void test_augmentations(void);
void test_paper_pixels(void);
void test_paper_sizes_drop_and_clip(void);
void test_paper_small_flows(void);
void test_paper_time_backwards(void);
void test_paper_overlap_and_gaps(void);
void test_original_preset(void);
void test_tcbench_preset(void);
void test_partial_blocks(void);
void test_idle_timeout(void);
void test_picture_transforms(void);
void test_block_config_errors(void);
void test_batch_same_as_single(void);
void test_picture_many_packets(void);

#define S(x) ((uint64_t)(x) * 1000000000u)
#define MS(x) ((uint64_t)(x) * 1000000u)
#define T0 S(1700000000)

/* Blocks collected from a cutter, with copies of their packets. */
typedef struct collected {
    flowpic_block blocks[64];
    flowpic_pkt packets[64][512];
    int n;
} collected;

static void collect(void *user, const flowpic_block *b)
{
    collected *c = (collected *)user;
    uint32_t n = b->n_packets < 512 ? b->n_packets : 512;
    if (c->n >= 64) return;
    c->blocks[c->n] = *b;
    memcpy(c->packets[c->n], b->packets, n * sizeof *b->packets);
    c->blocks[c->n].packets = c->packets[c->n];
    c->n++;
}

static flowpic_packet pkt(uint64_t ts, uint32_t size, int reverse)
{
    flowpic_packet p;
    memset(&p, 0, sizeof p);
    p.ts_ns = ts;
    p.size = size;
    p.key.ip_version = 4;
    p.key.proto = 17;
    p.key.src[0] = reverse ? 2 : 1;
    p.key.dst[0] = reverse ? 1 : 2;
    p.key.sport = reverse ? 53 : 5000;
    p.key.dport = reverse ? 5000 : 53;
    return p;
}

static collected *new_collected(void) { return (collected *)calloc(1, sizeof(collected)); }

/* Feeds n packets at T0 + times[i] with sizes[i] (size 0 = 100) and flushes. */
static int cut(const flowpic_block_config *cfg, const uint64_t *times, const uint32_t *sizes, int n,
               collected *out)
{
    flowpic_cutter c;
    int i;
    if (flowpic_cutter_init(&c, cfg, collect, out) != FLOWPIC_OK) return 0;
    for (i = 0; i < n; i++) {
        flowpic_packet p = pkt(T0 + times[i], sizes && sizes[i] ? sizes[i] : 100, 0);
        if (flowpic_cutter_add(&c, &p) != FLOWPIC_OK) return 0;
    }
    if (flowpic_cutter_flush(&c) != FLOWPIC_OK) return 0;
    flowpic_cutter_free(&c);
    return 1;
}

void test_paper_windows_and_edges(void)
{
    flowpic_block_config cfg;
    uint64_t t[20];
    collected *c = new_collected();
    int i;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    for (i = 0; i < 12; i++) t[i] = S(5 * i); /* 0, 5, ..., 55 s */
    t[12] = S(60);                         /* exactly at the edge: the next window */
    CHECK(cut(&cfg, t, 0, 13, c));
    CHECK_EQ(c->n, 1);
    CHECK_EQ(c->blocks[0].index, 0);
    CHECK_EQ(c->blocks[0].start_ns, T0);
    CHECK_EQ(c->blocks[0].n_packets, 12);
    CHECK_EQ(c->blocks[0].state, FLOWPIC_BLOCK_FINAL);
    CHECK_EQ(FLOWPIC_PKT_OFFSET(c->blocks[0].packets[11]), S(55));
    /* seven more after the edge: window 1 holds 8, a block only when min_packets <= 8 */
    for (i = 13; i < 20; i++) t[i] = S(60) + S(i);
    c->n = 0;
    CHECK(cut(&cfg, t, 0, 20, c));
    CHECK_EQ(c->n, 1); /* window 1 holds 8: not a block */
    c->n = 0;
    cfg.min_packets = 8;
    CHECK(cut(&cfg, t, 0, 20, c));
    CHECK_EQ(c->n, 2);
    CHECK_EQ(c->blocks[1].index, 1);
    CHECK_EQ(c->blocks[1].start_ns, T0 + S(60));
    CHECK_EQ(c->blocks[1].n_packets, 8);
    CHECK_EQ(FLOWPIC_PKT_OFFSET(c->blocks[1].packets[0]), 0);
    free(c);
}

void test_paper_pixels(void)
{
    flowpic_block_config cfg;
    flowpic_picture pic;
    uint64_t t[12];
    uint32_t z[12];
    collected *c = new_collected();
    int i;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    /* column = floor(offset * R / 60 s); row = floor((size - 1) * R / 1500) */
    t[0] = 0;                z[0] = 1;       /* (0, 0) */
    t[1] = MS(40) - 1;       z[1] = 1;       /* 39.999999 ms: still column 0 -> (0, 0) x2 */
    t[2] = MS(40);           z[2] = 1500;    /* column 1, row 1499 */
    t[3] = S(60) - 1;        z[3] = 1500;    /* 59.999999999 s: column 1499 */
    t[4] = S(30);            z[4] = 751;     /* column 750, row 750 */
    for (i = 5; i < 12; i++) {
        t[i] = S(30);
        z[i] = 751;                          /* the same pixel: count 8 */
    }
    CHECK(cut(&cfg, t, z, 12, c));
    CHECK_EQ(c->n, 1);
    memset(&pic, 0, sizeof pic);
    CHECK_EQ(flowpic_picture_from_block(&pic, &c->blocks[0], 1500), FLOWPIC_OK);
    CHECK_EQ(pic.packets, 12);
    CHECK_EQ(pic.n, 4);
    CHECK_EQ(pic.pixels[0].index, 0);
    CHECK_EQ(pic.pixels[0].count, 2);
    CHECK_EQ(pic.pixels[1].index, 750u * 1500 + 750);
    CHECK_EQ(pic.pixels[1].count, 8);
    CHECK_EQ(pic.pixels[2].index, 1499u * 1500 + 1);
    CHECK_EQ(pic.pixels[3].index, 1499u * 1500 + 1499);
    /* at R = 32: row = floor((s - 1) * 32 / 1500), column = floor(offset * 32 / 60 s) */
    CHECK_EQ(flowpic_picture_from_block(&pic, &c->blocks[0], 32), FLOWPIC_OK);
    CHECK_EQ(pic.n, 4);
    CHECK_EQ(pic.pixels[0].index, 0);
    CHECK_EQ(pic.pixels[0].count, 2);
    CHECK_EQ(pic.pixels[1].index, 16u * 32 + 16);
    CHECK_EQ(pic.pixels[1].count, 8);
    CHECK_EQ(pic.pixels[2].index, 31u * 32 + 0); /* at R = 32 the 40 ms packet is in column 0 */
    CHECK_EQ(pic.pixels[3].index, 31u * 32 + 31);
    flowpic_picture_free(&pic);
    free(c);
}

void test_paper_sizes_drop_and_clip(void)
{
    flowpic_block_config cfg;
    flowpic_picture pic;
    uint64_t t[12];
    uint32_t z[12];
    collected *c = new_collected();
    int i;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    /* the first packet is over 1500: dropped before anything, so t0 is the second packet */
    t[0] = 0;
    z[0] = 1501;
    for (i = 1; i < 12; i++) {
        t[i] = S(10) + S(i);
        z[i] = i == 5 ? 9000 : 100;
    }
    CHECK(cut(&cfg, t, z, 12, c));
    CHECK_EQ(c->n, 1);
    CHECK_EQ(c->blocks[0].start_ns, T0 + S(11));
    CHECK_EQ(c->blocks[0].n_packets, 10); /* 11 minus the jumbo */
    /* clip: the jumbos count at 1500 (row 1499), and t0 is the first packet */
    c->n = 0;
    cfg.size_policy = FLOWPIC_SIZE_CLIP;
    CHECK(cut(&cfg, t, z, 12, c));
    CHECK_EQ(c->n, 1);
    CHECK_EQ(c->blocks[0].start_ns, T0);
    CHECK_EQ(c->blocks[0].n_packets, 12);
    CHECK_EQ(FLOWPIC_PKT_SIZE(c->blocks[0].packets[0]), 1500);
    memset(&pic, 0, sizeof pic);
    CHECK_EQ(flowpic_picture_from_block(&pic, &c->blocks[0], 1500), FLOWPIC_OK);
    CHECK_EQ(pic.pixels[pic.n - 1].index / 1500, 1499);
    flowpic_picture_free(&pic);
    free(c);
}

void test_paper_small_flows(void)
{
    flowpic_block_config cfg;
    uint64_t t[10];
    collected *c = new_collected();
    int i;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    t[0] = 0;
    CHECK(cut(&cfg, t, 0, 1, c)); /* a single-packet flow */
    CHECK_EQ(c->n, 0);
    cfg.min_packets = 1;
    CHECK(cut(&cfg, t, 0, 1, c));
    CHECK_EQ(c->n, 1);
    CHECK_EQ(c->blocks[0].n_packets, 1);
    c->n = 0;
    cfg.min_packets = 10;
    for (i = 0; i < 10; i++) t[i] = S(59) + (uint64_t)i; /* ns apart: exactly 10, one window */
    CHECK(cut(&cfg, t, 0, 10, c));
    CHECK_EQ(c->n, 1);
    CHECK_EQ(FLOWPIC_PKT_OFFSET(c->blocks[0].packets[9]), 9);
    free(c);
}

void test_paper_time_backwards(void)
{
    flowpic_block_config cfg;
    uint64_t t[25];
    collected *c = new_collected();
    int i;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    for (i = 0; i < 12; i++) t[i] = S(i);       /* window 0 */
    for (i = 12; i < 23; i++) t[i] = S(70 + i); /* window 1: 82..92 s */
    t[23] = S(30);                              /* earlier than window 1: offset 0 there */
    t[24] = S(5) - S(1);                        /* and again */
    CHECK(cut(&cfg, t, 0, 25, c));
    CHECK_EQ(c->n, 2);
    CHECK_EQ(c->blocks[0].n_packets, 12);
    CHECK_EQ(c->blocks[1].index, 1);
    CHECK_EQ(c->blocks[1].n_packets, 13);
    CHECK_EQ(FLOWPIC_PKT_OFFSET(c->blocks[1].packets[11]), 0);
    CHECK_EQ(FLOWPIC_PKT_OFFSET(c->blocks[1].packets[12]), 0);
    /* a packet before the flow's first one counts at its start */
    t[0] = S(10);
    t[1] = S(2);
    for (i = 2; i < 12; i++) t[i] = S(10 + i);
    c->n = 0;
    CHECK(cut(&cfg, t, 0, 12, c));
    CHECK_EQ(c->n, 1);
    CHECK_EQ(c->blocks[0].start_ns, T0 + S(10));
    CHECK_EQ(FLOWPIC_PKT_OFFSET(c->blocks[0].packets[1]), 0);
    free(c);
}

void test_paper_overlap_and_gaps(void)
{
    flowpic_block_config cfg;
    static uint64_t t[120];
    collected *c = new_collected();
    int i;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    cfg.step_ns = S(30);
    for (i = 0; i < 90; i++) t[i] = S(i); /* one packet a second, 0 .. 89 s */
    CHECK(cut(&cfg, t, 0, 90, c));
    /* windows [0,60) 60 packets, [30,90) 60, [60,120) 30, [90,150) none */
    CHECK_EQ(c->n, 3);
    CHECK_EQ(c->blocks[0].n_packets, 60);
    CHECK_EQ(c->blocks[1].n_packets, 60);
    CHECK_EQ(c->blocks[1].start_ns, T0 + S(30));
    CHECK_EQ(FLOWPIC_PKT_OFFSET(c->blocks[1].packets[0]), 0);
    CHECK_EQ(c->blocks[2].n_packets, 30);
    CHECK_EQ(c->blocks[2].index, 2);
    /* a gap of many windows: no empty window is visited, the block after it has k = 16 */
    cfg.step_ns = cfg.block_ns;
    for (i = 0; i < 11; i++) t[i] = S(i);
    for (i = 11; i < 22; i++) t[i] = S(989 + i); /* 1000 .. 1010 s */
    c->n = 0;
    CHECK(cut(&cfg, t, 0, 22, c));
    CHECK_EQ(c->n, 2);
    CHECK_EQ(c->blocks[1].index, 16);
    CHECK_EQ(c->blocks[1].start_ns, T0 + S(960));
    /* a gap of years is fine too */
    t[11] = S(100000000);
    c->n = 0;
    CHECK(cut(&cfg, t, 0, 12, c));
    CHECK_EQ(c->n, 1);
    free(c);
}

void test_original_preset(void)
{
    flowpic_block_config cfg;
    flowpic_picture pic;
    uint64_t t[40];
    uint32_t z[40];
    collected *c = new_collected();
    int i;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_ORIGINAL);
    /* every 5 s from 0 to 125 s: T = 125, windows k = 0, 1 ([0,60], [60,120]); the tail goes */
    for (i = 0; i < 26; i++) {
        t[i] = S(5 * i);
        z[i] = 200;
    }
    CHECK(cut(&cfg, t, z, 26, c));
    CHECK_EQ(c->n, 2);
    CHECK_EQ(c->blocks[0].n_packets, 13); /* 0, 5, ..., 60: closed at both ends */
    CHECK_EQ(c->blocks[1].n_packets, 13); /* 60, ..., 120: the 60 s packet is in both */
    CHECK_EQ(c->blocks[1].start_ns, T0 + S(60));
    memset(&pic, 0, sizeof pic);
    CHECK_EQ(flowpic_picture_from_block(&pic, &c->blocks[0], 1500), FLOWPIC_OK);
    /* stretched to the window's own span 0 .. 60 s: column = floor(offset / 60 * 1500), the last
     * packet in column min(1500, 1499); row = min(size, 1499) = 200 */
    CHECK_EQ(pic.n, 13);
    CHECK_EQ(pic.pixels[0].index, 200u * 1500 + 0);
    CHECK_EQ(pic.pixels[1].index, 200u * 1500 + 125);
    CHECK_EQ(pic.pixels[12].index, 200u * 1500 + 1499);
    /* a window whose packets span 50 s or less is dropped: the stretch needs a span */
    for (i = 0; i < 26; i++) t[i] = S(2 * i); /* 0 .. 50 s, T = 50: one window, span 50 */
    c->n = 0;
    CHECK(cut(&cfg, t, z, 26, c));
    CHECK_EQ(c->n, 0);
    t[25] = S(51); /* span 51 s */
    CHECK(cut(&cfg, t, z, 26, c));
    CHECK_EQ(c->n, 1);
    /* the stretch at a span of 51 s: the packet at 2 s is in column floor(2/51 * 1500) = 58 */
    CHECK_EQ(flowpic_picture_from_block(&pic, &c->blocks[0], 1500), FLOWPIC_OK);
    CHECK_EQ(pic.pixels[1].index % 1500, 58);
    /* sessions of 10 packets or fewer give nothing; sizes over 1500 stay out of the picture */
    c->n = 0;
    CHECK(cut(&cfg, t, z, 10, c));
    CHECK_EQ(c->n, 0);
    for (i = 0; i < 13; i++) {
        t[i] = S(5 * i);
        z[i] = i == 3 ? 1600 : 1500;
    }
    CHECK(cut(&cfg, t, z, 13, c));
    CHECK_EQ(c->n, 1);
    CHECK_EQ(flowpic_picture_from_block(&pic, &c->blocks[0], 1500), FLOWPIC_OK);
    CHECK_EQ(pic.packets, 12);
    CHECK_EQ(flowpic_picture_packets(FLOWPIC_PRESET_ORIGINAL, c->blocks[0].packets, c->blocks[0].n_packets), 12);
    CHECK_EQ(flowpic_picture_packets(FLOWPIC_PRESET_PAPER, c->blocks[0].packets, c->blocks[0].n_packets), 13);
    CHECK_EQ(pic.pixels[0].index / 1500, 1499);
    flowpic_picture_free(&pic);
    free(c);
}

void test_tcbench_preset(void)
{
    flowpic_block_config cfg;
    flowpic_cutter cut_state;
    flowpic_picture pic;
    collected *c = new_collected();
    float *dense;
    int i;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_TCBENCH);
    CHECK_EQ(flowpic_cutter_init(&cut_state, &cfg, collect, c), FLOWPIC_OK);
    for (i = 0; i < 300; i++) { /* both directions, 300 packets in the first second */
        flowpic_packet p = pkt(T0 + MS(3 * i), i % 2 ? 1600 : 40, i % 2);
        CHECK_EQ(flowpic_cutter_add(&cut_state, &p), FLOWPIC_OK);
    }
    {
        flowpic_packet p = pkt(T0 + S(15) - 1, 700, 0); /* 14.999999999 s: in */
        CHECK_EQ(flowpic_cutter_add(&cut_state, &p), FLOWPIC_OK);
        p = pkt(T0 + S(15), 700, 1); /* exactly 15 s: out (strict), and the block is final */
        CHECK_EQ(flowpic_cutter_add(&cut_state, &p), FLOWPIC_OK);
        CHECK_EQ(c->n, 1);
        p = pkt(T0 + S(16), 700, 1);
        CHECK_EQ(flowpic_cutter_add(&cut_state, &p), FLOWPIC_OK);
    }
    CHECK_EQ(flowpic_cutter_flush(&cut_state), FLOWPIC_OK);
    CHECK_EQ(c->n, 1); /* one block per flow */
    CHECK_EQ(cut_state.flows.count, 1);
    flowpic_cutter_free(&cut_state);
    CHECK_EQ(c->blocks[0].n_packets, 301);
    memset(&pic, 0, sizeof pic);
    CHECK_EQ(flowpic_picture_from_block(&pic, &c->blocks[0], 32), FLOWPIC_OK);
    /* row = min(floor(size / 1500 * 32), 31): 40 -> 0, 1600 -> clipped 1500 -> 31, 700 -> 14;
     * column = floor(offset / 15 s * 32): the first 468.75 ms are column 0 */
    CHECK_EQ(pic.n, 5);
    CHECK_EQ(pic.pixels[0].index, 0);
    CHECK_EQ(pic.pixels[0].count, 79); /* i even, 3i ms < 468.75 ms: i = 0, 2, ..., 156 */
    CHECK_EQ(pic.pixels[1].index, 1);  /* the rest of the small packets (up to 897 ms) */
    CHECK_EQ(pic.pixels[1].count, 71);
    CHECK_EQ(pic.pixels[2].index, 14u * 32 + 31);
    CHECK_EQ(pic.pixels[3].index, 31u * 32 + 0);
    CHECK_EQ(pic.pixels[3].count, 78);
    dense = (float *)malloc(32 * 32 * sizeof *dense);
    CHECK(dense != 0);
    flowpic_picture_render(&pic, FLOWPIC_VALUE_SCALE, dense);
    CHECK(dense[0] > 0.3097f && dense[0] < 0.3099f); /* 79 / 255 */
    CHECK(dense[2] == 0.0f);
    free(dense);
    flowpic_picture_free(&pic);
    free(c);
}

void test_partial_blocks(void)
{
    flowpic_block_config cfg;
    flowpic_cutter cut_state;
    flowpic_block b;
    int i;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    CHECK_EQ(flowpic_cutter_init(&cut_state, &cfg, 0, 0), FLOWPIC_OK);
    CHECK_EQ(flowpic_cutter_partial(&cut_state, 0, &b), FLOWPIC_ERR_ARG);
    for (i = 0; i < 12; i++) {
        flowpic_packet p = pkt(T0 + S(i), 100, 0);
        CHECK_EQ(flowpic_cutter_add(&cut_state, &p), FLOWPIC_OK);
        CHECK_EQ(flowpic_cutter_partial(&cut_state, 0, &b), FLOWPIC_OK);
        CHECK_EQ(b.n_packets, (uint32_t)i + 1);
        CHECK_EQ(b.state, i + 1 < 10 ? FLOWPIC_BLOCK_COLLECTING : FLOWPIC_BLOCK_PARTIAL);
    }
    CHECK_EQ(cut_state.blocks, 0);
    flowpic_cutter_free(&cut_state);
}

void test_idle_timeout(void)
{
    flowpic_block_config cfg;
    uint64_t t[22];
    collected *c = new_collected();
    int i;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    cfg.idle_timeout_ns = S(10);
    for (i = 0; i < 11; i++) t[i] = S(i);
    for (i = 11; i < 22; i++) t[i] = S(25 + i); /* 15 s of silence: a new flow at 36 s */
    CHECK(cut(&cfg, t, 0, 22, c));
    CHECK_EQ(c->n, 2);
    CHECK_EQ(c->blocks[0].flow_generation, 0);
    CHECK_EQ(c->blocks[1].flow_generation, 1);
    CHECK_EQ(c->blocks[1].index, 0);
    CHECK_EQ(c->blocks[1].start_ns, T0 + S(36));
    CHECK_EQ(c->blocks[0].flow, c->blocks[1].flow);
    free(c);
}

void test_picture_transforms(void)
{
    CHECK(flowpic_transform_value(FLOWPIC_VALUE_RAW, 300) == 300.0f);
    CHECK(flowpic_transform_value(FLOWPIC_VALUE_CLIP255, 300) == 255.0f);
    CHECK(flowpic_transform_value(FLOWPIC_VALUE_SCALE, 300) == 1.0f);
    CHECK(flowpic_transform_value(FLOWPIC_VALUE_SCALE, 51) == 0.2f);
    CHECK(flowpic_transform_value(FLOWPIC_VALUE_BINARY, 7) == 1.0f);
    CHECK(flowpic_transform_value(FLOWPIC_VALUE_BINARY, 0) == 0.0f);
    CHECK(flowpic_transform_value(FLOWPIC_VALUE_LOG1P, 0) == 0.0f);
    CHECK(flowpic_transform_value(FLOWPIC_VALUE_LOG1P, 1) > 0.6931f);
    CHECK(flowpic_transform_value(FLOWPIC_VALUE_LOG1P, 1) < 0.6932f);
    {
        flowpic_transform tr;
        CHECK(flowpic_transform_from_name("binary", &tr));
        CHECK_EQ(tr, FLOWPIC_VALUE_BINARY);
        CHECK(!flowpic_transform_from_name("nope", &tr));
    }
}

void test_block_config_errors(void)
{
    flowpic_block_config cfg;
    flowpic_cutter c;
    flowpic_preset p;
    flowpic_picture pic;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    CHECK_EQ(flowpic_block_config_check(&cfg), FLOWPIC_OK);
    cfg.step_ns = cfg.block_ns + 1;
    CHECK_EQ(flowpic_cutter_init(&c, &cfg, 0, 0), FLOWPIC_ERR_ARG);
    cfg.step_ns = 1; /* 60e9 windows open at once */
    CHECK_EQ(flowpic_block_config_check(&cfg), FLOWPIC_ERR_LIMIT);
    cfg.step_ns = cfg.block_ns;
    cfg.block_ns = FLOWPIC_MAX_OFFSET_NS + 1;
    CHECK_EQ(flowpic_block_config_check(&cfg), FLOWPIC_ERR_ARG);
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_ORIGINAL);
    cfg.block_ns = S(30);
    cfg.step_ns = S(30);
    CHECK_EQ(flowpic_block_config_check(&cfg), FLOWPIC_ERR_ARG);
    CHECK(flowpic_preset_from_name("tcbench", &p));
    CHECK_EQ(p, FLOWPIC_PRESET_TCBENCH);
    CHECK(!flowpic_preset_from_name("keras", &p));
    memset(&pic, 0, sizeof pic);
    CHECK_EQ(flowpic_picture_build(&pic, FLOWPIC_PRESET_PAPER, S(60), 0, 0, 0), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_picture_build(&pic, FLOWPIC_PRESET_PAPER, S(60), 0, 0, FLOWPIC_MAX_RES + 1), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_picture_build(&pic, FLOWPIC_PRESET_PAPER, S(60), 0, 0, 1500), FLOWPIC_OK);
    CHECK_EQ(pic.n, 0);
    flowpic_picture_free(&pic);
}

/* ---- augmentations ---------------------------------------------------------------------------- */

/* 1 when out[0 .. m) is a subsequence of in[0 .. n) (same packets, same order). */
static int is_subsequence(const flowpic_pkt *out, uint32_t m, const flowpic_pkt *in, uint32_t n)
{
    uint32_t i = 0, j = 0;
    for (; i < n && j < m; i++)
        if (in[i] == out[j]) j++;
    return j == m;
}

void test_augmentations(void)
{
    enum { N = 600 };
    const uint64_t L = 60000000000ull;
    flowpic_pkt in[N], out[N], again[N];
    flowpic_augment a;
    flowpic_rng rng, rng2;
    uint32_t i, m, trial;
    for (i = 0; i < N; i++) in[i] = FLOWPIC_PKT((uint64_t)i * 100000000ull, 40 + i % 1400); /* every 0.1 s */
    memset(&a, 0, sizeof a);
    flowpic_rng_seed(&rng, 7);
    CHECK(!flowpic_augment_active(&a));
    CHECK_EQ(flowpic_augment_packets(&a, L, in, N, out, &rng), N); /* all off: a copy */
    CHECK(memcmp(in, out, sizeof in) == 0);
    for (trial = 0; trial < 50; trial++) {
        double scale, shift;
        /* change RTT: one factor in [0.5, 1.5] for every offset, the ones past L dropped */
        memset(&a, 0, sizeof a);
        a.share = 1;
        a.rtt = 0.5;
        m = flowpic_augment_packets(&a, L, in, N, out, &rng);
        CHECK(m >= 2);
        scale = (double)FLOWPIC_PKT_OFFSET(out[m - 1]) / (double)FLOWPIC_PKT_OFFSET(in[m - 1]);
        CHECK(scale >= 0.5 && scale <= 1.5);
        for (i = 1; i < m; i++) {
            CHECK(fabs((double)FLOWPIC_PKT_OFFSET(out[i]) - scale * (double)FLOWPIC_PKT_OFFSET(in[i])) < 2.0 + 1e-9 * (double)FLOWPIC_PKT_OFFSET(in[i]));
            CHECK_EQ(FLOWPIC_PKT_SIZE(out[i]), FLOWPIC_PKT_SIZE(in[i]));
            CHECK(FLOWPIC_PKT_OFFSET(out[i]) < L);
        }
        CHECK(m == N || (double)FLOWPIC_PKT_OFFSET(in[m]) * scale >= (double)L - 2);
        /* time shift: one constant within +-1 s; what leaves [0, L) is dropped */
        memset(&a, 0, sizeof a);
        a.share = 1;
        a.shift_s = 1;
        m = flowpic_augment_packets(&a, L, in, N, out, &rng);
        CHECK(m >= N - 10 && m <= N);
        {
            uint32_t skip = 0;
            while (skip < N && FLOWPIC_PKT_SIZE(in[skip]) != FLOWPIC_PKT_SIZE(out[0])) skip++;
            shift = (double)FLOWPIC_PKT_OFFSET(out[0]) - (double)FLOWPIC_PKT_OFFSET(in[skip]);
            CHECK(fabs(shift) <= 1e9);
            for (i = 0; i < m; i++) {
                CHECK(fabs((double)FLOWPIC_PKT_OFFSET(out[i]) - (double)FLOWPIC_PKT_OFFSET(in[skip + i]) - shift) < 2);
                CHECK_EQ(FLOWPIC_PKT_SIZE(out[i]), FLOWPIC_PKT_SIZE(in[skip + i]));
            }
        }
        /* packet loss: the dropped packets lie within 0.2 s of each other */
        memset(&a, 0, sizeof a);
        a.share = 1;
        a.loss_s = 0.1;
        m = flowpic_augment_packets(&a, L, in, N, out, &rng);
        CHECK(m >= N - 3 && m <= N);
        CHECK(is_subsequence(out, m, in, N));
        {
            uint64_t lo = UINT64_MAX, hi = 0;
            uint32_t j = 0;
            for (i = 0; i < N; i++) {
                if (j < m && out[j] == in[i]) {
                    j++;
                    continue;
                }
                if (FLOWPIC_PKT_OFFSET(in[i]) < lo) lo = FLOWPIC_PKT_OFFSET(in[i]);
                if (FLOWPIC_PKT_OFFSET(in[i]) > hi) hi = FLOWPIC_PKT_OFFSET(in[i]);
            }
            CHECK(m == N || hi - lo <= 200000000ull);
        }
        /* thinning keeps a subsequence; truncation keeps a prefix of at least truncate_s */
        memset(&a, 0, sizeof a);
        a.share = 1;
        a.thin = 0.5;
        m = flowpic_augment_packets(&a, L, in, N, out, &rng);
        CHECK(m >= N / 2 - 60 && m <= N);
        CHECK(is_subsequence(out, m, in, N));
        memset(&a, 0, sizeof a);
        a.share = 1;
        a.truncate_s = 10;
        m = flowpic_augment_packets(&a, L, in, N, out, &rng);
        CHECK(m >= 100 && m <= N);
        CHECK(memcmp(out, in, m * sizeof *in) == 0);
    }
    /* everything at once: the same seed gives the same packets; in place works */
    memset(&a, 0, sizeof a);
    a.share = 0.5;
    a.rtt = 0.5, a.shift_s = 1, a.loss_s = 0.1, a.thin = 0.5, a.truncate_s = 10;
    for (trial = 0; trial < 20; trial++) {
        uint32_t m2;
        flowpic_rng_seed(&rng, trial);
        flowpic_rng_seed(&rng2, trial);
        m = flowpic_augment_packets(&a, L, in, N, out, &rng);
        memcpy(again, in, sizeof in);
        m2 = flowpic_augment_packets(&a, L, again, N, again, &rng2);
        CHECK_EQ(m, m2);
        CHECK(memcmp(out, again, m * sizeof *out) == 0);
        for (i = 1; i < m; i++) CHECK(FLOWPIC_PKT_OFFSET(out[i - 1]) <= FLOWPIC_PKT_OFFSET(out[i]));
    }
}

/* A digest of every block emitted, in order: what flowpic_cutter_add_batch must reproduce. */
typedef struct digest {
    uint64_t blocks, packets, hash;
} digest;

static void digest_mix(digest *d, uint64_t v) { d->hash = (d->hash ^ v) * 0x100000001B3ull + 0x9E3779B97F4A7C15ull; }

static void digest_block(void *user, const flowpic_block *b)
{
    digest *d = (digest *)user;
    uint32_t i;
    d->blocks++;
    d->packets += b->n_packets;
    digest_mix(d, b->flow);
    digest_mix(d, b->flow_generation);
    digest_mix(d, b->index);
    digest_mix(d, b->start_ns);
    digest_mix(d, b->n_packets);
    digest_mix(d, (uint64_t)b->key.sport << 16 | b->key.dport);
    for (i = 0; i < b->n_packets; i++) digest_mix(d, b->packets[i]);
}

/* 40 flows, 20,000 packets over 10 minutes, some going back in time and some over 1500
 * bytes: fed one at a time, or in batches of `batch`. Returns the result of the last add. */
static flowpic_result feed(const flowpic_block_config *cfg, size_t batch, digest *d, uint64_t *kept)
{
    static flowpic_packet ps[20000];
    flowpic_cutter c;
    flowpic_result res;
    uint64_t x = 12345;
    size_t i;
    memset(d, 0, sizeof *d);
    for (i = 0; i < 20000; i++) {
        uint64_t t;
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        t = T0 + (uint64_t)i * MS(30) - ((x >> 60) == 0 ? S(2) : 0); /* one in 16 goes back 2 s */
        ps[i] = pkt(t, (uint32_t)((x >> 20) % 1600) + 1, (int)((x >> 40) & 1));
        ps[i].key.sport = (uint16_t)(1000 + (x >> 44) % 20); /* 20 ports x 2 directions */
    }
    if (flowpic_cutter_init(&c, cfg, digest_block, d) != FLOWPIC_OK) return FLOWPIC_ERR_ARG;
    res = FLOWPIC_OK;
    for (i = 0; i < 20000 && res == FLOWPIC_OK; i += batch ? batch : 1) {
        size_t n = batch ? (20000 - i < batch ? 20000 - i : batch) : 1;
        res = batch ? flowpic_cutter_add_batch(&c, ps + i, n) : flowpic_cutter_add(&c, ps + i);
    }
    if (res == FLOWPIC_OK) res = flowpic_cutter_flush(&c);
    *kept = c.packets_kept;
    flowpic_cutter_free(&c);
    return res;
}

void test_batch_same_as_single(void)
{
    static const size_t batches[] = {1, 7, 32, 33, 1000};
    flowpic_block_config cfg[5];
    digest one, many;
    uint64_t kept_one, kept_many;
    size_t i, j;
    flowpic_block_config_preset(&cfg[0], FLOWPIC_PRESET_PAPER);
    flowpic_block_config_preset(&cfg[1], FLOWPIC_PRESET_PAPER);
    cfg[1].step_ns = S(20); /* overlapping windows, clipped sizes, a timeout */
    cfg[1].size_policy = FLOWPIC_SIZE_CLIP;
    cfg[1].idle_timeout_ns = S(30);
    cfg[1].min_packets = 1;
    flowpic_block_config_preset(&cfg[2], FLOWPIC_PRESET_ORIGINAL);
    flowpic_block_config_preset(&cfg[3], FLOWPIC_PRESET_TCBENCH);
    flowpic_block_config_preset(&cfg[4], FLOWPIC_PRESET_PAPER);
    cfg[3].min_packets = 1;
    cfg[4].max_flows = 25; /* the flow limit is hit in the middle of a batch */
    for (i = 0; i < 5; i++) {
        flowpic_result r1 = feed(&cfg[i], 0, &one, &kept_one);
        CHECK_EQ(r1, i == 4 ? FLOWPIC_ERR_FLOW_LIMIT : FLOWPIC_OK);
        CHECK(i == 4 ? kept_one > 25 && kept_one < 20000 : one.blocks >= 40);
        for (j = 0; j < sizeof batches / sizeof *batches; j++) {
            CHECK_EQ(feed(&cfg[i], batches[j], &many, &kept_many), r1);
            CHECK_EQ(many.blocks, one.blocks);
            CHECK_EQ(many.packets, one.packets);
            CHECK_EQ(many.hash, one.hash);
            CHECK_EQ(kept_many, kept_one);
        }
    }
}

/* flowpic_picture_build sorts the packets' pixel indices: up to 32 by insertion, more by radix
 * passes (one per byte of the largest index: 1, 2 and 3 at R = 16, 64 and 1500). Checked against
 * a count of every pixel of a dense grid, for 1 .. 5000 packets of random offsets and sizes. */
void test_picture_many_packets(void)
{
    static const uint32_t res[] = {16, 64, 1500};
    static const uint32_t counts[] = {1, 2, 31, 32, 33, 257, 5000};
    const uint64_t length = S(60);
    flowpic_pkt *pk = (flowpic_pkt *)malloc(5000 * sizeof *pk);
    uint32_t *grid = (uint32_t *)malloc(1500u * 1500u * sizeof *grid);
    flowpic_picture pic;
    uint64_t x = 88172645463325252u;
    size_t r, k;
    CHECK(pk && grid);
    if (!pk || !grid) return;
    memset(&pic, 0, sizeof pic);
    for (r = 0; r < 3; r++)
        for (k = 0; k < sizeof counts / sizeof counts[0]; k++) {
            const uint32_t R = res[r], n = counts[k];
            uint32_t i, nonzero = 0, packets = 0, j = 0;
            int same = 1;
            memset(grid, 0, (size_t)R * R * sizeof *grid);
            for (i = 0; i < n; i++) {
                uint64_t off, row, col;
                uint32_t size;
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                off = (x >> 8) % length;
                size = (uint32_t)(x % (k == 2 ? 3u : 1500u)) + 1; /* 31 packets: few rows, repeats */
                pk[i] = FLOWPIC_PKT(off, size);
                row = (uint64_t)(size - 1) * R / 1500;
                col = off * R / length;
                grid[row * R + col]++;
            }
            CHECK_EQ(flowpic_picture_build(&pic, FLOWPIC_PRESET_PAPER, length, pk, n, R), FLOWPIC_OK);
            for (i = 0; i < R * R; i++) {
                if (!grid[i]) continue;
                nonzero++;
                packets += grid[i];
                if (j >= pic.n || pic.pixels[j].index != i || pic.pixels[j].count != grid[i]) same = 0;
                j++;
            }
            CHECK_EQ(pic.n, nonzero);
            CHECK_EQ(pic.packets, packets);
            if (!same) printf("  R = %u, %u packets: pixels differ from the dense count\n", R, n);
            CHECK(same);
        }
    flowpic_picture_free(&pic);
    free(grid);
    free(pk);
}
