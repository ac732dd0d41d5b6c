/* Fault injection (SQLite style): for N = 0, 1, 2, ... the N-th allocation fails, then separately
 * the N-th read, the N-th write and the N-th file opening, on every path that allocates or does I/O: reading a capture,
 * extracting it to a data-set file, loading and saving data sets and models, setting up training.
 * Each failed run must return the right result (out of memory / I/O error), free everything it
 * allocated (the allocator hooks count live blocks; ASan/valgrind runs check it again), and leave
 * an existing output file untouched with no temporary beside it. The loop for a path ends at the
 * first N the path never reaches; that N is the path's number of injection points.
 *
 * Hooks: FLOWPIC_MALLOC/REALLOC/FREE and FLOWPIC_FREAD/FWRITE/FOPEN (flowpic.h >>config, passed on
 * to pcap_lite). PCAPL_BUFFER_SIZE is small so a capture takes several reads. Inputs are built here
 * and from the committed fuzz corpus, so the test needs nothing else.
 * Last line: "N passed, N failed". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { FAULT_ALLOC, FAULT_READ, FAULT_WRITE, FAULT_OPEN, FAULT_KINDS };

static long fault_at[FAULT_KINDS] = {-1, -1, -1, -1}; /* which call fails (-1: none) */
static long fault_calls[FAULT_KINDS];             /* calls so far */
static int fault_hit;                              /* the planned failure happened */
static long live_blocks;                           /* allocations not yet freed */

static int fault_now(int kind)
{
    if (fault_calls[kind]++ != fault_at[kind]) return 0;
    fault_hit = 1;
    return 1;
}

static void *fault_malloc(size_t n)
{
    void *p = fault_now(FAULT_ALLOC) ? 0 : malloc(n);
    if (p) live_blocks++;
    return p;
}

static void *fault_realloc(void *old, size_t n)
{
    void *p = fault_now(FAULT_ALLOC) ? 0 : realloc(old, n);
    if (p && !old) live_blocks++;
    return p;
}

static void fault_free(void *p)
{
    if (p) live_blocks--;
    free(p);
}

static long fault_fread(FILE *f, void *buf, size_t n)
{
    size_t got;
    if (fault_now(FAULT_READ)) return -1;
    got = fread(buf, 1, n, f);
    return got == 0 && ferror(f) ? -1 : (long)got;
}

static size_t fault_fwrite(FILE *f, const void *buf, size_t n)
{
    if (fault_now(FAULT_WRITE)) return n / 2; /* a short write, as on a full disk */
    return fwrite(buf, 1, n, f);
}

static FILE *fault_fopen(const char *path, const char *mode)
{
    if (!fault_now(FAULT_OPEN)) return fopen(path, mode);
    errno = EACCES; /* as for a file or directory without permission */
    return 0;
}

#define FLOWPIC_MALLOC(sz) fault_malloc(sz)
#define FLOWPIC_REALLOC(p, sz) fault_realloc(p, sz)
#define FLOWPIC_FREE(p) fault_free(p)
#define FLOWPIC_FREAD(f, buf, n) fault_fread(f, buf, n)
#define FLOWPIC_FWRITE(f, buf, n) fault_fwrite(f, buf, n)
#define FLOWPIC_FOPEN(path, mode) fault_fopen(path, mode)
#define PCAPL_BUFFER_SIZE 256u
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"
#include "capbuild.h"

#define DIR "build/faults/"
#define CAPTURE DIR "in.pcap"
#define CAPTURE_NG DIR "in.pcapng"
#define OUTPUT DIR "out"
#define OUTPUT_TMP DIR "out.tmp"
#define DATASET "tests/fuzz/corpus/dataset/small.fpds"
#define MODEL "tests/fuzz/corpus/model/mini32.fpm"

static int passed, failed;

#define EXPECT(cond, ...)                                                                      \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            printf("  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                          \
            printf(__VA_ARGS__);                                                               \
            printf("\n");                                                                      \
            return 0;                                                                          \
        }                                                                                      \
    } while (0)

/* ---- inputs ---------------------------------------------------------------------------------- */

/* Three UDP/TCP flows of 40 packets over 2 minutes: enough for blocks of the paper preset. */
static void frames(cb *b, int ng)
{
    uint8_t frame[2048];
    frame_spec s;
    int i;
    for (i = 0; i < 120; i++) {
        uint32_t len, sec = 1700000000u + (uint32_t)i;
        spec_default(&s, i % 3 == 2 ? 6 : 4, i % 3 == 0 ? 17 : 6);
        s.sport = (uint16_t)(1000 + i % 3);
        s.payload = (uint32_t)(50 + (i * 37) % 1000);
        len = build_eth(frame, &s);
        if (ng)
            cb_ng_epb(b, 0, (uint64_t)sec * 1000000u, frame, len, len);
        else
            cb_pcap_record(b, sec, 0, frame, len, len);
    }
}

static int write_inputs(void)
{
    cb b;
    int ng, ok = 1;
    for (ng = 0; ng < 2; ng++) {
        FILE *f = fopen(ng ? CAPTURE_NG : CAPTURE, "wb");
        cb_init(&b, 0);
        if (ng) {
            cb_ng_shb(&b);
            cb_ng_idb(&b, 1, 65535, -1, 0, 0);
        } else {
            cb_pcap_header(&b, 0, 1, 65535);
        }
        frames(&b, ng);
        ok = ok && f && fwrite(b.data, 1, b.len, f) == b.len;
        if (f) ok = fclose(f) == 0 && ok;
        cb_free(&b);
    }
    return ok;
}

/* ---- output checks ---------------------------------------------------------------------------- */

static const char precious[] = "an existing output that a failed run must not clobber";

static void plant_output(void)
{
    FILE *f = fopen(OUTPUT, "wb");
    if (f) {
        fputs(precious, f);
        fclose(f);
    }
    remove(OUTPUT_TMP);
}

/* 1 when OUTPUT still holds the planted text. */
static int output_untouched(void)
{
    char buf[sizeof precious + 8];
    size_t n;
    FILE *f = fopen(OUTPUT, "rb");
    if (!f) return 0;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n == sizeof precious - 1 && memcmp(buf, precious, n) == 0;
}

static int exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != 0;
}

/* ---- the paths -------------------------------------------------------------------------------
 * Each runs one whole operation the way a careful caller would (freeing whatever it got) and
 * returns 0 on success or the library's result code. */

static int path_read_capture(const char *path)
{
    pcapl_reader r;
    pcapl_packet pkt;
    pcapl_decoded d;
    pcapl_result res = pcapl_open_path(&r, path);
    uint64_t packets = 0;
    if (res != PCAPL_OK) return (int)res;
    while ((res = pcapl_next(&r, &pkt)) == PCAPL_OK) packets += pcapl_decode(&pkt, &d) == PCAPL_SKIP_NONE;
    pcapl_close(&r);
    if (res == PCAPL_END && packets != 120) return -1; /* a silent loss would show here */
    return res == PCAPL_END ? 0 : (int)res;
}

static int path_read_pcap(void) { return path_read_capture(CAPTURE); }
static int path_read_pcapng(void) { return path_read_capture(CAPTURE_NG); }

static int path_extract(void)
{
    pcapl_reader r;
    flowpic_block_config cfg;
    flowpic_dataset ds;
    flowpic_error err;
    flowpic_result res;
    if (pcapl_open_path(&r, CAPTURE_NG) != PCAPL_OK)
        return r.error.code == PCAPL_ERR_NOMEM ? FLOWPIC_ERR_NOMEM : FLOWPIC_ERR_IO;
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    flowpic_dataset_init(&ds, &cfg);
    res = flowpic_dataset_add_capture(&ds, &r, CAPTURE_NG, 0, 0, 0, 0);
    pcapl_close(&r);
    if (res == FLOWPIC_OK && ds.n_blocks == 0) res = FLOWPIC_ERR_ARG; /* the input must give blocks */
    if (res == FLOWPIC_OK) res = flowpic_dataset_save(&ds, OUTPUT, &err);
    flowpic_dataset_free(&ds);
    return (int)res;
}

static int path_dataset(void)
{
    flowpic_dataset ds;
    flowpic_error err;
    flowpic_result res = flowpic_dataset_load(&ds, DATASET, &err);
    if (res != FLOWPIC_OK) return (int)res;
    res = flowpic_dataset_save(&ds, OUTPUT, &err);
    flowpic_dataset_free(&ds);
    return (int)res;
}

static int path_model(void)
{
    flowpic_model m;
    flowpic_error err;
    flowpic_result res = flowpic_model_load(&m, MODEL, &err);
    if (res != FLOWPIC_OK) return (int)res;
    res = flowpic_model_save(&m, OUTPUT, &err);
    flowpic_model_free(&m);
    return (int)res;
}

/* Model and workspaces for a data set, one epoch, predictions: what `flowpic train` sets up. */
static int path_train(void)
{
    static const char *const classes[] = {"a", "b"};
    flowpic_dataset ds;
    flowpic_model m;
    flowpic_workspace ws, ews;
    flowpic_prep prep;
    flowpic_rng rng;
    flowpic_error err;
    flowpic_epoch_stats st;
    size_t blocks[64], i, n;
    int labels[64];
    float probs[64 * 2];
    flowpic_result res = flowpic_dataset_load(&ds, DATASET, &err);
    if (res != FLOWPIC_OK) return (int)res;
    n = ds.n_blocks < 64 ? ds.n_blocks : 64;
    for (i = 0; i < n; i++) {
        blocks[i] = i;
        labels[i] = (int)(i % 2);
    }
    memset(&ws, 0, sizeof ws);
    memset(&ews, 0, sizeof ews);
    prep.blocks = ds.config;
    prep.res = 32;
    prep.transform = FLOWPIC_VALUE_LOG1P;
    flowpic_rng_seed(&rng, 1);
    res = flowpic_model_init(&m, FLOWPIC_ARCH_MINI, &prep, classes, 2, &rng);
    if (res == FLOWPIC_OK) {
        res = flowpic_workspace_init(&ws, &m.net, 4, FLOWPIC_WS_TRAIN);
        if (res == FLOWPIC_OK) res = flowpic_workspace_init(&ews, &m.net, 4, 0);
        if (res == FLOWPIC_OK) res = flowpic_train_epoch(&m, &ws, &ds, blocks, labels, n, 4, 1e-3, &rng, 0, 0, &st);
        if (res == FLOWPIC_OK) res = flowpic_predict_blocks(&m, &ews, &ds, blocks, n, probs);
        flowpic_workspace_free(&ws);
        flowpic_workspace_free(&ews);
        flowpic_model_free(&m);
    }
    flowpic_dataset_free(&ds);
    return (int)res;
}

/* ---- the loop --------------------------------------------------------------------------------- */

typedef struct fault_path {
    const char *name;
    int (*run)(void);
    int writes;          /* writes OUTPUT */
    int expect[FAULT_KINDS]; /* result when the allocation / read / write / opening fails */
} fault_path;

static const char *const kind_names[FAULT_KINDS] = {"allocation", "read", "write", "opening"};

/* Fails call N of one kind for N = 0, 1, ... until a run never reaches N; *points = N. */
static int inject(const fault_path *p, int kind, long *points)
{
    long n;
    for (n = 0;; n++) {
        int res;
        memset(fault_calls, 0, sizeof fault_calls);
        fault_at[kind] = n;
        fault_hit = 0;
        live_blocks = 0;
        if (p->writes) plant_output();
        res = p->run();
        fault_at[kind] = -1;
        EXPECT(live_blocks == 0, "%s, %s %ld fails: %ld blocks leaked", p->name, kind_names[kind], n, live_blocks);
        EXPECT(!exists(OUTPUT_TMP), "%s, %s %ld fails: temporary file left", p->name, kind_names[kind], n);
        if (!fault_hit) {
            EXPECT(res == 0, "%s: result %d without a fault", p->name, res);
            EXPECT(!p->writes || !output_untouched(), "%s: output not written", p->name);
            *points = n;
            return 1;
        }
        EXPECT(res == p->expect[kind], "%s, %s %ld fails: result %d, expected %d", p->name, kind_names[kind], n,
               res, p->expect[kind]);
        EXPECT(!p->writes || output_untouched(), "%s, %s %ld fails: existing output clobbered", p->name,
               kind_names[kind], n);
    }
}

int main(void)
{
    static const fault_path paths[] = {
        {"read pcap", path_read_pcap, 0, {PCAPL_ERR_NOMEM, PCAPL_ERR_READ, 0, PCAPL_ERR_OPEN}},
        {"read pcapng", path_read_pcapng, 0, {PCAPL_ERR_NOMEM, PCAPL_ERR_READ, 0, PCAPL_ERR_OPEN}},
        {"extract to data set", path_extract, 1, {FLOWPIC_ERR_NOMEM, FLOWPIC_ERR_IO, FLOWPIC_ERR_IO, FLOWPIC_ERR_IO}},
        {"data set load + save", path_dataset, 1, {FLOWPIC_ERR_NOMEM, FLOWPIC_ERR_IO, FLOWPIC_ERR_IO, FLOWPIC_ERR_IO}},
        {"model load + save", path_model, 1, {FLOWPIC_ERR_NOMEM, FLOWPIC_ERR_IO, FLOWPIC_ERR_IO, FLOWPIC_ERR_IO}},
        {"training setup + epoch", path_train, 0, {FLOWPIC_ERR_NOMEM, FLOWPIC_ERR_IO, 0, FLOWPIC_ERR_IO}},
    };
    size_t i;
    long total = 0;
    if (!write_inputs()) {
        printf("cannot write the inputs in " DIR "\n0 passed, 1 failed\n");
        return 1;
    }
    for (i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        long points[FAULT_KINDS];
        int kind, ok = 1;
        for (kind = 0; kind < FAULT_KINDS && ok; kind++) ok = inject(&paths[i], kind, &points[kind]);
        if (ok && points[FAULT_OPEN] == 0) { /* every path opens a file: the hook must see it */
            printf("  FAIL %s: no file opened through FLOWPIC_FOPEN\n", paths[i].name);
            ok = 0;
        }
        if (ok) {
            printf("  %-24s %4ld allocations, %3ld reads, %2ld writes, %ld openings\n", paths[i].name,
                   points[FAULT_ALLOC], points[FAULT_READ], points[FAULT_WRITE], points[FAULT_OPEN]);
            total += points[FAULT_ALLOC] + points[FAULT_READ] + points[FAULT_WRITE] + points[FAULT_OPEN];
            passed++;
        } else {
            failed++;
        }
    }
    remove(OUTPUT);
    remove(CAPTURE);
    remove(CAPTURE_NG);
    printf("faults: %ld injection points\n", total);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
