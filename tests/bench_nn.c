/* tests/bench_nn.c - `make bench` (tests/bench.sh, part nn): the CNN's training and inference
 * throughput on real FlowPics, measured the way ../shared/bench/torch_lenet.py measures PyTorch.
 * Not a test: the figures depend on the machine and its load.
 *
 *   bench_nn [OPTIONS] DATASET.fpds
 *     --net full|mini32|mini64  the net and its resolution (default full = flowpic-full at 1500)
 *     --pictures N              pictures: N blocks evenly spaced over the data set (default 256)
 *     --batch B                 training / batch inference size (default 128)
 *     --seconds S               time per figure, after the warm-up (default 5)
 *     --only LIST               comma list of train,infer1,inferB (default all three)
 *     --seed N                  initialisation and dropout seed (default 1)
 *     --path dense|sparse       dense (default): render + flowpic_net_forward / backward / predict;
 *                               sparse: flowpic_net_forward_sparse / backward_sparse / predict_sparse on
 *                               the sparse pictures (FLOWPIC_WS_SPARSE workspaces, nothing rendered)
 *     --export PREFIX           write the pictures (at 1500, whatever --net) as PREFIX.sparse.npy,
 *                               int32 [nnz][4] = (picture, row, column, count), and
 *                               PREFIX.labels.npy, int32 [N]; then exit. tests/bench.sh packs
 *                               them into torch_lenet.py's sparse .npz (idx, row, col, val, label).
 *                               Also prints flowpic_classes, flowpic_pictures_full, flowpic_nnz_*_full.
 *
 * The pictures: block i * nblocks / N (i = 0 .. N-1) of the data set, built with
 * flowpic_picture_build (the data set's preset and window) at the net's resolution, raw counts
 * (FLOWPIC_VALUE_RAW), as torch_lenet.py's default. Labels: the blocks' classes, m = the data
 * set's class count (give torch_lenet.py --classes m).
 *
 * Same schedule as torch_lenet.py:
 *   train     batches alternate between pictures 0 .. B-1 and B .. 2B-1 (mod N); each step is
 *             zero_grad + forward (FLOWPIC_MODE_TRAIN, dropout) + loss + backward + Adam (lr 1e-3);
 *             2 warm-up steps, then at least 3 steps and --seconds.
 *   infer1    flowpic_net_predict (eval mode + softmax) on one picture, cycling over pictures
 *             0 .. min(B, 16)-1; 3 warm-up calls, then at least 5 and --seconds.
 *   inferB    flowpic_net_predict on the same two batches as train; 1 warm-up, at least 3.
 * Inference runs after training, on the trained net (torch_lenet.py does the same; without the
 * train phase the net keeps its zero initial biases, empty rows stay empty after conv1 + ReLU, the
 * zero-row skip removes more work, and inference looks 1.5x faster than it is). Each phase
 * has its own workspace (train: FLOWPIC_WS_TRAIN at B; infer1: batch 1; inferB: B), freed after it;
 * one dense input buffer of B pictures serves all three (torch_lenet.py keeps 2 dense batches).
 *
 * Every step first renders its dense input from the sparse pictures (flowpic_picture_render,
 * one picture after the other, as flowpic_train_epoch / flowpic_predict_blocks do), so the main
 * figures INCLUDE the render; torch_lenet.py's train / infer figures do NOT include its densify
 * (they run on dense batches built beforehand). The *_compute figures leave the render out and
 * are the like-for-like comparison with torch; render is timed on its own as well.
 *
 * Output: one `name value unit` line per figure (lines starting with '#' are for people):
 *   flowpic_threads                threads   OpenMP threads (1 without OpenMP)
 *   flowpic_classes                classes   m
 *   flowpic_pictures_<net>         pictures  N
 *   flowpic_nnz_min/median/max_<net> pixels  non-zero pixels per picture at 1500 (median as NumPy's,
 *                                            truncated), to check torch_lenet.py got the same pictures
 *   flowpic_train_<net>            samples/s   render + step        flowpic_train_compute_<net>   step only
 *   flowpic_infer1_<net>           pictures/s  render + predict     flowpic_infer1_compute_<net>
 *   flowpic_infer<B>_<net>         pictures/s  render + predict     flowpic_infer<B>_compute_<net>
 *   flowpic_render_<net>           pictures/s  flowpic_picture_render alone (over the train phase)
 *   flowpic_train_peak_rss_<net>   MB          ru_maxrss after the train phase (10^6 bytes)
 *   flowpic_peak_rss_<net>         MB          ru_maxrss at the end (all phases, like torch_lenet.py's)
 * With --path sparse the figures are flowpic_train_sparse_<net>, flowpic_infer1_sparse_<net>,
 * flowpic_infer<B>_sparse_<net> (no render, so no *_compute_* twins), flowpic_train_peak_rss_sparse_<net>
 * and flowpic_peak_rss_sparse_<net>.
 * with <net> = full, mini32 or mini64.  Exit status 0, or 1 on an error (message on stderr). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct bench {
    const char *net_name; /* full, mini32, mini64 */
    flowpic_arch arch;
    uint32_t res;
    int batch, n_classes;
    size_t n;              /* pictures */
    flowpic_picture *pics; /* [n] at res */
    int *labels;           /* [n] */
    double seconds;
    uint64_t seed;
    float *x;              /* dense input, batch x res x res, shared by the phases (faulted in once) */
    int sparse;            /* --path sparse: the sparse passes on the pictures, no dense input */
    flowpic_picture *batch_pics; /* sparse: the batch's pictures (copies of the structs in pics) */
    double render_s;       /* render time and pictures over the train phase */
    size_t rendered;
} bench;

static void die(const char *what, flowpic_result res)
{
    fprintf(stderr, "bench_nn: %s: %s\n", what, flowpic_result_string(res));
    exit(1);
}

static void check(const char *what, flowpic_result res)
{
    if (res != FLOWPIC_OK) die(what, res);
}

static void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p) {
        fprintf(stderr, "bench_nn: out of memory (%lu bytes)\n", (unsigned long)size);
        exit(1);
    }
    return p;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Minor page faults so far (fresh memory being touched). */
static long minor_faults(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return ru.ru_minflt;
}

/* Peak resident set so far, MB of 10^6 bytes (Linux ru_maxrss is KiB). */
static double peak_rss_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0.0;
    return (double)ru.ru_maxrss * 1024.0 / 1e6;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Pictures which[0 .. count) into x (res * res floats each), or, on the sparse path, their
 * structs into batch_pics; returns the seconds it took. */
static double render(const bench *b, const size_t *which, int count, float *x)
{
    size_t px = (size_t)b->res * b->res;
    double t0 = now_s();
    int i;
    for (i = 0; i < count; i++) {
        if (b->sparse) b->batch_pics[i] = b->pics[which[i]];
        else flowpic_picture_render(&b->pics[which[i]], FLOWPIC_VALUE_RAW, x + (size_t)i * px);
    }
    return now_s() - t0;
}

/* Batch k of the train / inferB schedule: pictures (k % 2) * B + i (mod N), as torch_lenet.py's
 * two prebuilt batches pics.batch(0, B) and pics.batch(B, B). */
static void batch_ids(const bench *b, long k, size_t *ids, int *labels)
{
    int i;
    for (i = 0; i < b->batch; i++) {
        ids[i] = ((size_t)(k % 2) * (size_t)b->batch + (size_t)i) % b->n;
        if (labels) labels[i] = b->labels[ids[i]];
    }
}

/* One figure: name, value with render, value without. */
static void report(const char *what, const bench *b, double count, double total_s, double compute_s,
                   const char *unit, long iters, long faults)
{
    if (b->sparse) {   /* nothing to render: one figure */
        printf("flowpic_%s_sparse_%s %.2f %s\n", what, b->net_name, count / total_s, unit);
        printf("# %s (sparse): %ld timed iterations, %.2f s, %ld page faults\n", what, iters, total_s, faults);
        fflush(stdout);
        return;
    }
    printf("flowpic_%s_%s %.2f %s\n", what, b->net_name, count / total_s, unit);
    printf("flowpic_%s_compute_%s %.2f %s\n", what, b->net_name, count / compute_s, unit);
    printf("# %s: %ld timed iterations, %.2f s (%.2f s compute, %.2f s render), %ld page faults\n", what, iters,
           total_s, compute_s, total_s - compute_s, faults);
    fflush(stdout);
}

static void phase_train(bench *b, flowpic_net *net, flowpic_rng *rng)
{
    flowpic_workspace ws;
    float *x = b->x;
    size_t *ids = (size_t *)xmalloc((size_t)b->batch * sizeof *ids);
    int *labels = (int *)xmalloc((size_t)b->batch * sizeof *labels);
    double t0 = 0.0, compute = 0.0, elapsed = 0.0;
    float loss = 0.0f, first_loss = 0.0f;
    long k, timed = 0, faults = 0;
    check("workspace (train)", flowpic_workspace_init(&ws, net, b->batch, FLOWPIC_WS_TRAIN | (b->sparse ? FLOWPIC_WS_SPARSE : 0)));
    for (k = 0;; k++) {
        double r, c0;
        if (k == 2) t0 = now_s(), faults = minor_faults(); /* after 2 warm-up steps */
        batch_ids(b, k, ids, labels);
        r = render(b, ids, b->batch, x);
        c0 = now_s();
        flowpic_net_zero_grad(net);
        if (b->sparse) {
            check("forward (train)", flowpic_net_forward_sparse(net, &ws, b->batch_pics, FLOWPIC_VALUE_RAW, b->batch,
                                                                FLOWPIC_MODE_TRAIN, rng));
            check("loss", flowpic_net_loss(net, &ws, labels, b->batch, &loss));
            check("backward", flowpic_net_backward_sparse(net, &ws, b->batch));
        } else {
            check("forward (train)", flowpic_net_forward(net, &ws, x, b->batch, FLOWPIC_MODE_TRAIN, rng));
            check("loss", flowpic_net_loss(net, &ws, labels, b->batch, &loss));
            check("backward", flowpic_net_backward(net, &ws, x, b->batch));
        }
        check("adam", flowpic_adam_step(net, 1e-3, 0.9, 0.999, 1e-8));
        if (k == 0) first_loss = loss;
        if (k < 2) continue;
        compute += now_s() - c0;
        b->render_s += r;
        b->rendered += (size_t)b->batch;
        timed++;
        elapsed = now_s() - t0;
        if (elapsed >= b->seconds && timed >= 3) break;
    }
    printf("# train: loss %.4f after the first step, %.4f after step %ld\n", (double)first_loss, (double)loss, k + 1);
    report("train", b, (double)timed * b->batch, elapsed, compute, "samples/s", timed, minor_faults() - faults);
    flowpic_workspace_free(&ws);
    free(ids);
    free(labels);
}

/* Inference at batch `batch` (1: cycling over the first min(B, 16) pictures; B: the train batches). */
static void phase_infer(bench *b, const flowpic_net *net, int batch)
{
    flowpic_workspace ws;
    float *x = b->x;
    size_t *ids = (size_t *)xmalloc((size_t)b->batch * sizeof *ids);
    int warm = batch == 1 ? 3 : 1, min_iters = batch == 1 ? 5 : 3;
    size_t singles = b->n < 16 ? b->n : 16;
    double t0 = 0.0, compute = 0.0, elapsed = 0.0;
    long k, timed = 0, faults = 0;
    char what[32];
    if ((size_t)b->batch < singles) singles = (size_t)b->batch;
    check("workspace (inference)", flowpic_workspace_init(&ws, net, batch, b->sparse ? FLOWPIC_WS_SPARSE : 0));
    for (k = 0;; k++) {
        double c0;
        if (k == warm) t0 = now_s(), faults = minor_faults();
        if (batch == 1) ids[0] = (size_t)k % singles;
        else batch_ids(b, k, ids, NULL);
        (void)render(b, ids, batch, x);
        c0 = now_s();
        if (b->sparse) check("predict", flowpic_net_predict_sparse(net, &ws, b->batch_pics, FLOWPIC_VALUE_RAW, batch, NULL));
        else check("predict", flowpic_net_predict(net, &ws, x, batch, NULL));
        if (k < warm) continue;
        compute += now_s() - c0;
        timed++;
        elapsed = now_s() - t0;
        if (elapsed >= b->seconds && timed >= min_iters) break;
    }
    snprintf(what, sizeof what, "infer%d", batch);
    report(what, b, (double)timed * batch, elapsed, compute, "pictures/s", timed, minor_faults() - faults);
    flowpic_workspace_free(&ws);
    free(ids);
}

/* Little-endian int32 values to f. */
static void put_i32(FILE *f, const int32_t *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        uint32_t u = (uint32_t)v[i];
        unsigned char c[4];
        c[0] = (unsigned char)(u & 0xFFu);
        c[1] = (unsigned char)((u >> 8) & 0xFFu);
        c[2] = (unsigned char)((u >> 16) & 0xFFu);
        c[3] = (unsigned char)(u >> 24);
        fwrite(c, 1, 4, f);
    }
}

static FILE *open_npy(const char *prefix, const char *suffix, const uint64_t *shape, int ndim, char *path,
                      size_t path_cap)
{
    char header[FLOWPIC_NPY_HEADER];
    size_t len = flowpic_npy_header(header, "<i4", shape, ndim);
    FILE *f;
    snprintf(path, path_cap, "%s%s", prefix, suffix);
    f = fopen(path, "wb");
    if (!f || fwrite(header, 1, len, f) != len) {
        fprintf(stderr, "bench_nn: cannot write %s\n", path);
        exit(1);
    }
    return f;
}

/* PREFIX.sparse.npy: int32 [nnz][4] (picture, row, column, count); PREFIX.labels.npy: int32 [N]. */
static void export_pictures(const bench *b, const char *prefix)
{
    char path[4096];
    uint64_t shape[2];
    size_t i, nnz = 0;
    uint32_t j;
    FILE *f;
    for (i = 0; i < b->n; i++) nnz += b->pics[i].n;
    shape[0] = nnz;
    shape[1] = 4;
    f = open_npy(prefix, ".sparse.npy", shape, 2, path, sizeof path);
    for (i = 0; i < b->n; i++)
        for (j = 0; j < b->pics[i].n; j++) {
            const flowpic_pixel *p = &b->pics[i].pixels[j];
            int32_t v[4];
            v[0] = (int32_t)i;
            v[1] = (int32_t)(p->index / b->res);
            v[2] = (int32_t)(p->index % b->res);
            v[3] = (int32_t)p->count;
            put_i32(f, v, 4);
        }
    if (ferror(f) || fclose(f) != 0) {
        fprintf(stderr, "bench_nn: write error on %s\n", path);
        exit(1);
    }
    shape[0] = b->n;
    f = open_npy(prefix, ".labels.npy", shape, 1, path, sizeof path);
    for (i = 0; i < b->n; i++) {
        int32_t v = (int32_t)b->labels[i];
        put_i32(f, &v, 1);
    }
    if (ferror(f) || fclose(f) != 0) {
        fprintf(stderr, "bench_nn: write error on %s\n", path);
        exit(1);
    }
    printf("# exported %lu pictures (%lu non-zero pixels) at %u x %u to %s.sparse.npy and %s.labels.npy\n",
           (unsigned long)b->n, (unsigned long)nnz, b->res, b->res, prefix, prefix);
}

/* Non-zero pixels per picture: min, NumPy-style median (truncated to an integer), max. */
static void nnz_stats(const bench *b)
{
    uint32_t *nz = (uint32_t *)xmalloc(b->n * sizeof *nz);
    size_t i;
    double med;
    for (i = 0; i < b->n; i++) nz[i] = b->pics[i].n;
    qsort(nz, b->n, sizeof *nz, cmp_u32);
    med = b->n % 2 ? (double)nz[b->n / 2] : ((double)nz[b->n / 2 - 1] + (double)nz[b->n / 2]) / 2.0;
    printf("flowpic_nnz_min_%s %u pixels\nflowpic_nnz_median_%s %ld pixels\nflowpic_nnz_max_%s %u pixels\n",
           b->net_name, nz[0], b->net_name, (long)med, b->net_name, nz[b->n - 1]);
    free(nz);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_nn [--net full|mini32|mini64] [--pictures N] [--batch B] [--seconds S]\n"
                    "                [--only train,infer1,inferB] [--seed N] [--path dense|sparse] [--export PREFIX]\n"
                    "                DATASET.fpds\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bench b;
    flowpic_dataset ds;
    flowpic_error err;
    flowpic_net net;
    flowpic_rng rng;
    const char *path = NULL, *export_prefix = NULL, *only = "train,infer1,inferB", *preset;
    long want = 256;
    size_t i;
    int a, threads = 1;

    memset(&b, 0, sizeof b);
    b.net_name = "full";
    b.arch = FLOWPIC_ARCH_FULL;
    b.res = 1500;
    b.batch = 128;
    b.seconds = 5.0;
    b.seed = 1;
    for (a = 1; a < argc; a++) {
        const char *o = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (o[0] != '-') {
            if (path) usage();
            path = o;
            continue;
        }
        if (!v) usage();
        a++;
        if (!strcmp(o, "--net")) {
            if (!strcmp(v, "full")) b.net_name = "full", b.arch = FLOWPIC_ARCH_FULL, b.res = 1500;
            else if (!strcmp(v, "mini32")) b.net_name = "mini32", b.arch = FLOWPIC_ARCH_MINI, b.res = 32;
            else if (!strcmp(v, "mini64")) b.net_name = "mini64", b.arch = FLOWPIC_ARCH_MINI, b.res = 64;
            else usage();
        } else if (!strcmp(o, "--pictures")) {
            want = strtol(v, NULL, 10);
        } else if (!strcmp(o, "--batch")) {
            b.batch = (int)strtol(v, NULL, 10);
        } else if (!strcmp(o, "--seconds")) {
            b.seconds = strtod(v, NULL);
        } else if (!strcmp(o, "--only")) {
            only = v;
        } else if (!strcmp(o, "--seed")) {
            b.seed = strtoull(v, NULL, 10);
        } else if (!strcmp(o, "--export")) {
            export_prefix = v;
        } else if (!strcmp(o, "--path")) {
            if (!strcmp(v, "sparse")) b.sparse = 1;
            else if (strcmp(v, "dense") != 0) usage();
        } else {
            usage();
        }
    }
    if (!path || want <= 0 || b.batch <= 0 || b.batch > 65536 || !(b.seconds >= 0.0)) usage();
    if (export_prefix) b.res = 1500; /* torch_lenet.py's sparse input is always at 1500 */

    if (flowpic_dataset_load(&ds, path, &err) != FLOWPIC_OK) {
        fprintf(stderr, "bench_nn: %s: %s (offset %llu)\n", path, err.reason, (unsigned long long)err.offset);
        return 1;
    }
    if (ds.n_blocks == 0 || ds.n_classes < 2) {
        fprintf(stderr, "bench_nn: %s: need blocks of at least 2 classes (%lu blocks, %u classes)\n", path,
                (unsigned long)ds.n_blocks, ds.n_classes);
        return 1;
    }
    b.n_classes = (int)ds.n_classes;
    preset = flowpic_preset_name(ds.config.preset);
    b.n = (size_t)want < ds.n_blocks ? (size_t)want : ds.n_blocks;
    b.pics = (flowpic_picture *)xmalloc(b.n * sizeof *b.pics);
    b.labels = (int *)xmalloc(b.n * sizeof *b.labels);
    memset(b.pics, 0, b.n * sizeof *b.pics);
    for (i = 0; i < b.n; i++) {
        size_t blk = (size_t)((uint64_t)i * ds.n_blocks / b.n);
        check("picture", flowpic_picture_build(&b.pics[i], ds.config.preset, ds.config.block_ns,
                                               flowpic_dataset_block_packets(&ds, blk), ds.blocks[blk].n_packets,
                                               b.res));
        b.labels[i] = ds.blocks[blk].label;
    }
    flowpic_dataset_free(&ds);

    if (export_prefix) {
        export_pictures(&b, export_prefix);
        printf("flowpic_classes %d classes\nflowpic_pictures_full %lu pictures\n", b.n_classes, (unsigned long)b.n);
        nnz_stats(&b);
    } else {
#ifdef _OPENMP
        threads = omp_get_max_threads();
#endif
        printf("# bench_nn: flowpic %s, net %s at %u x %u, %lu pictures from %s (%s preset), %d classes, batch %d,"
               " %.1f s per figure\n",
               flowpic_version_string(), flowpic_arch_name(b.arch), b.res, b.res, (unsigned long)b.n, path,
               preset, b.n_classes, b.batch, b.seconds);
        printf("flowpic_threads %d threads\nflowpic_classes %d classes\nflowpic_pictures_%s %lu pictures\n", threads,
               b.n_classes, b.net_name, (unsigned long)b.n);
        if (b.res == 1500) nnz_stats(&b);
        fflush(stdout);

        flowpic_rng_seed(&rng, b.seed);
        check("net", flowpic_net_init(&net, b.arch, (int)b.res, b.n_classes));
        if (b.sparse) {
            if (!flowpic_net_sparse_ok(&net)) die("--path sparse", FLOWPIC_ERR_ARG);
            b.batch_pics = (flowpic_picture *)xmalloc((size_t)b.batch * sizeof *b.batch_pics);
        } else {
            b.x = (float *)xmalloc((size_t)b.res * b.res * (size_t)b.batch * sizeof(float));
        }
        flowpic_net_init_glorot(&net, &rng);
        if (strstr(only, "train")) {
            phase_train(&b, &net, &rng);
            if (!b.sparse) printf("flowpic_render_%s %.2f pictures/s\n", b.net_name, (double)b.rendered / b.render_s);
            printf("flowpic_train_peak_rss_%s%s %.1f MB\n", b.sparse ? "sparse_" : "", b.net_name, peak_rss_mb());
            fflush(stdout);
        }
        if (strstr(only, "infer1")) phase_infer(&b, &net, 1);
        if (strstr(only, "inferB")) phase_infer(&b, &net, b.batch);
        printf("flowpic_peak_rss_%s%s %.1f MB\n", b.sparse ? "sparse_" : "", b.net_name, peak_rss_mb());
        flowpic_net_free(&net);
        free(b.x);
        free(b.batch_pics);
    }
    for (i = 0; i < b.n; i++) flowpic_picture_free(&b.pics[i]);
    free(b.pics);
    free(b.labels);
    return 0;
}
