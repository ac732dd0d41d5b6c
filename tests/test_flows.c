/* flowpic.h flow table: keys, directions, limits. */
#include "flowpic.h"

#include "harness.h"

void test_flowtable_unidirectional(void);
void test_flowtable_bidirectional(void);
void test_flowtable_limit(void);

static flowpic_packet make_packet(uint64_t ts, uint8_t a, uint8_t b, uint16_t sport, uint16_t dport,
                                  uint32_t size)
{
    flowpic_packet p;
    memset(&p, 0, sizeof p);
    p.ts_ns = ts;
    p.size = size;
    p.key.ip_version = 4;
    p.key.proto = 6;
    p.key.src[0] = 10;
    p.key.src[3] = a;
    p.key.dst[0] = 10;
    p.key.dst[3] = b;
    p.key.sport = sport;
    p.key.dport = dport;
    return p;
}

void test_flowtable_unidirectional(void)
{
    flowpic_flowtable ft;
    flowpic_packet p;
    size_t idx = 99, i;
    CHECK_EQ(flowpic_flowtable_init(&ft, 0, 0), FLOWPIC_OK);
    p = make_packet(100, 1, 2, 1000, 80, 60);
    CHECK_EQ(flowpic_flowtable_add(&ft, &p, &idx), FLOWPIC_OK);
    CHECK_EQ(idx, 0);
    p = make_packet(200, 2, 1, 80, 1000, 1500); /* the reverse direction is another flow */
    CHECK_EQ(flowpic_flowtable_add(&ft, &p, &idx), FLOWPIC_OK);
    CHECK_EQ(idx, 1);
    p = make_packet(50, 1, 2, 1000, 80, 40); /* time going backwards: last is the last seen */
    CHECK_EQ(flowpic_flowtable_add(&ft, &p, &idx), FLOWPIC_OK);
    CHECK_EQ(idx, 0);
    CHECK_EQ(ft.count, 2);
    CHECK_EQ(ft.flows[0].packets, 2);
    CHECK_EQ(ft.flows[0].bytes, 100);
    CHECK_EQ(ft.flows[0].first_ns, 100);
    CHECK_EQ(ft.flows[0].last_ns, 50);
    CHECK_EQ(ft.flows[1].bytes, 1500);
    /* many flows: the index grows and every flow is found again */
    for (i = 0; i < 5000; i++) {
        p = make_packet(i, 3, 4, (uint16_t)i, 9, 100);
        CHECK_EQ(flowpic_flowtable_add(&ft, &p, &idx), FLOWPIC_OK);
        CHECK_EQ(idx, i + 2);
    }
    for (i = 0; i < 5000; i++) {
        p = make_packet(i, 3, 4, (uint16_t)i, 9, 100);
        CHECK_EQ(flowpic_flowtable_add(&ft, &p, &idx), FLOWPIC_OK);
        CHECK_EQ(idx, i + 2);
    }
    CHECK_EQ(ft.count, 5002);
    CHECK_EQ(ft.flows[4000].packets, 2);
    flowpic_flowtable_free(&ft);
}

void test_flowtable_bidirectional(void)
{
    flowpic_flowtable ft;
    flowpic_packet p;
    size_t idx;
    CHECK_EQ(flowpic_flowtable_init(&ft, 1, 0), FLOWPIC_OK);
    p = make_packet(100, 1, 2, 1000, 80, 60);
    CHECK_EQ(flowpic_flowtable_add(&ft, &p, &idx), FLOWPIC_OK);
    p = make_packet(200, 2, 1, 80, 1000, 1500);
    CHECK_EQ(flowpic_flowtable_add(&ft, &p, &idx), FLOWPIC_OK);
    CHECK_EQ(idx, 0);
    CHECK_EQ(ft.count, 1);
    CHECK_EQ(ft.flows[0].packets, 2);
    CHECK_EQ(ft.flows[0].key.sport, 1000); /* the key of the first packet */
    p = make_packet(300, 2, 1, 80, 1001, 1500);
    CHECK_EQ(flowpic_flowtable_add(&ft, &p, &idx), FLOWPIC_OK);
    CHECK_EQ(idx, 1);
    flowpic_flowtable_free(&ft);
}

void test_flowtable_limit(void)
{
    flowpic_flowtable ft;
    flowpic_packet p;
    CHECK_EQ(flowpic_flowtable_init(&ft, 0, 2), FLOWPIC_OK);
    p = make_packet(1, 1, 2, 1, 1, 60);
    CHECK_EQ(flowpic_flowtable_add(&ft, &p, 0), FLOWPIC_OK);
    p = make_packet(1, 1, 2, 2, 1, 60);
    CHECK_EQ(flowpic_flowtable_add(&ft, &p, 0), FLOWPIC_OK);
    p = make_packet(1, 1, 2, 3, 1, 60);
    CHECK_EQ(flowpic_flowtable_add(&ft, &p, 0), FLOWPIC_ERR_FLOW_LIMIT);
    p = make_packet(1, 1, 2, 1, 1, 60); /* existing flows still count */
    CHECK_EQ(flowpic_flowtable_add(&ft, &p, 0), FLOWPIC_OK);
    CHECK_EQ(ft.count, 2);
    CHECK_EQ(ft.flows[0].packets, 2);
    flowpic_flowtable_free(&ft);
}
