/* embed.c - flowpic inside your own sensor: your capture loop hands packets (time, 5-tuple, IP
 * size) to a flowpic_classifier, which calls back with decisions while the traffic flows.
 * Here the "capture loop" makes up two flows (a VoIP-like one and a bulk one) for 150 s.
 * Build: cc -O2 -o embed examples/embed.c -lm      Run: ./embed MODEL   (docs/ONLINE.md) */
#define FLOWPIC_IMPLEMENTATION
#include "../flowpic.h"

static void on_decision(void *user, const flowpic_decision *d)
{
    const flowpic_model *m = (const flowpic_model *)user;
    printf("%8.3f s  port %5u  block %u  %-7s  %-10s %.2f  (flow so far: %s, %u blocks)\n",
           (double)d->time_ns / 1e9, d->key.sport, d->block, flowpic_decision_state_name(d->state),
           m->classes[d->label], d->confidence, m->classes[d->majority], d->vote_blocks);
}

int main(int argc, char **argv)
{
    flowpic_model model;
    flowpic_classifier cl;
    flowpic_classifier_config cfg;
    flowpic_packet p = {0};
    uint64_t t;
    if (argc != 2 || flowpic_model_load(&model, argv[1], 0) != FLOWPIC_OK) return fprintf(stderr, "usage: embed MODEL\n"), 2;
    flowpic_classifier_config_default(&cfg);
    cfg.early_after_ns = 20000000000u; /* also an early decision every 20 s of an open block */
    if (flowpic_classifier_init(&cl, &model, &cfg, on_decision, &model) != FLOWPIC_OK) return 1;
    p.key.ip_version = 4, p.key.src[0] = 10, p.key.dst[0] = 192, p.key.dport = 443;
    for (t = 0; t < 150000000000u; t += 20000000u) {   /* every 20 ms: */
        p.ts_ns = t, p.key.proto = 17, p.key.sport = 5004, p.size = 172; /* a voice packet */
        flowpic_classifier_add(&cl, &p);
        p.key.proto = 6, p.key.sport = 40000, p.size = 1500;           /* bulk: 10 MTU packets */
        for (int i = 0; i < 10; i++) p.ts_ns = t + (uint64_t)i * 100000u, flowpic_classifier_add(&cl, &p);
    }
    flowpic_classifier_flush(&cl); /* the end: open blocks are final, then one line per flow */
    flowpic_classifier_free(&cl);
    flowpic_model_free(&model);
    return 0;
}
