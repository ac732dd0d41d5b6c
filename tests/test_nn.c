/* test_nn.c -- tests of the flowpic network engine (nn_decl.h / nn_impl.h).
 *
 *   ./test_nn [-v] [filter ...]     run the tests whose name contains one of the filters
 *
 * Filters are substrings of test names; "vectors/<substring>" selects vector files.
 * Reference vectors: every *.fpv in $FLOWPIC_VECTORS_DIR (default ../shared/vectors),
 * format in VECTORS.md there. The last line of output is "N passed, N failed" (N = test
 * cases; each vector file is its own case); the exit status is 1 when any case failed. */
#define _POSIX_C_SOURCE 200809L   /* opendir() for the vector directory (test only) */
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"

#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <stdarg.h>

/* ------------------------------------------------------------------ harness */

static int g_passed, g_failed, g_case_open, g_case_failed, g_verbose;
static int g_nfilters;
static const char *g_filters[64];
static char g_case[512];

static void case_end(void)
{
    if (!g_case_open) return;
    if (g_case_failed) { g_failed++; printf("FAIL %s\n", g_case); }
    else { g_passed++; printf("ok   %s\n", g_case); }
    fflush(stdout);
    g_case_open = 0;
}

static void case_begin(const char *name)
{
    case_end();
    snprintf(g_case, sizeof g_case, "%s", name);
    g_case_open = 1;
    g_case_failed = 0;
}

#if defined(__GNUC__)
static void fail_msg(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
static void fail_msg(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    printf("  %s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    g_case_failed = 1;
}

#define CHECK(expr) do { if (!(expr)) fail_msg(__FILE__, __LINE__, "CHECK(%s) failed", #expr); } while (0)
#define CHECK_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
        if (a_ != b_) fail_msg(__FILE__, __LINE__, "CHECK_EQ(%s, %s) failed: %lld != %lld", #a, #b, a_, b_); } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol); \
        if (!(fabs(a_ - b_) <= t_)) fail_msg(__FILE__, __LINE__, "CHECK_NEAR(%s, %s, %s) failed: %.9g vs %.9g, |diff| %.3g > %.3g", \
                                             #a, #b, #tol, a_, b_, fabs(a_ - b_), t_); } while (0)

/* ------------------------------------------------------------------ helpers */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "out of memory (%zu bytes)\n", n); exit(2); }
    return p;
}

static void fill_uniform(float *x, size_t n, flowpic_rng *rng, float lo, float hi)
{
    size_t i;
    for (i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)flowpic_rng_uniform(rng);
}

/* FlowPic-like picture: mostly zero, a few rows of small integer counts */
static void fill_picture(float *x, int h, int w, int nonzero, flowpic_rng *rng)
{
    int i;
    memset(x, 0, (size_t)h * (size_t)w * sizeof(float));
    for (i = 0; i < nonzero; i++) {
        int r = (int)(flowpic_rng_next(rng) % (uint64_t)h), c = (int)(flowpic_rng_next(rng) % (uint64_t)w);
        x[(size_t)r * (size_t)w + (size_t)c] += (float)(1 + flowpic_rng_next(rng) % 9);
    }
}

static double max_abs_diff(const float *a, const float *b, size_t n, size_t *where)
{
    double m = 0.0;
    size_t i;
    if (where) *where = 0;
    for (i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) { m = d; if (where) *where = i; }
    }
    return m;
}

static double max_abs(const float *a, size_t n)
{
    double m = 0.0;
    size_t i;
    for (i = 0; i < n; i++) if (fabs((double)a[i]) > m) m = fabs((double)a[i]);
    return m;
}

/* ------------------------------------------------------------------ FPV reader */

/* The .fpv files use zlib's CRC-32, as flowpic's own files do: flowpic_crc32. */

enum { FPV_F32 = 1, FPV_F64 = 2, FPV_I32 = 3, FPV_U8 = 4 };

typedef struct fpv_tensor {
    char name[256];
    int kind, dtype, ndim;
    uint32_t dims[8];
    uint64_t numel;
    const unsigned char *payload;
    uint64_t payload_len;
} fpv_tensor;

typedef struct fpv_file {
    unsigned char *data;
    size_t size;
    int count;
    fpv_tensor *t;
    char err[640];
} fpv_file;

static uint32_t rd_u32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd_u64(const unsigned char *p) { return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }
static float rd_f32(const unsigned char *p) { uint32_t u = rd_u32(p); float f; memcpy(&f, &u, 4); return f; }
static double rd_f64(const unsigned char *p) { uint64_t u = rd_u64(p); double d; memcpy(&d, &u, 8); return d; }

#define FPV_FAIL(...) do { snprintf(f->err, sizeof f->err, __VA_ARGS__); return 0; } while (0)

/* Parses and validates data[0..size) (kept, not copied). Returns 1, or 0 with f->err set. */
static int fpv_parse(fpv_file *f, unsigned char *data, size_t size)
{
    size_t pos = 12, cap = 0;
    uint32_t declared, crc;
    int i, j;
    memset(f, 0, sizeof *f);
    f->data = data;
    f->size = size;
    if (size < 17) FPV_FAIL("file too short (%zu bytes)", size);
    if (memcmp(data, "FPV\0", 4) != 0) FPV_FAIL("offset 0: bad magic");
    if (rd_u32(data + 4) != 1) FPV_FAIL("offset 4: unsupported version %u", (unsigned)rd_u32(data + 4));
    declared = rd_u32(data + 8);
    for (;;) {
        fpv_tensor *t;
        size_t rec = pos, nlen, esz;
        uint64_t numel = 1;
        if (pos >= size) FPV_FAIL("offset %zu: missing end marker", pos);
        if (data[pos] == 0) break;
        if (data[pos] != 1 && data[pos] != 2) FPV_FAIL("offset %zu: bad record kind %u", pos, data[pos]);
        if (size - pos < 3) FPV_FAIL("offset %zu: truncated record header", pos);
        if ((uint32_t)f->count >= declared) FPV_FAIL("offset %zu: more records than the %u declared", pos, (unsigned)declared);
        if ((size_t)f->count == cap) {
            fpv_tensor *nt;
            cap = cap ? 2 * cap : 64;
            nt = (fpv_tensor *)realloc(f->t, cap * sizeof *nt);
            if (!nt) FPV_FAIL("out of memory");
            f->t = nt;
        }
        t = &f->t[f->count];
        memset(t, 0, sizeof *t);
        t->kind = data[pos];
        nlen = (size_t)data[pos + 1] | (size_t)data[pos + 2] << 8;
        pos += 3;
        if (nlen == 0) FPV_FAIL("offset %zu: empty name", rec);
        if (nlen >= sizeof t->name) FPV_FAIL("offset %zu: name of %zu bytes too long for this reader", rec, nlen);
        if (size - pos < nlen + 2) FPV_FAIL("offset %zu: truncated name", pos);
        memcpy(t->name, data + pos, nlen);
        t->name[nlen] = '\0';
        if (strlen(t->name) != nlen) FPV_FAIL("offset %zu: NUL inside name", pos);
        pos += nlen;
        t->dtype = data[pos];
        t->ndim = data[pos + 1];
        pos += 2;
        if (t->dtype < 1 || t->dtype > 4) FPV_FAIL("offset %zu: %s: bad dtype %d", pos - 2, t->name, t->dtype);
        if (t->ndim > 8) FPV_FAIL("offset %zu: %s: ndim %d > 8", pos - 1, t->name, t->ndim);
        if (size - pos < (size_t)t->ndim * 4 + 8) FPV_FAIL("offset %zu: %s: truncated dims", pos, t->name);
        for (j = 0; j < t->ndim; j++) {
            t->dims[j] = rd_u32(data + pos + 4 * (size_t)j);
            if (t->dims[j] != 0 && numel > UINT64_MAX / 16 / t->dims[j]) FPV_FAIL("offset %zu: %s: numel overflows", pos, t->name);
            numel *= t->dims[j];
        }
        pos += (size_t)t->ndim * 4;
        t->numel = numel;
        t->payload_len = rd_u64(data + pos);
        pos += 8;
        if (t->payload_len > (uint64_t)(size - pos)) FPV_FAIL("offset %zu: %s: payload of %llu bytes runs past the end", pos - 8, t->name, (unsigned long long)t->payload_len);
        t->payload = data + pos;
        esz = t->dtype == FPV_F64 ? 8 : t->dtype == FPV_U8 ? 1 : 4;
        if (t->kind == 1) {
            if (t->payload_len != numel * esz) FPV_FAIL("offset %zu: %s: payload %llu != numel %llu x %zu", pos - 8, t->name,
                                                        (unsigned long long)t->payload_len, (unsigned long long)numel, esz);
        } else {
            uint64_t nnz, k, prev = 0;
            if (t->dtype != FPV_F32) FPV_FAIL("offset %zu: %s: sparse tensor must be f32", rec, t->name);
            if (t->payload_len < 4) FPV_FAIL("offset %zu: %s: sparse payload too short", pos, t->name);
            nnz = rd_u32(t->payload);
            if (t->payload_len != 4 + 8 * nnz) FPV_FAIL("offset %zu: %s: sparse payload %llu != 4 + 8 x %llu", pos - 8, t->name,
                                                        (unsigned long long)t->payload_len, (unsigned long long)nnz);
            for (k = 0; k < nnz; k++) {
                uint64_t idx = rd_u32(t->payload + 4 + 8 * k);
                if (idx >= numel || (k > 0 && idx <= prev)) FPV_FAIL("offset %zu: %s: sparse index %llu not increasing / out of range",
                                                                     pos + 4 + 8 * (size_t)k, t->name, (unsigned long long)idx);
                prev = idx;
            }
        }
        pos += (size_t)t->payload_len;
        for (i = 0; i < f->count; i++)
            if (strcmp(f->t[i].name, t->name) == 0) FPV_FAIL("offset %zu: duplicate name %s", rec, t->name);
        f->count++;
    }
    if ((uint32_t)f->count != declared) FPV_FAIL("record count %d != header %u", f->count, (unsigned)declared);
    if (size - pos < 5) FPV_FAIL("offset %zu: truncated CRC", pos + 1);
    if (size - pos > 5) FPV_FAIL("offset %zu: %zu trailing bytes after the CRC", pos + 5, size - pos - 5);
    crc = flowpic_crc32(0, data, pos + 1);
    if (rd_u32(data + pos + 1) != crc) FPV_FAIL("offset %zu: CRC mismatch: stored %08x computed %08x", pos + 1,
                                              (unsigned)rd_u32(data + pos + 1), (unsigned)crc);
    return 1;
}

static void fpv_free(fpv_file *f)
{
    free(f->t);
    free(f->data);
    memset(f, 0, sizeof *f);
}

static const fpv_tensor *fpv_find(const fpv_file *f, const char *name)
{
    int i;
    for (i = 0; i < f->count; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

/* Any numeric tensor as a freshly allocated double array (sparse expanded). */
static double *fpv_f64(const fpv_tensor *t)
{
    double *out = (double *)xmalloc((size_t)t->numel * sizeof(double));
    uint64_t i;
    if (t->kind == 2) {
        uint64_t nnz = rd_u32(t->payload);
        for (i = 0; i < t->numel; i++) out[i] = 0.0;
        for (i = 0; i < nnz; i++) out[rd_u32(t->payload + 4 + 8 * i)] = (double)rd_f32(t->payload + 8 + 8 * i);
        return out;
    }
    for (i = 0; i < t->numel; i++) {
        const unsigned char *p = t->payload;
        switch (t->dtype) {
        case FPV_F32: out[i] = (double)rd_f32(p + 4 * i); break;
        case FPV_F64: out[i] = rd_f64(p + 8 * i); break;
        case FPV_I32: out[i] = (double)(int32_t)rd_u32(p + 4 * i); break;
        default: out[i] = (double)p[i]; break;
        }
    }
    return out;
}

/* f32 tensor (dense or sparse) into dst[numel] exactly */
static void fpv_copy_f32(const fpv_tensor *t, float *dst)
{
    uint64_t i;
    if (t->kind == 2) {
        uint64_t nnz = rd_u32(t->payload);
        memset(dst, 0, (size_t)t->numel * sizeof(float));
        for (i = 0; i < nnz; i++) dst[rd_u32(t->payload + 4 + 8 * i)] = rd_f32(t->payload + 8 + 8 * i);
    } else {
        for (i = 0; i < t->numel; i++) dst[i] = rd_f32(t->payload + 4 * i);
    }
}

static int fpv_load(fpv_file *f, const char *path)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *data;
    long n;
    memset(f, 0, sizeof *f);
    if (!fp) { snprintf(f->err, sizeof f->err, "cannot open %s", path); return 0; }
    if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        snprintf(f->err, sizeof f->err, "cannot size %s", path);
        return 0;
    }
    data = (unsigned char *)xmalloc((size_t)n);
    if (fread(data, 1, (size_t)n, fp) != (size_t)n) {
        fclose(fp);
        free(data);
        snprintf(f->err, sizeof f->err, "cannot read %s", path);
        return 0;
    }
    fclose(fp);
    if (!fpv_parse(f, data, (size_t)n)) { free(f->t); f->t = NULL; free(data); f->data = NULL; return 0; }
    return 1;
}

/* ------------------------------------------------------------------ reference comparison */

static double g_worst_use;
static char g_worst_name[300];

/* |c - ref| <= atol + rtol * max|ref| for every element; prints the tensor, the largest
 * difference and where on failure. */
static int check_tensor(const fpv_file *f, const char *name, const float *c, size_t n)
{
    const fpv_tensor *rt = fpv_find(f, name), *tt;
    char tolname[300];
    double *ref, *tol, atol, rtol, mx = 0.0, worst = 0.0, lim;
    size_t i, at = 0, over = 0;
    if (!rt) { fail_msg(__FILE__, __LINE__, "%s: reference tensor missing", name); return 0; }
    snprintf(tolname, sizeof tolname, "tol.%s", name);
    tt = fpv_find(f, tolname);
    if (!tt || tt->numel != 2) { fail_msg(__FILE__, __LINE__, "%s: %s missing", name, tolname); return 0; }
    if (rt->numel != (uint64_t)n) {
        fail_msg(__FILE__, __LINE__, "%s: %llu reference elements, engine has %zu", name, (unsigned long long)rt->numel, n);
        return 0;
    }
    if (!c) { fail_msg(__FILE__, __LINE__, "%s: engine tensor not available", name); return 0; }
    ref = fpv_f64(rt);
    tol = fpv_f64(tt);
    atol = tol[0];
    rtol = tol[1];
    for (i = 0; i < n; i++) if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
    lim = atol + rtol * mx;
    for (i = 0; i < n; i++) {
        double d = fabs((double)c[i] - ref[i]);
        if (d > worst || d != d) { worst = d; at = i; }
        if (!(d <= lim)) over++;
    }
    if (lim > 0 && worst / lim > g_worst_use) {
        g_worst_use = worst / lim;
        snprintf(g_worst_name, sizeof g_worst_name, "%s", name);
    }
    if (over) {
        char idx[128];
        size_t rem = at;
        int j, len = 0;
        idx[0] = '\0';
        for (j = rt->ndim - 1; j >= 0; j--) (void)0;
        {   /* C-order multi-index of `at` */
            size_t strides[8], s = 1;
            for (j = rt->ndim - 1; j >= 0; j--) { strides[j] = s; s *= rt->dims[j]; }
            for (j = 0; j < rt->ndim && len < 100; j++) {
                len += snprintf(idx + len, sizeof idx - (size_t)len, "%s%zu", j ? "," : "", rem / strides[j]);
                rem %= strides[j];
            }
        }
        fail_msg(__FILE__, __LINE__, "%s: max |diff| %.3e at [%s] (engine %.9g, ref %.9g) > limit %.3e "
                 "(atol %.1e + rtol %.1e x max|ref| %.3e); %zu of %zu elements over",
                 name, worst, idx, (double)c[at], ref[at], lim, atol, rtol, mx, over, n);
    } else if (g_verbose) {
        printf("    %-28s max|diff| %.2e  limit %.2e  (%.0f%% used)\n", name, worst, lim, lim > 0 ? 100.0 * worst / lim : 0.0);
    }
    free(ref);
    free(tol);
    return over == 0;
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static int fpv_int(const fpv_file *f, const char *name, int dflt)
{
    const fpv_tensor *t = fpv_find(f, name);
    double *v;
    int r;
    if (!t || t->numel < 1) return dflt;
    v = fpv_f64(t);
    r = (int)v[0];
    free(v);
    return r;
}

/* $FLOWPIC_VECTORS_DIR, else ../shared/vectors beside the checkout, else /work/shared/vectors. */
static const char *vectors_dir(void)
{
    const char *d = getenv("FLOWPIC_VECTORS_DIR");
    DIR *probe;
    if (d && *d) return d;
    probe = opendir("../shared/vectors");
    if (probe) {
        closedir(probe);
        return "../shared/vectors";
    }
    return "/work/shared/vectors";
}

/* ------------------------------------------------------------------ vector cases */

/* Checks every reference tensor of the file that depends on the current forward/backward
 * (not adam.*). Returns the number checked. */
static int check_pass_tensors(const fpv_file *f, const flowpic_net *net, const flowpic_workspace *ws,
                              int B, float loss)
{
    int i, checked = 0;
    for (i = 0; i < f->count; i++) {
        const char *name = f->t[i].name;
        char lname[256];
        if (strcmp(name, "logits") == 0) {
            check_tensor(f, name, flowpic_workspace_output(ws, net->num_layers - 1), (size_t)B * (size_t)net->num_classes);
        } else if (strcmp(name, "probs") == 0) {
            check_tensor(f, name, flowpic_workspace_probs(ws), (size_t)B * (size_t)net->num_classes);
        } else if (strcmp(name, "loss") == 0) {
            check_tensor(f, name, &loss, 1);
        } else if (strcmp(name, "grad.logits") == 0) {
            check_tensor(f, name, flowpic_workspace_dlogits(ws), (size_t)B * (size_t)net->num_classes);
        } else if (strcmp(name, "act.relu1.sample0") == 0) {
            int l = flowpic_net_find_layer(net, "relu1");
            check_tensor(f, name, l < 0 ? NULL : flowpic_workspace_output(ws, l), l < 0 ? 0 : net->layers[l].out_numel);
        } else if (starts_with(name, "act.") || starts_with(name, "grad.act.")) {
            int grad = starts_with(name, "grad.");
            int l = flowpic_net_find_layer(net, name + (grad ? 9 : 4));
            if (l < 0) { fail_msg(__FILE__, __LINE__, "%s: no such layer", name); continue; }
            check_tensor(f, name, grad ? flowpic_workspace_output_grad(ws, l) : flowpic_workspace_output(ws, l),
                         (size_t)B * net->layers[l].out_numel);
        } else if (starts_with(name, "grad.")) {
            const char *dot;
            int l;
            snprintf(lname, sizeof lname, "%s", name + 5);
            dot = strchr(lname, '.');
            if (!dot) { fail_msg(__FILE__, __LINE__, "%s: unknown tensor", name); continue; }
            lname[dot - lname] = '\0';
            l = flowpic_net_find_layer(net, lname);
            if (l < 0 || !net->layers[l].num_weights) { fail_msg(__FILE__, __LINE__, "%s: no such layer", name); continue; }
            if (strcmp(dot + 1, "weight") == 0)
                check_tensor(f, name, net->grads + net->layers[l].weight_offset, net->layers[l].num_weights);
            else if (strcmp(dot + 1, "bias") == 0)
                check_tensor(f, name, net->grads + net->layers[l].bias_offset, net->layers[l].num_biases);
            else
                fail_msg(__FILE__, __LINE__, "%s: unknown tensor", name);
        } else {
            continue;
        }
        checked++;
    }
    return checked;
}

/* adam.step<k>.<layer>.weight/bias against the current params */
static int check_adam_params(const fpv_file *f, const flowpic_net *net, int step)
{
    int l, checked = 0;
    for (l = 0; l < net->num_layers; l++) {
        const flowpic_layer *L = &net->layers[l];
        char name[128];
        if (!L->num_weights) continue;
        snprintf(name, sizeof name, "adam.step%d.%s.weight", step, L->name);
        check_tensor(f, name, net->params + L->weight_offset, L->num_weights);
        snprintf(name, sizeof name, "adam.step%d.%s.bias", step, L->name);
        check_tensor(f, name, net->params + L->bias_offset, L->num_biases);
        checked += 2;
    }
    return checked;
}

static int copy_params(const fpv_file *f, flowpic_net *net, const char *prefix)
{
    int l;
    for (l = 0; l < net->num_layers; l++) {
        const flowpic_layer *L = &net->layers[l];
        const fpv_tensor *tw, *tb;
        char name[128];
        if (!L->num_weights) continue;
        snprintf(name, sizeof name, "%s%s.weight", prefix, L->name);
        tw = fpv_find(f, name);
        snprintf(name, sizeof name, "%s%s.bias", prefix, L->name);
        tb = fpv_find(f, name);
        if (!tw || !tb || tw->dtype != FPV_F32 || tb->dtype != FPV_F32 || tw->numel != L->num_weights
            || tb->numel != L->num_biases) {
            fail_msg(__FILE__, __LINE__, "%s%s: parameters missing or of the wrong shape", prefix, L->name);
            return 0;
        }
        fpv_copy_f32(tw, net->params + L->weight_offset);
        fpv_copy_f32(tb, net->params + L->bias_offset);
    }
    return 1;
}

static void run_vector_file(const char *path, const char *fname)
{
    fpv_file f;
    flowpic_net net;
    flowpic_workspace ws;
    const fpv_tensor *t_arch, *t_in, *t_lab;
    char arch[64];
    int res, m, B, train, steps, l, i, checked = 0;
    flowpic_arch a;
    float *input = NULL, loss = 0.0f;
    int *labels = NULL;
    double *tmp;
    flowpic_mode mode;
    g_worst_use = 0.0;
    g_worst_name[0] = '\0';
    memset(&net, 0, sizeof net);
    memset(&ws, 0, sizeof ws);
    if (!fpv_load(&f, path)) { fail_msg(__FILE__, __LINE__, "%s: %s", fname, f.err); return; }
    t_arch = fpv_find(&f, "arch");
    t_in = fpv_find(&f, "input");
    t_lab = fpv_find(&f, "labels");
    if (!t_arch || t_arch->dtype != FPV_U8 || t_arch->numel >= sizeof arch || !t_in || !t_lab
        || t_in->dtype != FPV_F32 || t_in->ndim != 4 || t_lab->dtype != FPV_I32) {
        fail_msg(__FILE__, __LINE__, "%s: arch / input / labels missing or malformed", fname);
        fpv_free(&f);
        return;
    }
    memcpy(arch, t_arch->payload, (size_t)t_arch->numel);
    arch[t_arch->numel] = '\0';
    if (strcmp(arch, "flowpic-full") == 0) { a = FLOWPIC_ARCH_FULL; res = 1500; }
    else if (strcmp(arch, "flowpic-mini32") == 0) { a = FLOWPIC_ARCH_MINI; res = 32; }
    else if (strcmp(arch, "flowpic-mini64") == 0) { a = FLOWPIC_ARCH_MINI; res = 64; }
    else { fail_msg(__FILE__, __LINE__, "%s: unknown arch '%s'", fname, arch); fpv_free(&f); return; }
    m = fpv_int(&f, "config.num_classes", -1);
    train = fpv_int(&f, "config.train", -1);
    steps = fpv_int(&f, "config.adam_steps", 0);
    B = (int)t_in->dims[0];
    CHECK(t_in->dims[1] == 1 && t_in->dims[2] == (uint32_t)res && t_in->dims[3] == (uint32_t)res);
    CHECK(t_lab->numel == (uint64_t)B);
    CHECK(train == 0 || train == 1);
    CHECK_EQ(flowpic_net_init(&net, a, res, m), FLOWPIC_OK);
    if (g_case_failed || !copy_params(&f, &net, "params.")) goto done;
    CHECK_EQ(flowpic_workspace_init(&ws, &net, B, FLOWPIC_WS_KEEP_GRADS), FLOWPIC_OK);
    if (g_case_failed) goto done;
    input = (float *)xmalloc((size_t)t_in->numel * sizeof(float));
    fpv_copy_f32(t_in, input);
    tmp = fpv_f64(t_lab);
    labels = (int *)xmalloc((size_t)B * sizeof(int));
    for (i = 0; i < B; i++) labels[i] = (int)tmp[i];
    free(tmp);
    mode = train ? FLOWPIC_MODE_TRAIN_FIXED_MASKS : FLOWPIC_MODE_EVAL;
    if (train) {
        for (l = 0; l < net.num_layers; l++) {
            char name[64];
            const fpv_tensor *tm;
            uint8_t *mask = flowpic_workspace_mask(&ws, l);
            if (net.layers[l].kind != FLOWPIC_LAYER_DROPOUT) { CHECK(mask == NULL); continue; }
            snprintf(name, sizeof name, "mask.%s", net.layers[l].name);
            tm = fpv_find(&f, name);
            CHECK(mask != NULL);
            CHECK(tm != NULL && tm->dtype == FPV_U8 && tm->numel == (uint64_t)B * net.layers[l].out_numel);
            if (g_case_failed) goto done;
            memcpy(mask, tm->payload, (size_t)tm->numel);
        }
    }
    CHECK_EQ(flowpic_net_forward(&net, &ws, input, B, mode, NULL), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_loss(&net, &ws, labels, B, &loss), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_backward(&net, &ws, input, B), FLOWPIC_OK);
    if (g_case_failed) goto done;
    checked += check_pass_tensors(&f, &net, &ws, B, loss);
    if (steps > 0) {
        const fpv_tensor *tc = fpv_find(&f, "config.adam");
        double *cfg, losses[16];
        float lossf[16];
        int k;
        CHECK(tc != NULL && tc->numel == 4 && steps < 15);
        if (g_case_failed) goto done;
        cfg = fpv_f64(tc);
        /* Adam arithmetic alone, from the float32-rounded reference gradients (VECTORS.md 5) */
        {
            flowpic_net net2;
            CHECK_EQ(flowpic_net_init(&net2, a, res, m), FLOWPIC_OK);
            if (!g_case_failed && copy_params(&f, &net2, "params.")) {
                for (l = 0; l < net2.num_layers; l++) {
                    const flowpic_layer *L = &net2.layers[l];
                    char name[64];
                    const fpv_tensor *tg;
                    size_t j;
                    if (!L->num_weights) continue;
                    snprintf(name, sizeof name, "grad.%s.weight", L->name);
                    tg = fpv_find(&f, name);
                    tmp = fpv_f64(tg);
                    for (j = 0; j < L->num_weights; j++) net2.grads[L->weight_offset + j] = (float)tmp[j];
                    free(tmp);
                    snprintf(name, sizeof name, "grad.%s.bias", L->name);
                    tg = fpv_find(&f, name);
                    tmp = fpv_f64(tg);
                    for (j = 0; j < L->num_biases; j++) net2.grads[L->bias_offset + j] = (float)tmp[j];
                    free(tmp);
                }
                CHECK_EQ(flowpic_adam_step(&net2, cfg[0], cfg[1], cfg[2], cfg[3]), FLOWPIC_OK);
                checked += check_adam_params(&f, &net2, 1);
            }
            flowpic_net_free(&net2);
        }
        losses[0] = ws.loss;
        for (k = 1; k <= steps; k++) {
            if (k > 1) {
                flowpic_net_zero_grad(&net);
                CHECK_EQ(flowpic_net_forward(&net, &ws, input, B, mode, NULL), FLOWPIC_OK);
                CHECK_EQ(flowpic_net_loss(&net, &ws, labels, B, NULL), FLOWPIC_OK);
                CHECK_EQ(flowpic_net_backward(&net, &ws, input, B), FLOWPIC_OK);
                losses[k - 1] = ws.loss;
            }
            CHECK_EQ(flowpic_adam_step(&net, cfg[0], cfg[1], cfg[2], cfg[3]), FLOWPIC_OK);
            checked += check_adam_params(&f, &net, k);
        }
        CHECK_EQ(flowpic_net_forward(&net, &ws, input, B, mode, NULL), FLOWPIC_OK);
        CHECK_EQ(flowpic_net_loss(&net, &ws, labels, B, NULL), FLOWPIC_OK);
        losses[steps] = ws.loss;
        for (k = 0; k <= steps; k++) lossf[k] = (float)losses[k];
        check_tensor(&f, "adam.loss", lossf, (size_t)steps + 1);
        checked++;
        free(cfg);
    }
    /* every reference tensor must have been looked at */
    {
        int refs = 0;
        for (i = 0; i < f.count; i++) {
            const char *n = f.t[i].name;
            if (starts_with(n, "act.") || starts_with(n, "grad.") || starts_with(n, "adam.") || strcmp(n, "logits") == 0
                || strcmp(n, "probs") == 0 || strcmp(n, "loss") == 0)
                refs++;
        }
        int param_tensors = 0;
        for (l = 0; l < net.num_layers; l++) param_tensors += net.layers[l].num_weights ? 2 : 0;
        /* + the extra adam.step1 check from the reference gradients */
        CHECK_EQ(checked, refs + (steps > 0 ? param_tensors : 0));
    }
    printf("     %s: %d reference tensors checked, worst %.0f%% of tolerance (%s)\n", fname, checked,
           100.0 * g_worst_use, g_worst_name);
done:
    free(input);
    free(labels);
    flowpic_workspace_free(&ws);
    flowpic_net_free(&net);
    fpv_free(&f);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static void test_vectors(void)
{
    const char *dir = vectors_dir();
    DIR *d = opendir(dir);
    struct dirent *e;
    char *names[256];
    int n = 0, i;
    if (!d) { fail_msg(__FILE__, __LINE__, "cannot open vector directory %s", dir); return; }
    while ((e = readdir(d)) != NULL && n < 256) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".fpv") == 0) {
            names[n] = (char *)xmalloc(len + 1);
            memcpy(names[n++], e->d_name, len + 1);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    CHECK(n >= 9);
    for (i = 0; i < n; i++) {
        char path[4096], cname[300];
        int j, run = 1;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        snprintf(cname, sizeof cname, "vectors/%s", names[i]);
        /* filters naming files ("vectors/mini32") select among them */
        for (j = 0; j < g_nfilters; j++)
            if (starts_with(g_filters[j], "vectors/")) run = 0;
        for (j = 0; j < g_nfilters && !run; j++)
            if (starts_with(g_filters[j], "vectors/") && strstr(cname, g_filters[j])) run = 1;
        if (!run) { free(names[i]); continue; }
        case_begin(cname);
        run_vector_file(path, names[i]);
        free(names[i]);
    }
}

/* The reader rejects damaged files, each with its reason. */
static void test_fpv_reader(void)
{
    char path[4096];
    fpv_file f, g;
    unsigned char *copy;
    size_t n;
    snprintf(path, sizeof path, "%s/mini32_eval_b4_m5.fpv", vectors_dir());
    if (!fpv_load(&f, path)) { fail_msg(__FILE__, __LINE__, "%s", f.err); return; }
    CHECK(flowpic_crc32(0, (const unsigned char *)"123456789", 9) == 0xCBF43926u);
    n = f.size;
    copy = (unsigned char *)xmalloc(n + 1);
#define TRY_DAMAGED(len, edit, expect) do { memcpy(copy, f.data, n); edit; \
        CHECK(!fpv_parse(&g, copy, (len))); CHECK(strstr(g.err, expect) != NULL); \
        if (g_verbose) { printf("    damaged: %s\n", g.err); } \
        free(g.t); } while (0)
    TRY_DAMAGED(n, copy[0] = 'X', "magic");
    TRY_DAMAGED(n, copy[4] = 2, "version");
    TRY_DAMAGED(n, copy[n - 1] ^= 1, "CRC");
    TRY_DAMAGED(n, copy[n / 2] ^= 0x10, "");
    TRY_DAMAGED(n - 1, (void)0, "");
    TRY_DAMAGED(n + 1, copy[n] = 0, "trailing");
    TRY_DAMAGED(n, copy[8] = (unsigned char)(copy[8] + 1), "count");
    TRY_DAMAGED(n, copy[12] = 7, "kind");
    TRY_DAMAGED(10, (void)0, "short");
#undef TRY_DAMAGED
    /* the intact copy parses */
    memcpy(copy, f.data, n);
    CHECK(fpv_parse(&g, copy, n));
    free(g.t);
    free(copy);
    fpv_free(&f);
}

/* ------------------------------------------------------------------ presets, API errors */

static void test_presets(void)
{
    flowpic_net net;
    static const char *const full_names[] = {"conv1", "relu1", "pool1", "conv2", "relu2", "dropout1", "pool2",
                                             "flatten1", "dense1", "relu3", "dropout2", "dense2"};
    static const char *const mini_names[] = {"conv1", "relu1", "pool1", "conv2", "relu2", "dropout1", "pool2",
                                             "flatten1", "dense1", "relu3", "dense2", "relu4", "dropout2", "dense3"};
    int l, m;
    for (m = 2; m <= 7; m += 5) {
        CHECK_EQ(flowpic_net_init(&net, FLOWPIC_ARCH_FULL, 1500, m), FLOWPIC_OK);
        CHECK_EQ(net.num_layers, 12);
        CHECK_EQ(net.num_params, 1010 + 20020 + 288064 + 65 * m);
        for (l = 0; l < net.num_layers && l < 12; l++) CHECK(strcmp(net.layers[l].name, full_names[l]) == 0);
        CHECK_EQ(net.layers[0].out_h, 300); CHECK_EQ(net.layers[2].out_h, 150);
        CHECK_EQ(net.layers[3].out_h, 30); CHECK_EQ(net.layers[6].out_h, 15);
        CHECK_EQ(net.layers[8].in_numel, 4500);
        CHECK_EQ(net.layers[11].out_c, m);
        CHECK(strcmp(flowpic_arch_name(net.arch), "flowpic-full") == 0);
        flowpic_net_free(&net);
    }
    CHECK_EQ(flowpic_net_init(&net, FLOWPIC_ARCH_MINI, 32, 5), FLOWPIC_OK);
    CHECK_EQ(net.num_layers, 14);
    for (l = 0; l < net.num_layers && l < 14; l++) CHECK(strcmp(net.layers[l].name, mini_names[l]) == 0);
    CHECK_EQ(net.layers[8].in_numel, 400);
    CHECK_EQ(net.num_params, 156 + 2416 + 48120 + 10164 + 85 * 5);
    /* parameter layout: weight then bias per layer, in layer order */
    CHECK_EQ(net.layers[0].weight_offset, 0);
    CHECK_EQ(net.layers[0].bias_offset, 150);
    CHECK_EQ(net.layers[3].weight_offset, 156);
    CHECK(net.grads == net.params + net.num_params && net.adam_v == net.params + 3 * net.num_params);
    flowpic_net_free(&net);
    CHECK_EQ(flowpic_net_init(&net, FLOWPIC_ARCH_MINI, 64, 3), FLOWPIC_OK);
    CHECK_EQ(net.layers[8].in_numel, 2704);
    flowpic_net_free(&net);
    flowpic_net_free(&net);   /* double free is safe */
}

static void test_api_errors(void)
{
    flowpic_net net, net2;
    flowpic_workspace ws, ws_eval;
    flowpic_layer_desc d[4];
    flowpic_rng rng;
    float x[2 * 32 * 32];
    int labels[2] = {0, 1}, bad[2] = {0, 5};
    float loss = 0.0f;
    memset(x, 0, sizeof x);
    flowpic_rng_seed(&rng, 1);
    CHECK_EQ(flowpic_net_init(&net, FLOWPIC_ARCH_FULL, 64, 5), FLOWPIC_ERR_ARG);
    CHECK(net.params == NULL);
    CHECK_EQ(flowpic_net_init(&net, FLOWPIC_ARCH_MINI, 48, 5), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_init(&net, FLOWPIC_ARCH_MINI, 32, 1), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_init(&net, FLOWPIC_ARCH_MINI, 32, FLOWPIC_NN_MAX_CLASSES + 1), FLOWPIC_ERR_LIMIT);
    CHECK_EQ(flowpic_net_init(&net, (flowpic_arch)9, 32, 5), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_init(NULL, FLOWPIC_ARCH_MINI, 32, 5), FLOWPIC_ERR_ARG);
    /* descriptions */
    d[0] = nn_desc(FLOWPIC_LAYER_CONV, 4, 5, 1, 0, 0, 0.0f);
    d[1] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
    CHECK_EQ(flowpic_net_init_layers(&net, d, 2, 1, 4, 4, 3), FLOWPIC_ERR_ARG);       /* kernel > input */
    CHECK_EQ(flowpic_net_init_layers(&net, d, 2, 1, 8, 8, 3), FLOWPIC_OK);
    CHECK_EQ(net.layers[1].in_numel, 4 * 4 * 4);
    flowpic_net_free(&net);
    d[1] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
    CHECK_EQ(flowpic_net_init_layers(&net, d, 2, 1, 8, 8, 3), FLOWPIC_ERR_ARG);       /* last not dense */
    d[1] = nn_desc(FLOWPIC_LAYER_DENSE, 4, 0, 0, 0, 0, 0.0f);
    CHECK_EQ(flowpic_net_init_layers(&net, d, 2, 1, 8, 8, 3), FLOWPIC_ERR_ARG);       /* last != m */
    d[1] = nn_desc(FLOWPIC_LAYER_DROPOUT, 0, 0, 0, 0, 0, 1.0f);
    d[2] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
    CHECK_EQ(flowpic_net_init_layers(&net, d, 3, 1, 8, 8, 3), FLOWPIC_ERR_ARG);       /* p = 1 */
    d[1] = nn_desc(FLOWPIC_LAYER_MAXPOOL, 0, 2, 0, 0, 0, 0.0f);
    CHECK_EQ(flowpic_net_init_layers(&net, d, 3, 1, 8, 8, 3), FLOWPIC_ERR_ARG);       /* stride 0 */
    d[0] = nn_desc(FLOWPIC_LAYER_CONV, 4, 3, 1, 3, 0, 0.0f);
    CHECK_EQ(flowpic_net_init_layers(&net, d, 3, 1, 8, 8, 3), FLOWPIC_ERR_LIMIT);     /* pad >= kernel */
    d[0] = nn_desc(FLOWPIC_LAYER_CONV, FLOWPIC_NN_MAX_CHANNELS + 1, 3, 1, 0, 0, 0.0f);
    CHECK_EQ(flowpic_net_init_layers(&net, d, 3, 1, 8, 8, 3), FLOWPIC_ERR_LIMIT);
    d[0] = nn_desc(FLOWPIC_LAYER_FLATTEN, 0, 0, 0, 0, 0, 0.0f);
    CHECK_EQ(flowpic_net_init_layers(&net, d, 3, 1, 8, 8, 3), FLOWPIC_ERR_ARG);
    d[0] = nn_desc(FLOWPIC_LAYER_DENSE, FLOWPIC_NN_MAX_CHANNELS, 0, 0, 0, 0, 0.0f);
    d[1] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
    CHECK_EQ(flowpic_net_init_layers(&net, d, 2, 1, 16384, 16384, 3), FLOWPIC_ERR_LIMIT); /* input numel */
    CHECK_EQ(flowpic_net_init_layers(&net, d, 2, 1, 128, 128, 3), FLOWPIC_ERR_LIMIT);     /* params */
    CHECK_EQ(flowpic_net_init_layers(&net, d, FLOWPIC_NN_MAX_LAYERS + 1, 1, 8, 8, 3), FLOWPIC_ERR_LIMIT);
    /* passes */
    CHECK_EQ(flowpic_net_init(&net, FLOWPIC_ARCH_MINI, 32, 2), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_init(&net2, FLOWPIC_ARCH_MINI, 32, 3), FLOWPIC_OK);
    CHECK_EQ(flowpic_workspace_init(&ws, &net, 0, 0), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_workspace_init(&ws, &net, FLOWPIC_NN_MAX_BATCH + 1, 0), FLOWPIC_ERR_LIMIT);
    CHECK_EQ(flowpic_workspace_init(&ws, &net, 2, 8u), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_workspace_init(&ws_eval, &net, 2, 0), FLOWPIC_OK);
    CHECK_EQ(flowpic_workspace_init(&ws, &net, 2, FLOWPIC_WS_TRAIN), FLOWPIC_OK);
    CHECK(flowpic_workspace_mask(&ws, 5) != NULL);
    CHECK(flowpic_workspace_mask(&ws, 4) == NULL);
    CHECK(flowpic_workspace_mask(&ws_eval, 5) == NULL);
    CHECK(flowpic_workspace_output_grad(&ws, 3) == NULL);
    CHECK(flowpic_workspace_output(&ws, 14) == NULL);
    CHECK_EQ(flowpic_net_forward(&net2, &ws, x, 2, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_ERR_ARG);  /* other net */
    CHECK_EQ(flowpic_net_forward(&net, &ws, x, 3, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_ERR_ARG);   /* > max_batch */
    CHECK_EQ(flowpic_net_forward(&net, &ws, NULL, 2, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_forward(&net, &ws, x, 2, FLOWPIC_MODE_TRAIN, NULL), FLOWPIC_ERR_ARG);  /* no rng */
    CHECK_EQ(flowpic_net_forward(&net, &ws_eval, x, 2, FLOWPIC_MODE_TRAIN, &rng), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_forward(&net, &ws, x, 2, (flowpic_mode)7, &rng), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_loss(&net, &ws, labels, 2, &loss), FLOWPIC_ERR_ARG);                  /* no forward */
    CHECK_EQ(flowpic_net_forward(&net, &ws, x, 2, FLOWPIC_MODE_TRAIN, &rng), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_backward(&net, &ws, x, 2), FLOWPIC_ERR_ARG);                          /* no loss */
    CHECK_EQ(flowpic_net_loss(&net, &ws, bad, 2, &loss), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_loss(&net, &ws, labels, 1, &loss), FLOWPIC_ERR_ARG);                  /* batch differs */
    CHECK_EQ(flowpic_net_loss(&net, &ws, labels, 2, &loss), FLOWPIC_OK);
    CHECK_NEAR(loss, log(2.0), 1e-6);   /* zero params: uniform probabilities */
    CHECK_EQ(flowpic_net_backward(&net, &ws, x, 1), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_backward(&net, &ws, x, 2), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_forward(&net, &ws_eval, x, 2, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_loss(&net, &ws_eval, labels, 2, &loss), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_backward(&net, &ws_eval, x, 2), FLOWPIC_ERR_ARG);                     /* eval-only ws */
    CHECK_EQ(flowpic_adam_step(&net, 1e-3, 1.0, 0.999, 1e-8), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_adam_step(&net, -1.0, 0.9, 0.999, 1e-8), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_adam_step(&net, 1e-3, 0.9, 0.999, -1.0), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_adam_step(&net, 1e-3, 0.9, 0.999, 1e-8), FLOWPIC_OK);
    CHECK_EQ(net.adam_t, 1);
    flowpic_workspace_free(&ws);
    flowpic_workspace_free(&ws);
    flowpic_workspace_free(&ws_eval);
    flowpic_net_free(&net);
    flowpic_net_free(&net2);
}

/* Glorot-uniform: inside the limit, spread like a uniform, biases zero */
static void test_glorot(void)
{
    flowpic_net net;
    flowpic_rng rng;
    int l;
    flowpic_rng_seed(&rng, 7);
    CHECK_EQ(flowpic_net_init(&net, FLOWPIC_ARCH_FULL, 1500, 5), FLOWPIC_OK);
    net.grads[3] = 1.0f;
    flowpic_net_init_glorot(&net, &rng);
    CHECK(net.grads[3] == 0.0f);
    for (l = 0; l < net.num_layers; l++) {
        const flowpic_layer *L = &net.layers[l];
        double fi, fo, lim, s2 = 0.0, mx = 0.0;
        size_t i;
        if (!L->num_weights) continue;
        fi = L->kind == FLOWPIC_LAYER_CONV ? (double)(L->in_c * L->kernel * L->kernel) : (double)L->in_numel;
        fo = L->kind == FLOWPIC_LAYER_CONV ? (double)(L->out_c * L->kernel * L->kernel) : (double)L->out_c;
        lim = sqrt(6.0 / (fi + fo));
        for (i = 0; i < L->num_weights; i++) {
            double w = (double)net.params[L->weight_offset + i];
            s2 += w * w;
            if (fabs(w) > mx) mx = fabs(w);
        }
        CHECK(mx <= lim);
        CHECK(mx > 0.9 * lim);
        CHECK_NEAR(s2 / (double)L->num_weights, lim * lim / 3.0, 0.2 * lim * lim / 3.0 + 0.05 * lim * lim);
        CHECK(max_abs(net.params + L->bias_offset, L->num_biases) == 0.0);
    }
    flowpic_net_free(&net);
}

/* Dropout in TRAIN mode: keep rate ~ 1-p, kept values scaled, reproducible from the seed;
 * eval mode is the identity; forward never writes to the net. */
static void test_dropout_train_mode(void)
{
    flowpic_net net;
    flowpic_workspace ws;
    flowpic_rng rng, rng2;
    const int B = 16;
    float *x = (float *)xmalloc((size_t)B * 32 * 32 * sizeof(float)), *params_copy;
    uint8_t *m1;
    int l = 5, i;
    size_t n, kept = 0;
    flowpic_rng_seed(&rng, 3);
    CHECK_EQ(flowpic_net_init(&net, FLOWPIC_ARCH_MINI, 32, 4), FLOWPIC_OK);
    flowpic_net_init_glorot(&net, &rng);
    CHECK_EQ(flowpic_workspace_init(&ws, &net, B, FLOWPIC_WS_TRAIN), FLOWPIC_OK);
    for (i = 0; i < B; i++) fill_picture(x + i * 1024, 32, 32, 60, &rng);
    params_copy = (float *)xmalloc(net.num_params * sizeof(float));
    memcpy(params_copy, net.params, net.num_params * sizeof(float));
    rng2 = rng;
    CHECK(net.layers[l].kind == FLOWPIC_LAYER_DROPOUT);
    CHECK_EQ(flowpic_net_forward(&net, &ws, x, B, FLOWPIC_MODE_TRAIN, &rng), FLOWPIC_OK);
    n = (size_t)B * net.layers[l].out_numel;
    m1 = (uint8_t *)xmalloc(n);
    memcpy(m1, flowpic_workspace_mask(&ws, l), n);
    for (i = 0; i < (int)n; i++) {
        float in = flowpic_workspace_output(&ws, l - 1)[i], out = flowpic_workspace_output(&ws, l)[i];
        kept += m1[i];
        if (m1[i]) CHECK(out == in * (float)(1.0 / 0.75));
        else CHECK(out == 0.0f);
        if (g_case_failed) break;
    }
    CHECK_NEAR((double)kept / (double)n, 0.75, 0.02);
    kept = 0;
    for (i = 0; i < B * 84; i++) kept += flowpic_workspace_mask(&ws, 12)[i];
    CHECK_NEAR((double)kept / (double)(B * 84), 0.5, 0.06);
    CHECK_EQ(flowpic_net_forward(&net, &ws, x, B, FLOWPIC_MODE_TRAIN, &rng2), FLOWPIC_OK);
    CHECK(memcmp(m1, flowpic_workspace_mask(&ws, l), n) == 0);
    CHECK_EQ(flowpic_net_forward(&net, &ws, x, B, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_OK);
    CHECK(memcmp(flowpic_workspace_output(&ws, l), flowpic_workspace_output(&ws, l - 1), n * sizeof(float)) == 0);
    CHECK(memcmp(params_copy, net.params, net.num_params * sizeof(float)) == 0);
    {   /* predict = softmax of the eval logits */
        float probs[16 * 4];
        const float *lg;
        CHECK_EQ(flowpic_net_predict(&net, &ws, x, B, probs), FLOWPIC_OK);
        lg = flowpic_workspace_output(&ws, net.num_layers - 1);
        for (i = 0; i < B; i++) {
            double s = 0.0, mx = (double)lg[i * 4];
            int k;
            for (k = 1; k < 4; k++) if ((double)lg[i * 4 + k] > mx) mx = (double)lg[i * 4 + k];
            for (k = 0; k < 4; k++) s += exp((double)lg[i * 4 + k] - mx);
            for (k = 0; k < 4; k++) CHECK_NEAR(probs[i * 4 + k], exp((double)lg[i * 4 + k] - mx) / s, 1e-7);
        }
    }
    free(m1);
    free(params_copy);
    free(x);
    flowpic_workspace_free(&ws);
    flowpic_net_free(&net);
}

/* ------------------------------------------------------------------ finite differences */

static double loss_at(flowpic_net *net, flowpic_workspace *ws, const float *x, const int *labels, int B,
                      size_t k, float value)
{
    const float save = net->params[k];
    net->params[k] = value;
    flowpic_net_forward(net, ws, x, B, FLOWPIC_MODE_TRAIN_FIXED_MASKS, NULL);
    flowpic_net_loss(net, ws, labels, B, NULL);
    net->params[k] = save;
    return ws->loss;
}

/* Finite differences of the mean loss w.r.t. every parameter (or an even subset of at most
 * max_checks) against the analytic gradient. Dropout layers get fixed random masks.
 * ReLU and max-pool make the loss piecewise smooth, and with a few hundred units some
 * pre-activation is usually within 1e-3 of a kink, so: central differences with h = 1e-3;
 * where they disagree, central differences with h = 2e-4 or one of the one-sided
 * differences with h = 5e-4 (the side without the kink) must agree. At most 10% of the
 * parameters may need that. (Smaller steps drown in the float32 noise of the loss, ~3e-8.) */
static void gradcheck(const char *label, const flowpic_layer_desc *d, int nd, int c, int h, int w,
                      int m, int B, uint64_t seed, flowpic_conv_algo algo)
{
    const double h1 = 1e-3, h2 = 2e-4, h3 = 5e-4, atol = 2e-4, rtol = 2e-2;
    const size_t max_checks = 1500;
    flowpic_net net;
    flowpic_workspace ws;
    flowpic_rng rng;
    float *x, *an;
    int *labels, i, l;
    size_t P, step, k, bad = 0, one_sided = 0, checked = 0;
    double worst = 0.0, worst_an = 0.0, worst_fd = 0.0, l0;
    size_t worst_i = 0;
    flowpic_rng_seed(&rng, seed);
    if (flowpic_net_init_layers(&net, d, nd, c, h, w, m) != FLOWPIC_OK) {
        fail_msg(__FILE__, __LINE__, "%s: flowpic_net_init_layers failed", label);
        return;
    }
    CHECK_EQ(flowpic_workspace_init(&ws, &net, B, FLOWPIC_WS_TRAIN), FLOWPIC_OK);
    flowpic_workspace_set_conv_algo(&ws, algo);
    flowpic_net_init_glorot(&net, &rng);
    for (l = 0; l < net.num_layers; l++)
        if (net.layers[l].num_biases)
            fill_uniform(net.params + net.layers[l].bias_offset, net.layers[l].num_biases, &rng, -0.2f, 0.2f);
    x = (float *)xmalloc((size_t)B * net.layers[0].in_numel * sizeof(float));
    fill_uniform(x, (size_t)B * net.layers[0].in_numel, &rng, -1.0f, 1.0f);
    labels = (int *)xmalloc((size_t)B * sizeof(int));
    for (i = 0; i < B; i++) labels[i] = (int)(flowpic_rng_next(&rng) % (uint64_t)m);
    for (l = 0; l < net.num_layers; l++) {
        uint8_t *mask = flowpic_workspace_mask(&ws, l);
        if (!mask) continue;
        for (k = 0; k < (size_t)B * net.layers[l].out_numel; k++)
            mask[k] = (uint8_t)(flowpic_rng_uniform(&rng) >= (double)net.layers[l].dropout_p);
    }
    CHECK_EQ(flowpic_net_forward(&net, &ws, x, B, FLOWPIC_MODE_TRAIN_FIXED_MASKS, NULL), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_loss(&net, &ws, labels, B, NULL), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_backward(&net, &ws, x, B), FLOWPIC_OK);
    l0 = ws.loss;
    P = net.num_params;
    an = (float *)xmalloc(P * sizeof(float));
    memcpy(an, net.grads, P * sizeof(float));
    step = P > max_checks ? P / max_checks + 1 : 1;
    for (k = 0; k < P; k += step) {
        const double p = (double)net.params[k], g = (double)an[k];
        double fd[4], err = 0.0, lim = 1.0;
        int j, ok = 0;
        {   /* the perturbations actually applied, after rounding to float */
            const float pp = (float)(p + h1), pm = (float)(p - h1), qp = (float)(p + h2), qm = (float)(p - h2);
            const float rp = (float)(p + h3), rm = (float)(p - h3);
            double lqp, lqm;
            fd[0] = (loss_at(&net, &ws, x, labels, B, k, pp) - loss_at(&net, &ws, x, labels, B, k, pm)) / ((double)pp - (double)pm);
            lqp = loss_at(&net, &ws, x, labels, B, k, qp);
            lqm = loss_at(&net, &ws, x, labels, B, k, qm);
            fd[1] = (lqp - lqm) / ((double)qp - (double)qm);
            fd[2] = (loss_at(&net, &ws, x, labels, B, k, rp) - l0) / ((double)rp - p);
            fd[3] = (l0 - loss_at(&net, &ws, x, labels, B, k, rm)) / (p - (double)rm);
        }
        checked++;
        for (j = 0; j < 4; j++) {
            double e = fabs(fd[j] - g), t = atol + rtol * (fabs(fd[j]) > fabs(g) ? fabs(fd[j]) : fabs(g));
            if (j == 0 || e / t < err / lim) { err = e; lim = t; }
            if (e <= t) { ok = 1; if (j > 0) one_sided++; break; }
        }
        if (!ok) bad++;
        if (err / lim > worst) { worst = err / lim; worst_i = k; worst_an = g; worst_fd = fd[0]; }
    }
    if (bad || one_sided * 10 > checked)
        fail_msg(__FILE__, __LINE__, "%s: %zu of %zu parameters disagree (%zu needed a smaller / one-sided step); "
                 "worst #%zu analytic %.6g fd %.6g", label, bad, checked, one_sided, worst_i, worst_an, worst_fd);
    else if (g_verbose)
        printf("    %-26s %4zu params (%zu kinked), worst %3.0f%% of tolerance (#%zu: %.6g vs fd %.6g)\n", label,
               checked, one_sided, 100 * worst, worst_i, worst_an, worst_fd);
    {   /* the gradient is not trivially zero */
        double nrm = 0.0;
        for (k = 0; k < P; k++) nrm += (double)an[k] * (double)an[k];
        CHECK(nrm > 1e-6);
    }
    free(an);
    free(x);
    free(labels);
    flowpic_workspace_free(&ws);
    flowpic_net_free(&net);
}

static void test_gradcheck(void)
{
    flowpic_layer_desc d[16];
    int a;
    for (a = 0; a < 2; a++) {
        flowpic_conv_algo algo = a ? FLOWPIC_CONV_NAIVE : FLOWPIC_CONV_BLOCKED;
        int n = 0;
        /* conv with padding and stride (rectangular input), softmax-CE */
        d[n++] = nn_desc(FLOWPIC_LAYER_CONV, 3, 3, 2, 1, 2, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
        gradcheck(a ? "conv pad/stride (naive)" : "conv pad/stride", d, n, 2, 11, 9, 3, 2, 11, algo);
        /* conv -> conv: input gradient of a strided, padded conv */
        n = 0;
        d[n++] = nn_desc(FLOWPIC_LAYER_CONV, 3, 3, 1, 1, 1, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_CONV, 4, 4, 3, 1, 2, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
        gradcheck(a ? "conv->conv (naive)" : "conv->conv", d, n, 1, 12, 13, 3, 2, 12, algo);
        /* stride larger than the kernel (skipped input rows / columns) */
        n = 0;
        d[n++] = nn_desc(FLOWPIC_LAYER_CONV, 3, 3, 1, 1, 1, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_CONV, 2, 2, 3, 0, 1, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
        gradcheck(a ? "conv stride>kernel (naive)" : "conv stride>kernel", d, n, 2, 10, 11, 3, 2, 13, algo);
        /* relu + max-pool (non-overlapping, then overlapping 3/2) */
        n = 0;
        d[n++] = nn_desc(FLOWPIC_LAYER_CONV, 4, 3, 1, 1, 1, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_MAXPOOL, 0, 2, 2, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_CONV, 3, 3, 1, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_MAXPOOL, 0, 3, 2, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
        gradcheck(a ? "relu + maxpool (naive)" : "relu + maxpool", d, n, 1, 14, 15, 3, 2, 14, algo);
    }
    {   /* dense, relu, dropout with fixed masks */
        int n = 0;
        d[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 10, 0, 0, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_DROPOUT, 0, 0, 0, 0, 0, 0.5f);
        d[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 8, 0, 0, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_DROPOUT, 0, 0, 0, 0, 0, 0.3f);
        d[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
        gradcheck("dense + dropout", d, n, 1, 4, 5, 4, 3, 15, FLOWPIC_CONV_BLOCKED);
    }
    {   /* a whole LeNet-like stack, every kind at once */
        int n = 0;
        d[n++] = nn_desc(FLOWPIC_LAYER_CONV, 4, 3, 1, 1, 1, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_MAXPOOL, 0, 2, 2, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_CONV, 6, 4, 2, 1, 2, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_DROPOUT, 0, 0, 0, 0, 0, 0.25f);
        d[n++] = nn_desc(FLOWPIC_LAYER_MAXPOOL, 0, 2, 2, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_FLATTEN, 0, 0, 0, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 12, 0, 0, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        d[n++] = nn_desc(FLOWPIC_LAYER_DROPOUT, 0, 0, 0, 0, 0, 0.5f);
        d[n++] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
        gradcheck("lenet-like stack", d, n, 1, 18, 18, 3, 3, 16, FLOWPIC_CONV_BLOCKED);
    }
}

/* ------------------------------------------------------------------ naive vs blocked conv */

/* Runs one conv shape through both implementations (forward, and backward with and without
 * the input gradient) on random data and compares. */
static void conv_compare(const char *label, int ic, int h, int w, int oc, int k, int s, int pb, int pa,
                         int batch, int sparse, uint64_t seed)
{
    flowpic_layer L;
    flowpic_layer_desc d = nn_desc(FLOWPIC_LAYER_CONV, oc, k, s, pb, pa, 0.0f);
    flowpic_workspace ws;
    nn_conv_geom g1, g2;
    flowpic_rng rng;
    float *x, *wts, *b, *y_n, *y_b, *dy, *dw_n, *dw_b, *dw_b2, *db_n, *db_b, *db_b2, *dx_n, *dx_b;
    size_t nin, nout, nw, items, i;
    double dmax, ref;
    int bitexact;
    memset(&L, 0, sizeof L);
    memset(&ws, 0, sizeof ws);
    CHECK_EQ(nn_layer_shape(&L, &d, ic, h, w, 0, 0), FLOWPIC_OK);
    if (g_case_failed) return;
    nn_conv_geom_init(&g1, &L, NN_CONV_BACKWARD);
    nn_conv_geom_init(&g2, &L, NN_CONV_BACKWARD_DX);
    ws.num_threads = 1;
#ifdef _OPENMP
    ws.num_threads = omp_get_max_threads();
#endif
    ws.scratch_len = nn_conv_scratch_len(&g2, NN_CONV_BACKWARD_DX);
    ws.scratch = (float *)xmalloc(ws.scratch_len * (size_t)ws.num_threads * sizeof(float));
    memset(ws.scratch, 0, ws.scratch_len * (size_t)ws.num_threads * sizeof(float));
    ws.wt = (float *)xmalloc((size_t)ic * (size_t)k * (size_t)k * (size_t)g1.ocp * sizeof(float));
    items = (size_t)batch * (size_t)(g1.items > g2.items ? g1.items : g2.items);
    ws.partials = (float *)xmalloc(items * (L.num_weights + L.num_biases) * sizeof(float));
    nin = (size_t)batch * L.in_numel;
    nout = (size_t)batch * L.out_numel;
    nw = L.num_weights;
    x = (float *)xmalloc(nin * sizeof(float));
    wts = (float *)xmalloc(nw * sizeof(float));
    b = (float *)xmalloc((size_t)oc * sizeof(float));
    y_n = (float *)xmalloc(nout * sizeof(float));
    y_b = (float *)xmalloc(nout * sizeof(float));
    dy = (float *)xmalloc(nout * sizeof(float));
    dw_n = (float *)calloc(nw, sizeof(float));
    dw_b = (float *)calloc(nw, sizeof(float));
    dw_b2 = (float *)calloc(nw, sizeof(float));
    db_n = (float *)calloc((size_t)oc, sizeof(float));
    db_b = (float *)calloc((size_t)oc, sizeof(float));
    db_b2 = (float *)calloc((size_t)oc, sizeof(float));
    dx_n = (float *)xmalloc(nin * sizeof(float));
    dx_b = (float *)xmalloc(nin * sizeof(float));
    if (!dw_n || !dw_b || !dw_b2 || !db_n || !db_b || !db_b2) { fprintf(stderr, "out of memory\n"); exit(2); }
    flowpic_rng_seed(&rng, seed);
    if (sparse) {
        for (i = 0; i < (size_t)batch * (size_t)ic; i++) fill_picture(x + i * (size_t)h * (size_t)w, h, w, sparse, &rng);
    } else {
        fill_uniform(x, nin, &rng, -1.0f, 1.0f);
    }
    fill_uniform(wts, nw, &rng, -0.3f, 0.3f);
    fill_uniform(b, (size_t)oc, &rng, -0.5f, 0.5f);
    fill_uniform(dy, nout, &rng, -1.0f, 1.0f);
    /* forward */
    nn_conv_forward_naive(&L, wts, b, x, y_n, batch);
    nn_conv_forward_blocked(&L, &ws, wts, b, x, y_b, batch);
    ref = max_abs(y_n, nout);
    dmax = max_abs_diff(y_b, y_n, nout, &i);
    bitexact = memcmp(y_b, y_n, nout * sizeof(float)) == 0;
    if (!(dmax <= 1e-6 * ref + 1e-30))
        fail_msg(__FILE__, __LINE__, "%s forward: max |diff| %.3e at %zu (max |y| %.3e)", label, dmax, i, ref);
    /* backward */
    nn_conv_backward_naive(&L, wts, dw_n, db_n, x, dy, dx_n, batch);
    nn_conv_backward_blocked(&L, &ws, wts, dw_b, db_b, x, dy, dx_b, batch);
    nn_conv_backward_blocked(&L, &ws, wts, dw_b2, db_b2, x, dy, NULL, batch);
    ref = max_abs(dw_n, nw);
    dmax = max_abs_diff(dw_b, dw_n, nw, &i);
    if (!(dmax <= 2e-5 * ref + 1e-30))
        fail_msg(__FILE__, __LINE__, "%s dW: max |diff| %.3e at %zu (max |dW| %.3e)", label, dmax, i, ref);
    dmax = max_abs_diff(dw_b2, dw_n, nw, &i);
    if (!(dmax <= 2e-5 * ref + 1e-30))
        fail_msg(__FILE__, __LINE__, "%s dW (row blocks): max |diff| %.3e at %zu (max |dW| %.3e)", label, dmax, i, ref);
    ref = max_abs(db_n, (size_t)oc);
    dmax = max_abs_diff(db_b, db_n, (size_t)oc, &i);
    if (!(dmax <= 2e-5 * ref + 1e-30))
        fail_msg(__FILE__, __LINE__, "%s db: max |diff| %.3e at %zu (max |db| %.3e)", label, dmax, i, ref);
    CHECK(max_abs_diff(db_b2, db_n, (size_t)oc, NULL) <= 2e-5 * ref + 1e-30);
    ref = max_abs(dx_n, nin);
    dmax = max_abs_diff(dx_b, dx_n, nin, &i);
    if (!(dmax <= 1e-5 * ref + 1e-30))
        fail_msg(__FILE__, __LINE__, "%s dx: max |diff| %.3e at %zu (max |dx| %.3e)", label, dmax, i, ref);
    if (g_verbose)
        printf("    %-22s fwd %s, dW rel %.1e, dx rel %.1e\n", label, bitexact ? "bit-identical" : "close",
               max_abs_diff(dw_b, dw_n, nw, NULL) / (max_abs(dw_n, nw) + 1e-30),
               max_abs_diff(dx_b, dx_n, nin, NULL) / (max_abs(dx_n, nin) + 1e-30));
    free(x); free(wts); free(b); free(y_n); free(y_b); free(dy);
    free(dw_n); free(dw_b); free(dw_b2); free(db_n); free(db_b); free(db_b2); free(dx_n); free(dx_b);
    free(ws.scratch); free(ws.wt); free(ws.partials);
}

static void test_conv_naive_vs_blocked(void)
{
    conv_compare("mini conv1", 1, 32, 32, 6, 5, 1, 0, 0, 3, 0, 21);
    conv_compare("mini conv2", 6, 14, 14, 16, 5, 1, 0, 0, 3, 0, 22);
    conv_compare("mini64 conv1", 1, 64, 64, 6, 5, 1, 0, 0, 2, 0, 23);
    conv_compare("odd 3x17x23 k3 s2", 3, 17, 23, 5, 3, 2, 1, 2, 2, 0, 24);
    conv_compare("odd k4 s3 pad 0/3", 2, 9, 31, 7, 4, 3, 0, 3, 2, 0, 25);
    conv_compare("stride > kernel", 1, 20, 21, 3, 2, 3, 0, 1, 2, 0, 26);
    conv_compare("1x1 kernel", 4, 7, 5, 9, 1, 1, 0, 0, 2, 0, 27);
    conv_compare("wide 1x40x700 k10 s5", 1, 40, 700, 10, 10, 5, 2, 3, 1, 0, 28);
    conv_compare("full conv2", 10, 150, 150, 20, 10, 5, 2, 3, 2, 0, 29);
    conv_compare("full conv1 (sparse)", 1, 1500, 1500, 10, 10, 5, 2, 3, 1, 3000, 30);
    /* empty rows in some channels only: a row is skipped only when empty in all of them */
    conv_compare("sparse 3 channels", 3, 40, 37, 7, 4, 2, 1, 2, 3, 12, 32);
    conv_compare("sparse stride 1", 2, 30, 30, 6, 5, 1, 0, 0, 2, 6, 33);
}

static void test_conv_full_dense(void)
{
    conv_compare("full conv1 (dense)", 1, 1500, 1500, 10, 10, 5, 2, 3, 1, 0, 31);
}

/* ------------------------------------------------------------------ determinism */

/* The sparse picture of a dense one with integer values. */
static void picture_from_dense(flowpic_picture *pic, const float *x, int res)
{
    size_t i, n = (size_t)res * (size_t)res;
    memset(pic, 0, sizeof *pic);
    pic->res = (uint32_t)res;
    pic->pixels = (flowpic_pixel *)xmalloc(n * sizeof(flowpic_pixel));
    for (i = 0; i < n; i++)
        if (x[i] != 0.0f) {
            pic->pixels[pic->n].index = (uint32_t)i;
            pic->pixels[pic->n++].count = (uint32_t)x[i];
        }
}

/* Two TRAIN-mode steps (forward, loss, backward, Adam), dense or sparse; returns the params
 * and the logits */
static void two_steps(flowpic_arch arch, int res, int m, int B, int sparse, float **params_out, float **logits_out,
                      size_t *np)
{
    flowpic_net net;
    flowpic_workspace ws;
    flowpic_rng rng;
    flowpic_picture *pics = (flowpic_picture *)xmalloc((size_t)B * sizeof *pics);
    float *x;
    int *labels, i, step;
    flowpic_rng_seed(&rng, 99);
    CHECK_EQ(flowpic_net_init(&net, arch, res, m), FLOWPIC_OK);
    CHECK_EQ(flowpic_workspace_init(&ws, &net, B, FLOWPIC_WS_TRAIN | (sparse ? FLOWPIC_WS_SPARSE : 0)), FLOWPIC_OK);
    flowpic_net_init_glorot(&net, &rng);
    x = (float *)xmalloc((size_t)B * (size_t)res * (size_t)res * sizeof(float));
    labels = (int *)xmalloc((size_t)B * sizeof(int));
    for (i = 0; i < B; i++) {
        fill_picture(x + (size_t)i * (size_t)res * (size_t)res, res, res, res == 1500 ? 2000 : 80, &rng);
        picture_from_dense(&pics[i], x + (size_t)i * (size_t)res * (size_t)res, res);
        labels[i] = i % m;
    }
    for (step = 0; step < 2; step++) {
        flowpic_net_zero_grad(&net);
        if (sparse) {
            CHECK_EQ(flowpic_net_forward_sparse(&net, &ws, pics, FLOWPIC_VALUE_RAW, B, FLOWPIC_MODE_TRAIN, &rng), FLOWPIC_OK);
            CHECK_EQ(flowpic_net_loss(&net, &ws, labels, B, NULL), FLOWPIC_OK);
            CHECK_EQ(flowpic_net_backward_sparse(&net, &ws, B), FLOWPIC_OK);
        } else {
            CHECK_EQ(flowpic_net_forward(&net, &ws, x, B, FLOWPIC_MODE_TRAIN, &rng), FLOWPIC_OK);
            CHECK_EQ(flowpic_net_loss(&net, &ws, labels, B, NULL), FLOWPIC_OK);
            CHECK_EQ(flowpic_net_backward(&net, &ws, x, B), FLOWPIC_OK);
        }
        CHECK_EQ(flowpic_adam_step(&net, 1e-3, 0.9, 0.999, 1e-8), FLOWPIC_OK);
    }
    if (sparse) CHECK_EQ(flowpic_net_forward_sparse(&net, &ws, pics, FLOWPIC_VALUE_RAW, B, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_OK);
    else CHECK_EQ(flowpic_net_forward(&net, &ws, x, B, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_OK);
    for (i = 0; i < B; i++) flowpic_picture_free(&pics[i]);
    free(pics);
    *np = net.num_params;
    *params_out = (float *)xmalloc(net.num_params * sizeof(float));
    memcpy(*params_out, net.params, net.num_params * sizeof(float));
    *logits_out = (float *)xmalloc((size_t)B * (size_t)m * sizeof(float));
    memcpy(*logits_out, flowpic_workspace_output(&ws, net.num_layers - 1), (size_t)B * (size_t)m * sizeof(float));
    free(x);
    free(labels);
    flowpic_workspace_free(&ws);
    flowpic_net_free(&net);
}

static void determinism_case(flowpic_arch arch, int res, int m, int B, int sparse)
{
    float *p1, *l1, *p2, *l2;
    size_t n1, n2;
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    two_steps(arch, res, m, B, sparse, &p1, &l1, &n1);
#ifdef _OPENMP
    omp_set_num_threads(sparse ? 3 : 2);   /* sparse: chunks and samples split unevenly */
#endif
    two_steps(arch, res, m, B, sparse, &p2, &l2, &n2);
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    CHECK_EQ(n1, n2);
    CHECK(memcmp(p1, p2, n1 * sizeof(float)) == 0);
    CHECK(memcmp(l1, l2, (size_t)B * (size_t)m * sizeof(float)) == 0);
    free(p1); free(l1); free(p2); free(l2);
}

static void test_threads_bit_identical(void)
{
#ifndef _OPENMP
    printf("     (built without OpenMP: checks run-to-run repeatability only)\n");
#endif
    determinism_case(FLOWPIC_ARCH_MINI, 32, 5, 8, 0);
    determinism_case(FLOWPIC_ARCH_MINI, 64, 3, 5, 0);
    determinism_case(FLOWPIC_ARCH_MINI, 32, 5, 19, 1);
}

static void test_threads_bit_identical_full(void)
{
    determinism_case(FLOWPIC_ARCH_FULL, 1500, 4, 2, 0);
    determinism_case(FLOWPIC_ARCH_FULL, 1500, 4, 21, 1);
}

/* ------------------------------------------------------------------ training */

/* Three separable classes of 32x32 pictures: a band of small packets near the top rows, a
 * band of large packets near the bottom rows, a vertical burst; plus random noise pixels. */
static void synth_picture(float *x, int cls, flowpic_rng *rng)
{
    int i, row = 0, col = 0;
    memset(x, 0, 32 * 32 * sizeof(float));
    if (cls == 0) row = 2 + (int)(flowpic_rng_next(rng) % 4);
    if (cls == 1) row = 26 + (int)(flowpic_rng_next(rng) % 4);
    if (cls == 2) col = 4 + (int)(flowpic_rng_next(rng) % 24);
    for (i = 0; i < 25; i++) {
        int r, c;
        if (cls == 2) { r = (int)(flowpic_rng_next(rng) % 32); c = col + (int)(flowpic_rng_next(rng) % 3) - 1; }
        else { r = row + (int)(flowpic_rng_next(rng) % 3) - 1; c = (int)(flowpic_rng_next(rng) % 32); }
        x[r * 32 + c] += (float)(1 + flowpic_rng_next(rng) % 4);
    }
    for (i = 0; i < 8; i++) x[flowpic_rng_next(rng) % 1024] += 1.0f;
}

static void test_training_separable(void)
{
    enum { NTRAIN = 240, NTEST = 90, B = 16, EPOCHS = 6 };
    flowpic_net net;
    flowpic_workspace ws;
    flowpic_rng rng;
    float *xtr = (float *)xmalloc((size_t)NTRAIN * 1024 * sizeof(float));
    float *xte = (float *)xmalloc((size_t)NTEST * 1024 * sizeof(float));
    float probs[NTEST * 3];
    int ytr[NTRAIN], yte[NTEST], i, e, correct = 0;
    double first = 0.0, last = 0.0, test_loss = 0.0;
    flowpic_rng_seed(&rng, 2024);
    for (i = 0; i < NTRAIN; i++) { ytr[i] = i % 3; synth_picture(xtr + i * 1024, ytr[i], &rng); }
    for (i = 0; i < NTEST; i++) { yte[i] = i % 3; synth_picture(xte + i * 1024, yte[i], &rng); }
    CHECK_EQ(flowpic_net_init(&net, FLOWPIC_ARCH_MINI, 32, 3), FLOWPIC_OK);
    CHECK_EQ(flowpic_workspace_init(&ws, &net, NTEST, FLOWPIC_WS_TRAIN), FLOWPIC_OK);
    flowpic_net_init_glorot(&net, &rng);
    {   /* loss before training, on the test pictures */
        float loss0 = 0.0f;
        CHECK_EQ(flowpic_net_forward(&net, &ws, xte, NTEST, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_OK);
        CHECK_EQ(flowpic_net_loss(&net, &ws, yte, NTEST, &loss0), FLOWPIC_OK);
        first = (double)loss0;
    }
    for (e = 0; e < EPOCHS; e++) {
        double sum = 0.0;
        for (i = 0; i + B <= NTRAIN; i += B) {
            float loss = 0.0f;
            flowpic_net_zero_grad(&net);
            flowpic_net_forward(&net, &ws, xtr + i * 1024, B, FLOWPIC_MODE_TRAIN, &rng);
            flowpic_net_loss(&net, &ws, ytr + i, B, &loss);
            flowpic_net_backward(&net, &ws, xtr + i * 1024, B);
            flowpic_adam_step(&net, 2e-3, 0.9, 0.999, 1e-8);
            sum += (double)loss;
        }
        sum /= NTRAIN / B;
        last = sum;
        if (g_verbose) printf("    epoch %d: mean train loss %.4f\n", e, sum);
    }
    CHECK_EQ(flowpic_net_predict(&net, &ws, xte, NTEST, probs), FLOWPIC_OK);
    for (i = 0; i < NTEST; i++) {
        int k, best = 0;
        for (k = 1; k < 3; k++) if (probs[i * 3 + k] > probs[i * 3 + best]) best = k;
        correct += best == yte[i];
        test_loss -= log((double)probs[i * 3 + yte[i]] + 1e-30);
    }
    test_loss /= NTEST;
    printf("     loss before training %.3f; mean train loss of epoch %d %.4f; test loss %.4f, accuracy %d/%d\n", first,
           EPOCHS, last, test_loss, correct, NTEST);
    CHECK(first > 0.8);
    CHECK(last < 0.1 * first);
    CHECK(test_loss < 0.1 * first);
    CHECK(correct >= NTEST * 95 / 100);
    free(xtr);
    free(xte);
    flowpic_workspace_free(&ws);
    flowpic_net_free(&net);
}

/* ------------------------------------------------------------------ model files */

static unsigned char *save_model(const flowpic_net *net, const char *const *names, const void *cfg, size_t cfg_len,
                                 unsigned flags, size_t *len)
{
    unsigned char *buf;
    CHECK_EQ(flowpic_model_save_mem(net, names, cfg, cfg_len, flags, NULL, 0, len), FLOWPIC_OK);
    buf = (unsigned char *)xmalloc(*len);
    CHECK_EQ(flowpic_model_save_mem(net, names, cfg, cfg_len, flags, buf, *len, len), FLOWPIC_OK);
    return buf;
}

static void roundtrip_case(flowpic_arch arch, int res, int m, unsigned flags)
{
    static const char *const names[] = {"video", "voip", "conferencing", "chat", "file", "browsing"};
    static const char cfg[] = "preset=paper;res=1500;transform=raw";
    flowpic_net net, back;
    flowpic_model_meta meta;
    flowpic_error err;
    flowpic_workspace ws;
    flowpic_rng rng;
    unsigned char *buf;
    size_t len, len2;
    float *x, *p1, *p2;
    int i, B = 2;
    flowpic_rng_seed(&rng, 5);
    CHECK_EQ(flowpic_net_init(&net, arch, res, m), FLOWPIC_OK);
    flowpic_net_init_glorot(&net, &rng);
    fill_uniform(net.grads, net.num_params, &rng, -1.0f, 1.0f);
    CHECK_EQ(flowpic_adam_step(&net, 1e-3, 0.9, 0.999, 1e-8), FLOWPIC_OK);   /* non-trivial Adam state */
    buf = save_model(&net, names, cfg, sizeof cfg, flags, &len);
    CHECK_EQ(len % 4, 0);
    CHECK_EQ(flowpic_model_save_mem(&net, names, cfg, sizeof cfg, flags, buf, len - 1, &len2), FLOWPIC_ERR_LIMIT);
    CHECK_EQ(flowpic_model_load_mem(&back, &meta, buf, len, &err), FLOWPIC_OK);
    if (g_case_failed) { printf("  reason: %s at %llu\n", err.reason, (unsigned long long)err.offset); return; }
    CHECK_EQ(back.arch, arch);
    CHECK_EQ(back.res, res);
    CHECK_EQ(back.num_classes, m);
    CHECK_EQ(back.layout_id, net.layout_id);
    CHECK(memcmp(back.params, net.params, net.num_params * sizeof(float)) == 0);
    if (flags & FLOWPIC_MODEL_WITH_ADAM) {
        CHECK_EQ(back.adam_t, 1);
        CHECK(memcmp(back.adam_m, net.adam_m, net.num_params * sizeof(float)) == 0);
        CHECK(memcmp(back.adam_v, net.adam_v, net.num_params * sizeof(float)) == 0);
    } else {
        CHECK_EQ(back.adam_t, 0);
        CHECK(max_abs(back.adam_m, back.num_params) == 0.0 && max_abs(back.adam_v, back.num_params) == 0.0);
    }
    CHECK_EQ(meta.num_classes, m);
    for (i = 0; i < m; i++) CHECK(strcmp(meta.class_names[i], names[i]) == 0);
    CHECK(meta.class_names[m] == NULL);
    CHECK_EQ(meta.config_len, sizeof cfg);
    CHECK(memcmp(meta.config, cfg, sizeof cfg) == 0);
    /* the loaded net predicts exactly what the saved one did (one workspace serves both) */
    x = (float *)xmalloc((size_t)B * (size_t)res * (size_t)res * sizeof(float));
    p1 = (float *)xmalloc((size_t)B * (size_t)m * sizeof(float));
    p2 = (float *)xmalloc((size_t)B * (size_t)m * sizeof(float));
    for (i = 0; i < B; i++) fill_picture(x + (size_t)i * (size_t)res * (size_t)res, res, res, 3 * res, &rng);
    CHECK_EQ(flowpic_workspace_init(&ws, &net, B, 0), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_predict(&net, &ws, x, B, p1), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_predict(&back, &ws, x, B, p2), FLOWPIC_OK);
    CHECK(memcmp(p1, p2, (size_t)B * (size_t)m * sizeof(float)) == 0);
    flowpic_workspace_free(&ws);
    free(x); free(p1); free(p2); free(buf);
    flowpic_model_meta_free(&meta);
    flowpic_model_meta_free(&meta);
    flowpic_net_free(&back);
    flowpic_net_free(&net);
}

static void test_model_roundtrip(void)
{
    roundtrip_case(FLOWPIC_ARCH_MINI, 32, 3, 0);
    roundtrip_case(FLOWPIC_ARCH_MINI, 64, 6, FLOWPIC_MODEL_WITH_ADAM);
    roundtrip_case(FLOWPIC_ARCH_FULL, 1500, 5, FLOWPIC_MODEL_WITH_ADAM);
    {   /* custom table, no config, meta not wanted */
        flowpic_layer_desc d[4];
        static const char *const names[] = {"a", "b"};
        flowpic_net net, back;
        flowpic_error err;
        unsigned char *buf;
        size_t len;
        d[0] = nn_desc(FLOWPIC_LAYER_CONV, 2, 3, 2, 1, 1, 0.0f);
        d[1] = nn_desc(FLOWPIC_LAYER_RELU, 0, 0, 0, 0, 0, 0.0f);
        d[2] = nn_desc(FLOWPIC_LAYER_DROPOUT, 0, 0, 0, 0, 0, 0.125f);
        d[3] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
        CHECK_EQ(flowpic_net_init_layers(&net, d, 4, 1, 7, 9, 2), FLOWPIC_OK);
        buf = save_model(&net, names, NULL, 0, 0, &len);
        CHECK_EQ(flowpic_model_load_mem(&back, NULL, buf, len, &err), FLOWPIC_OK);
        CHECK_EQ(back.arch, FLOWPIC_ARCH_CUSTOM);
        CHECK_EQ(back.in_w, 9);
        CHECK(back.layers[2].dropout_p == 0.125f);
        CHECK_EQ(back.layout_id, net.layout_id);
        free(buf);
        flowpic_net_free(&back);
        flowpic_net_free(&net);
    }
}

/* A small model and a copy that tests damage one field at a time (CRC recomputed). */
typedef struct model_fixture { flowpic_net net; unsigned char *good, *bad; size_t len, names_off, params_off; } model_fixture;

static void fixture_init(model_fixture *fx)
{
    static const char *const names[] = {"ab", "c"};
    flowpic_layer_desc d[3];
    flowpic_rng rng;
    d[0] = nn_desc(FLOWPIC_LAYER_CONV, 2, 3, 1, 0, 0, 0.0f);
    d[1] = nn_desc(FLOWPIC_LAYER_MAXPOOL, 0, 2, 2, 0, 0, 0.0f);
    d[2] = nn_desc(FLOWPIC_LAYER_DENSE, 0, 0, 0, 0, 0, 0.0f);
    flowpic_rng_seed(&rng, 8);
    CHECK_EQ(flowpic_net_init_layers(&fx->net, d, 3, 1, 6, 6, 2), FLOWPIC_OK);
    flowpic_net_init_glorot(&fx->net, &rng);
    fx->good = save_model(&fx->net, names, "cfg", 3, 0, &fx->len);
    fx->bad = (unsigned char *)xmalloc(fx->len);
    fx->names_off = 48 + 3 * 20 + 8;
    fx->params_off = (fx->names_off + 2 + 2 + 2 + 1 + 4 + 3 + 3) / 4 * 4;
    CHECK_EQ(fx->len, fx->params_off + 4 * fx->net.num_params + 4);
}

static void fix_crc(unsigned char *b, size_t len) { nn_put_u32(b + len - 4, flowpic_crc32(0, b, len - 4)); }

/* loads fx->bad (len bytes) and checks the code, the offset and a word of the reason */
static void expect_reject(model_fixture *fx, size_t len, flowpic_result code, uint64_t offset, const char *word, int line)
{
    flowpic_net net;
    flowpic_model_meta meta;
    flowpic_error err;
    flowpic_result r = flowpic_model_load_mem(&net, &meta, fx->bad, len, &err);
    if (r != code || err.code != code || err.offset != offset || !strstr(err.reason, word))
        fail_msg(__FILE__, line, "expected code %d at offset %llu with '%s'; got code %d at offset %llu: %s", (int)code,
                 (unsigned long long)offset, word, (int)r, (unsigned long long)err.offset, err.reason);
    else if (g_verbose)
        printf("    rejected at %llu: %s\n", (unsigned long long)err.offset, err.reason);
    CHECK(net.params == NULL && meta.block == NULL);
}

#define REJECT(edit, code, off, word) do { memcpy(fx.bad, fx.good, fx.len); edit; fix_crc(fx.bad, fx.len); \
        expect_reject(&fx, fx.len, code, off, word, __LINE__); } while (0)

static void test_model_rejects(void)
{
    model_fixture fx;
    flowpic_net net;
    flowpic_error err;
    size_t i, cut, lay = 48, L1 = 48 + 20, L2 = 48 + 40;
    float nan_value;
    uint32_t u;
    memset(&fx, 0, sizeof fx);
    fixture_init(&fx);
    if (g_case_failed) return;
    /* every truncation and every single flipped byte is rejected */
    for (cut = 0; cut < fx.len; cut++)
        if (flowpic_model_load_mem(&net, NULL, fx.good, cut, &err) != FLOWPIC_ERR_FORMAT) {
            fail_msg(__FILE__, __LINE__, "prefix of %zu bytes accepted or wrong code", cut);
            break;
        }
    for (i = 0; i < fx.len; i++) {
        memcpy(fx.bad, fx.good, fx.len);
        fx.bad[i] ^= 0x5A;
        if (flowpic_model_load_mem(&net, NULL, fx.bad, fx.len, &err) == FLOWPIC_OK) {
            fail_msg(__FILE__, __LINE__, "byte %zu flipped but accepted", i);
            flowpic_net_free(&net);
            break;
        }
    }
    memcpy(fx.bad, fx.good, fx.len);
    fx.bad[fx.len - 1] ^= 1;
    expect_reject(&fx, fx.len, FLOWPIC_ERR_FORMAT, fx.len - 4, "CRC", __LINE__);
    memcpy(fx.bad, fx.good, fx.len);
    expect_reject(&fx, (size_t)FLOWPIC_MAX_MODEL_BYTES + 1, FLOWPIC_ERR_MODEL_LIMIT, 0, "FLOWPIC_MAX_MODEL_BYTES", __LINE__);
    /* each field, CRC made valid again so the field check itself is exercised */
    REJECT(fx.bad[0] = 'X', FLOWPIC_ERR_FORMAT, 0, "magic");
    REJECT(nn_put_u32(fx.bad + 8, 2), FLOWPIC_ERR_FORMAT, 8, "version");
    REJECT(nn_put_u32(fx.bad + 12, 6), FLOWPIC_ERR_FORMAT, 12, "flags");
    REJECT(nn_put_u64(fx.bad + 16, fx.len + 4), FLOWPIC_ERR_FORMAT, 16, "length");
    REJECT(nn_put_u32(fx.bad + 24, 3), FLOWPIC_ERR_FORMAT, 24, "arch");
    REJECT(nn_put_u32(fx.bad + 24, FLOWPIC_ARCH_MINI), FLOWPIC_ERR_FORMAT, 24, "does not match");
    REJECT(nn_put_u32(fx.bad + 28, 0), FLOWPIC_ERR_FORMAT, 28, "input channels");
    REJECT(nn_put_u32(fx.bad + 32, FLOWPIC_NN_MAX_DIM + 1), FLOWPIC_ERR_LIMIT, 32, "input height");
    REJECT(nn_put_u32(fx.bad + 36, 2), FLOWPIC_ERR_FORMAT, lay, "layer table");          /* kernel 3 > width 2 */
    REJECT(nn_put_u32(fx.bad + 40, 1), FLOWPIC_ERR_FORMAT, 40, "class count");
    REJECT(nn_put_u32(fx.bad + 40, FLOWPIC_NN_MAX_CLASSES + 1), FLOWPIC_ERR_LIMIT, 40, "class count");
    REJECT(nn_put_u32(fx.bad + 40, 3), FLOWPIC_ERR_FORMAT, L2, "layer table");           /* last dense has 2 */
    REJECT(nn_put_u32(fx.bad + 44, 0), FLOWPIC_ERR_FORMAT, 44, "layer count");
    REJECT(nn_put_u32(fx.bad + 44, FLOWPIC_NN_MAX_LAYERS + 1), FLOWPIC_ERR_LIMIT, 44, "layer count");
    REJECT(nn_put_u32(fx.bad + 44, 2), FLOWPIC_ERR_FORMAT, L1, "layer table");           /* pool as last */
    REJECT(fx.bad[lay] = 9, FLOWPIC_ERR_FORMAT, lay, "kind");
    REJECT(fx.bad[lay + 1] = 1, FLOWPIC_ERR_FORMAT, lay, "reserved");
    REJECT(nn_put_u16(fx.bad + lay + 10, 1), FLOWPIC_ERR_FORMAT, lay, "reserved");
    REJECT(nn_put_u32(fx.bad + lay + 12, FLOWPIC_NN_MAX_CHANNELS + 1), FLOWPIC_ERR_LIMIT, lay + 12, "layer size");
    REJECT(nn_put_u32(fx.bad + lay + 12, 3), FLOWPIC_ERR_FORMAT, fx.names_off - 8, "parameter count");
    REJECT(nn_put_f32(fx.bad + L1 + 16, 0.5f), FLOWPIC_ERR_FORMAT, L1, "layer table");   /* p on a pool */
    REJECT(nn_put_f32(fx.bad + lay + 16, 1.0f), FLOWPIC_ERR_FORMAT, lay + 16, "dropout");
    REJECT(nn_put_u16(fx.bad + lay + 2, 7), FLOWPIC_ERR_FORMAT, lay, "layer table");     /* kernel 7 > 6 */
    REJECT(nn_put_u16(fx.bad + lay + 6, 3), FLOWPIC_ERR_LIMIT, lay, "layer table");      /* pad >= kernel */
    REJECT(nn_put_u64(fx.bad + fx.names_off - 8, 1), FLOWPIC_ERR_FORMAT, fx.names_off - 8, "parameter count");
    REJECT(nn_put_u16(fx.bad + fx.names_off, 0), FLOWPIC_ERR_FORMAT, fx.names_off, "empty class name");
    REJECT(nn_put_u16(fx.bad + fx.names_off, 300), FLOWPIC_ERR_LIMIT, fx.names_off, "class name length");
    REJECT(nn_put_u16(fx.bad + fx.names_off, 60000), FLOWPIC_ERR_LIMIT, fx.names_off, "class name length");
    REJECT(nn_put_u16(fx.bad + fx.names_off, 200), FLOWPIC_ERR_FORMAT, fx.names_off, "truncated class name");
    REJECT(fx.bad[fx.names_off + 3] = 0, FLOWPIC_ERR_FORMAT, fx.names_off + 2, "NUL");
    REJECT(nn_put_u32(fx.bad + fx.names_off + 7, FLOWPIC_MODEL_MAX_CONFIG + 1), FLOWPIC_ERR_LIMIT, fx.names_off + 7,
           "config length");
    REJECT(nn_put_u32(fx.bad + fx.names_off + 7, 1000), FLOWPIC_ERR_FORMAT, fx.names_off + 7, "truncated config");
    REJECT(nn_put_u32(fx.bad + fx.names_off + 7, 6), FLOWPIC_ERR_FORMAT, fx.names_off + 11 + 6, "padding");
    REJECT(fx.bad[fx.params_off - 1] = 7, FLOWPIC_ERR_FORMAT, fx.params_off - 1, "padding");
    u = 0x7FC00000u;
    memcpy(&nan_value, &u, 4);
    REJECT(nn_put_f32(fx.bad + fx.params_off + 8, nan_value), FLOWPIC_ERR_FORMAT, fx.params_off + 8, "not finite");
    REJECT(nn_put_f32(fx.bad + fx.params_off + 12, (float)HUGE_VAL), FLOWPIC_ERR_FORMAT, fx.params_off + 12, "not finite");
    REJECT(nn_put_u32(fx.bad + 12, FLOWPIC_MODEL_WITH_ADAM), FLOWPIC_ERR_FORMAT, fx.params_off, "parameter section");
    /* the intact model still loads */
    memcpy(fx.bad, fx.good, fx.len);
    CHECK_EQ(flowpic_model_load_mem(&net, NULL, fx.bad, fx.len, &err), FLOWPIC_OK);
    flowpic_net_free(&net);
    CHECK_EQ(flowpic_model_load_mem(NULL, NULL, fx.bad, fx.len, &err), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_model_load_mem(&net, NULL, NULL, fx.len, NULL), FLOWPIC_ERR_ARG);
    {   /* save arguments */
        static const char *const ok_names[] = {"x", "y"}, *const empty[] = {"x", ""};
        const char *const null_name[] = {"x", NULL};
        char long_name[FLOWPIC_MODEL_MAX_NAME + 2];
        const char *const long_names[] = {"x", long_name};
        size_t len;
        memset(long_name, 'n', sizeof long_name - 1);
        long_name[sizeof long_name - 1] = '\0';
        CHECK_EQ(flowpic_model_save_mem(&fx.net, NULL, NULL, 0, 0, NULL, 0, &len), FLOWPIC_ERR_ARG);
        CHECK_EQ(flowpic_model_save_mem(&fx.net, empty, NULL, 0, 0, NULL, 0, &len), FLOWPIC_ERR_ARG);
        CHECK_EQ(flowpic_model_save_mem(&fx.net, null_name, NULL, 0, 0, NULL, 0, &len), FLOWPIC_ERR_ARG);
        CHECK_EQ(flowpic_model_save_mem(&fx.net, long_names, NULL, 0, 0, NULL, 0, &len), FLOWPIC_ERR_ARG);
        CHECK_EQ(flowpic_model_save_mem(&fx.net, ok_names, NULL, 5, 0, NULL, 0, &len), FLOWPIC_ERR_ARG);
        CHECK_EQ(flowpic_model_save_mem(&fx.net, ok_names, "c", (size_t)FLOWPIC_MODEL_MAX_CONFIG + 1, 0, NULL, 0, &len),
                 FLOWPIC_ERR_ARG);
        CHECK_EQ(flowpic_model_save_mem(&fx.net, ok_names, NULL, 0, 2u, NULL, 0, &len), FLOWPIC_ERR_ARG);
        CHECK_EQ(flowpic_model_save_mem(&fx.net, ok_names, NULL, 0, 0, NULL, 0, &len), FLOWPIC_OK);
    }
    free(fx.good);
    free(fx.bad);
    flowpic_net_free(&fx.net);
}
#undef REJECT

/* ------------------------------------------------------------------ sparse vs dense */

/* A picture from (row, column, count) triples given in any order (duplicates add up). */
static void picture_from_triples(flowpic_picture *pic, uint32_t res, const uint32_t *rc, const uint32_t *count, size_t n)
{
    float *dense = (float *)xmalloc((size_t)res * res * sizeof(float));
    size_t i, k = 0;
    memset(dense, 0, (size_t)res * res * sizeof(float));
    for (i = 0; i < n; i++) dense[rc[i]] += (float)count[i];
    memset(pic, 0, sizeof *pic);
    pic->res = res;
    for (i = 0; i < (size_t)res * res; i++) k += dense[i] != 0.0f;
    pic->pixels = (flowpic_pixel *)xmalloc((k ? k : 1) * sizeof(flowpic_pixel));
    pic->cap = k;
    for (i = 0; i < (size_t)res * res; i++)
        if (dense[i] != 0.0f) {
            pic->pixels[pic->n].index = (uint32_t)i;
            pic->pixels[pic->n].count = (uint32_t)dense[i];
            pic->packets += (uint32_t)dense[i];
            pic->n++;
        }
    free(dense);
}

/* Kinds of test pictures */
enum { PIC_EMPTY, PIC_RANDOM, PIC_BORDERS, PIC_FULL, PIC_ROWS };

static void make_picture(flowpic_picture *pic, uint32_t res, int kind, int nonzero, flowpic_rng *rng)
{
    size_t n = kind == PIC_FULL ? (size_t)res * res : kind == PIC_BORDERS ? 9 : (size_t)nonzero, i;
    uint32_t *rc = (uint32_t *)xmalloc((n ? n : 1) * sizeof(uint32_t)), *cnt = (uint32_t *)xmalloc((n ? n : 1) * sizeof(uint32_t));
    const uint32_t last = res - 1, mid = res / 2;
    const uint32_t border[9][2] = {{0, 0}, {0, last}, {last, 0}, {last, last}, {0, mid}, {mid, 0},
                                   {last, mid}, {mid, last}, {mid, mid}};
    if (kind == PIC_EMPTY) n = 0;
    for (i = 0; i < n; i++) {
        uint32_t r, c;
        if (kind == PIC_FULL) { r = (uint32_t)(i / res); c = (uint32_t)(i % res); }
        else if (kind == PIC_BORDERS) { r = border[i][0]; c = border[i][1]; }
        else if (kind == PIC_ROWS) { r = (uint32_t)(flowpic_rng_next(rng) % 3) * (res / 3); c = (uint32_t)(flowpic_rng_next(rng) % res); }
        else { r = (uint32_t)(flowpic_rng_next(rng) % res); c = (uint32_t)(flowpic_rng_next(rng) % res); }
        rc[i] = r * res + c;
        cnt[i] = 1 + (uint32_t)(flowpic_rng_next(rng) % 9);
    }
    picture_from_triples(pic, res, rc, cnt, n);
    free(rc);
    free(cnt);
}

/* |a - b| <= 1e-6 + rtol * max|b| over a tensor, with the worst element printed on failure */
static int sparse_close(const char *what, const float *a, const float *b, size_t n, double rtol)
{
    size_t where;
    const double d = max_abs_diff(a, b, n, &where), tol = 1e-6 + rtol * max_abs(b, n);
    if (d <= tol) return 1;
    fail_msg(__FILE__, __LINE__, "%s: sparse %.9g vs dense %.9g at %zu, |diff| %.3g > %.3g", what,
             (double)a[where], (double)b[where], where, d, tol);
    return 0;
}

/* Parameters after one Adam step from the same state with gradients equal to float rounding.
 * Adam divides each gradient by its running RMS, so a gradient at rounding-noise level (a true
 * zero, or a cancellation such as the sparse path's background terms) moves its parameter by
 * up to lr either way: at most 1 in 100 parameters may differ by more than 1e-6 + 1e-4 |p|,
 * none by more than 2 lr. (A wrong gradient moves most of its tensor's parameters.) */
static int adam_close(const char *what, const float *a, const float *b, size_t n, double lr)
{
    size_t i, off = 0, worst = 0;
    double dmax = 0.0;
    for (i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        if (d > 1e-6 + 1e-4 * fabs((double)b[i])) off++;
        if (d > dmax || d != d) { dmax = d; worst = i; }
    }
    if (off * 100 <= n && dmax <= 2 * lr) return 1;
    fail_msg(__FILE__, __LINE__, "%s: %zu of %zu parameters differ; worst %.9g vs %.9g at %zu", what, off, n,
             (double)a[worst], (double)b[worst], worst);
    return 0;
}

/* Trains two copies of a net for `steps` Adam steps on pics[0 .. B), one dense and one sparse
 * (FLOWPIC_WS_SPARSE workspace), same dropout masks, the sparse one reset to the dense one's
 * parameters before each step; compares at each step every output from conv2 on, the loss,
 * every gradient and the parameters after Adam; at the end the eval-mode probabilities. Biases start random
 * (both signs: background on and off). */
static void sparse_vs_dense(const char *label, const flowpic_layer_desc *desc, int nd, int res, int m,
                            const flowpic_picture *pics, int B, flowpic_transform tr, int steps)
{
    flowpic_net nd_net, sp_net;
    flowpic_workspace dws, sws;
    flowpic_rng init, rng_d, rng_s;
    float *x = (float *)xmalloc((size_t)B * (size_t)res * (size_t)res * sizeof(float));
    float *pd = (float *)xmalloc((size_t)B * (size_t)m * sizeof(float)), *ps = (float *)xmalloc((size_t)B * (size_t)m * sizeof(float));
    int *labels = (int *)xmalloc((size_t)B * sizeof(int)), i, l, step, ok = 1;
    char what[128];
    printf("     %s\n", label);
    flowpic_rng_seed(&init, 5);
    flowpic_rng_seed(&rng_d, 77);
    flowpic_rng_seed(&rng_s, 77);
    CHECK_EQ(flowpic_net_init_layers(&nd_net, desc, nd, 1, res, res, m), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_init_layers(&sp_net, desc, nd, 1, res, res, m), FLOWPIC_OK);
    CHECK(flowpic_net_sparse_ok(&sp_net));
    flowpic_net_init_glorot(&nd_net, &init);
    for (l = 0; l < nd_net.num_layers; l++)
        if (nd_net.layers[l].num_biases)
            fill_uniform(nd_net.params + nd_net.layers[l].bias_offset, nd_net.layers[l].num_biases, &init, -0.2f, 0.2f);
    memcpy(sp_net.params, nd_net.params, nd_net.num_params * sizeof(float));
    CHECK_EQ(flowpic_workspace_init(&dws, &nd_net, B, FLOWPIC_WS_TRAIN), FLOWPIC_OK);
    CHECK_EQ(flowpic_workspace_init(&sws, &sp_net, B, FLOWPIC_WS_TRAIN | FLOWPIC_WS_SPARSE), FLOWPIC_OK);
    for (i = 0; i < B; i++) {
        flowpic_picture_render(&pics[i], tr, x + (size_t)i * (size_t)res * (size_t)res);
        labels[i] = i % m;
    }
    for (step = 0; step < steps && ok; step++) {
        float loss_d, loss_s;
        /* the same parameters and Adam state for both at every step (see adam_close) */
        memcpy(sp_net.params, nd_net.params, 4 * nd_net.num_params * sizeof(float));
        sp_net.adam_t = nd_net.adam_t;
        flowpic_net_zero_grad(&nd_net);
        flowpic_net_zero_grad(&sp_net);
        CHECK_EQ(flowpic_net_forward(&nd_net, &dws, x, B, FLOWPIC_MODE_TRAIN, &rng_d), FLOWPIC_OK);
        CHECK_EQ(flowpic_net_forward_sparse(&sp_net, &sws, pics, tr, B, FLOWPIC_MODE_TRAIN, &rng_s), FLOWPIC_OK);
        for (l = 3; l < nd_net.num_layers && ok; l++) {
            snprintf(what, sizeof what, "step %d output of %s", step, nd_net.layers[l].name);
            ok = sparse_close(what, flowpic_workspace_output(&sws, l), flowpic_workspace_output(&dws, l),
                              nd_net.layers[l].out_numel * (size_t)B, 1e-5);
        }
        CHECK_EQ(flowpic_net_loss(&nd_net, &dws, labels, B, &loss_d), FLOWPIC_OK);
        CHECK_EQ(flowpic_net_loss(&sp_net, &sws, labels, B, &loss_s), FLOWPIC_OK);
        CHECK_NEAR(loss_s, loss_d, 1e-5 * (1.0 + fabs((double)loss_d)));
        CHECK_EQ(flowpic_net_backward(&nd_net, &dws, x, B), FLOWPIC_OK);
        CHECK_EQ(flowpic_net_backward_sparse(&sp_net, &sws, B), FLOWPIC_OK);
        for (l = 0; l < nd_net.num_layers && ok; l++) {
            const flowpic_layer *L = &nd_net.layers[l];
            if (!L->num_weights) continue;
            snprintf(what, sizeof what, "step %d weight gradient of %s", step, L->name);
            ok = sparse_close(what, sp_net.grads + L->weight_offset, nd_net.grads + L->weight_offset, L->num_weights, 1e-4);
            snprintf(what, sizeof what, "step %d bias gradient of %s", step, L->name);
            ok = ok && sparse_close(what, sp_net.grads + L->bias_offset, nd_net.grads + L->bias_offset, L->num_biases, 1e-4);
        }
        CHECK_EQ(flowpic_adam_step(&nd_net, 1e-3, 0.9, 0.999, 1e-8), FLOWPIC_OK);
        CHECK_EQ(flowpic_adam_step(&sp_net, 1e-3, 0.9, 0.999, 1e-8), FLOWPIC_OK);
        snprintf(what, sizeof what, "step %d parameters after Adam", step);
        ok = ok && adam_close(what, sp_net.params, nd_net.params, nd_net.num_params, 1e-3);
    }
    CHECK(ok);
    flowpic_workspace_free(&dws);
    CHECK_EQ(flowpic_workspace_init(&dws, &nd_net, B, 0), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_predict(&nd_net, &dws, x, B, pd), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_predict_sparse(&sp_net, &sws, pics, tr, B, ps), FLOWPIC_OK);
    CHECK(sparse_close("eval probabilities", ps, pd, (size_t)B * (size_t)m, 1e-5));
    flowpic_workspace_free(&dws);
    flowpic_workspace_free(&sws);
    flowpic_net_free(&nd_net);
    flowpic_net_free(&sp_net);
    free(x); free(pd); free(ps); free(labels);
}

static void free_pictures(flowpic_picture *pics, int n)
{
    int i;
    for (i = 0; i < n; i++) flowpic_picture_free(&pics[i]);
}

/* The sparse entry points refuse what they cannot do, each with FLOWPIC_ERR_ARG. */
static void test_sparse_api_errors(void)
{
    flowpic_layer_desc desc[FLOWPIC_NN_MAX_LAYERS];
    flowpic_net net, other;
    flowpic_workspace ws, dws;
    flowpic_picture pics[2];
    flowpic_rng rng;
    float x[32 * 32];
    int labels[2] = {0, 1}, nd;
    flowpic_rng_seed(&rng, 3);
    CHECK_EQ(flowpic_net_init(&net, FLOWPIC_ARCH_MINI, 32, 2), FLOWPIC_OK);
    flowpic_net_init_glorot(&net, &rng);
    CHECK(flowpic_net_sparse_ok(&net));
    CHECK(!flowpic_net_sparse_ok(NULL));
    /* no ReLU between conv1 and the pool: not the sparse path's shape */
    nd = flowpic_net_preset(FLOWPIC_ARCH_MINI, 32, desc);
    memmove(&desc[1], &desc[2], (size_t)(nd - 2) * sizeof desc[0]);
    CHECK_EQ(flowpic_net_init_layers(&other, desc, nd - 1, 1, 32, 32, 2), FLOWPIC_OK);
    CHECK(!flowpic_net_sparse_ok(&other));
    CHECK_EQ(flowpic_workspace_init(&ws, &other, 2, FLOWPIC_WS_SPARSE), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_workspace_init(&ws, &other, 2, 0), FLOWPIC_OK);
    make_picture(&pics[0], 32, PIC_RANDOM, 10, &rng);
    make_picture(&pics[1], 32, PIC_RANDOM, 10, &rng);
    CHECK_EQ(flowpic_net_forward_sparse(&other, &ws, pics, FLOWPIC_VALUE_RAW, 2, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_ERR_ARG);
    flowpic_workspace_free(&ws);
    flowpic_net_free(&other);

    CHECK_EQ(flowpic_workspace_init(&ws, &net, 2, FLOWPIC_WS_TRAIN | FLOWPIC_WS_SPARSE), FLOWPIC_OK);
    CHECK(flowpic_workspace_output(&ws, 0) == NULL);      /* not kept: conv1, relu1, pool1 */
    CHECK(flowpic_workspace_output(&ws, 2) == NULL);
    CHECK(flowpic_workspace_output(&ws, 3) != NULL);
    memset(x, 0, sizeof x);
    CHECK_EQ(flowpic_net_forward(&net, &ws, x, 1, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_ERR_ARG);   /* dense on sparse-only */
    CHECK_EQ(flowpic_net_forward_sparse(&net, &ws, NULL, FLOWPIC_VALUE_RAW, 2, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_forward_sparse(&net, &ws, pics, FLOWPIC_VALUE_COUNT, 2, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_forward_sparse(&net, &ws, pics, FLOWPIC_VALUE_RAW, 3, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_forward_sparse(&net, &ws, pics, FLOWPIC_VALUE_RAW, 2, FLOWPIC_MODE_TRAIN, NULL), FLOWPIC_ERR_ARG);
    pics[1].res = 64;                                      /* not the net's input */
    CHECK_EQ(flowpic_net_forward_sparse(&net, &ws, pics, FLOWPIC_VALUE_RAW, 2, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_ERR_ARG);
    pics[1].res = 32;
    pics[1].pixels[1].index = pics[1].pixels[0].index;     /* not sorted */
    CHECK_EQ(flowpic_net_forward_sparse(&net, &ws, pics, FLOWPIC_VALUE_RAW, 2, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_ERR_ARG);
    pics[1].pixels[1].index = 32 * 32;                     /* outside */
    pics[1].n = 2;
    CHECK_EQ(flowpic_net_forward_sparse(&net, &ws, pics, FLOWPIC_VALUE_RAW, 2, FLOWPIC_MODE_EVAL, NULL), FLOWPIC_ERR_ARG);
    flowpic_picture_free(&pics[1]);
    make_picture(&pics[1], 32, PIC_RANDOM, 10, &rng);
    /* backward: only after a sparse forward and its loss */
    CHECK_EQ(flowpic_net_backward_sparse(&net, &ws, 2), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_forward_sparse(&net, &ws, pics, FLOWPIC_VALUE_RAW, 2, FLOWPIC_MODE_TRAIN, &rng), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_backward_sparse(&net, &ws, 2), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_loss(&net, &ws, labels, 2, NULL), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_backward_sparse(&net, &ws, 1), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_backward(&net, &ws, x, 2), FLOWPIC_ERR_ARG);       /* the last forward was sparse */
    CHECK_EQ(flowpic_net_backward_sparse(&net, &ws, 2), FLOWPIC_OK);
    /* and the dense backward after a dense forward only */
    CHECK_EQ(flowpic_workspace_init(&dws, &net, 1, FLOWPIC_WS_TRAIN), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_forward(&net, &dws, x, 1, FLOWPIC_MODE_TRAIN, &rng), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_loss(&net, &dws, labels, 1, NULL), FLOWPIC_OK);
    CHECK_EQ(flowpic_net_backward_sparse(&net, &dws, 1), FLOWPIC_ERR_ARG);
    CHECK_EQ(flowpic_net_backward(&net, &dws, x, 1), FLOWPIC_OK);
    flowpic_workspace_free(&dws);
    flowpic_workspace_free(&ws);
    free_pictures(pics, 2);
    flowpic_net_free(&net);
}

/* The mini preset at 32 and 64, a custom net with another geometry (kernel not a multiple of
 * the stride, padding on both sides, pool 3, conv2 with stride 2), each on empty, border,
 * random, row-band and full-density pictures. */
static void test_sparse_vs_dense_small(void)
{
    flowpic_layer_desc desc[FLOWPIC_NN_MAX_LAYERS];
    flowpic_picture pics[6];
    flowpic_rng rng;
    int nd, res, k;
    flowpic_rng_seed(&rng, 31);
    for (res = 32; res <= 64; res += 32) {
        char label[64];
        nd = flowpic_net_preset(FLOWPIC_ARCH_MINI, res, desc);
        make_picture(&pics[0], (uint32_t)res, PIC_EMPTY, 0, &rng);
        make_picture(&pics[1], (uint32_t)res, PIC_BORDERS, 0, &rng);
        make_picture(&pics[2], (uint32_t)res, PIC_RANDOM, 20, &rng);
        make_picture(&pics[3], (uint32_t)res, PIC_ROWS, 60, &rng);
        make_picture(&pics[4], (uint32_t)res, PIC_FULL, 0, &rng);
        make_picture(&pics[5], (uint32_t)res, PIC_RANDOM, 3, &rng);
        for (k = 0; k < 2; k++) {
            snprintf(label, sizeof label, "flowpic-mini %d, %s", res, k ? "scale" : "raw");
            sparse_vs_dense(label, desc, nd, res, 3, pics, 6, k ? FLOWPIC_VALUE_SCALE : FLOWPIC_VALUE_RAW, 3);
        }
        free_pictures(pics, 6);
    }
    nd = 0;
    desc[nd].kind = FLOWPIC_LAYER_CONV; desc[nd].size = 4; desc[nd].kernel = 7; desc[nd].stride = 3;
    desc[nd].pad_before = 2; desc[nd].pad_after = 3; desc[nd++].dropout_p = 0.0f;
    memset(&desc[nd], 0, sizeof desc[nd]); desc[nd++].kind = FLOWPIC_LAYER_RELU;
    memset(&desc[nd], 0, sizeof desc[nd]); desc[nd].kind = FLOWPIC_LAYER_MAXPOOL; desc[nd].kernel = 3; desc[nd++].stride = 3;
    memset(&desc[nd], 0, sizeof desc[nd]); desc[nd].kind = FLOWPIC_LAYER_CONV; desc[nd].size = 6; desc[nd].kernel = 3;
    desc[nd].stride = 2; desc[nd].pad_before = 1; desc[nd++].pad_after = 2;
    memset(&desc[nd], 0, sizeof desc[nd]); desc[nd++].kind = FLOWPIC_LAYER_RELU;
    memset(&desc[nd], 0, sizeof desc[nd]); desc[nd].kind = FLOWPIC_LAYER_DROPOUT; desc[nd++].dropout_p = 0.25f;
    memset(&desc[nd], 0, sizeof desc[nd]); desc[nd++].kind = FLOWPIC_LAYER_FLATTEN;
    memset(&desc[nd], 0, sizeof desc[nd]); desc[nd++].kind = FLOWPIC_LAYER_DENSE;
    res = 61;
    make_picture(&pics[0], (uint32_t)res, PIC_BORDERS, 0, &rng);
    make_picture(&pics[1], (uint32_t)res, PIC_FULL, 0, &rng);
    make_picture(&pics[2], (uint32_t)res, PIC_RANDOM, 40, &rng);
    make_picture(&pics[3], (uint32_t)res, PIC_EMPTY, 0, &rng);
    sparse_vs_dense("custom 61: conv 4@7x7 s3 pad 2/3, pool 3, conv 6@3x3 s2 pad 1/2", desc, nd, res, 4, pics, 4,
                    FLOWPIC_VALUE_LOG1P, 3);
    free_pictures(pics, 4);
}

/* flowpic-full at 1500: synthetic pictures (empty, borders and corners, random, full density)
 * and real ones from ../shared/data. */
static void test_sparse_vs_dense_full(void)
{
    flowpic_layer_desc desc[FLOWPIC_NN_MAX_LAYERS];
    flowpic_picture pics[5];
    flowpic_rng rng;
    const int nd = flowpic_net_preset(FLOWPIC_ARCH_FULL, 1500, desc);
    flowpic_rng_seed(&rng, 32);
    make_picture(&pics[0], 1500, PIC_EMPTY, 0, &rng);
    make_picture(&pics[1], 1500, PIC_BORDERS, 0, &rng);
    make_picture(&pics[2], 1500, PIC_RANDOM, 3000, &rng);
    make_picture(&pics[3], 1500, PIC_ROWS, 500, &rng);
    sparse_vs_dense("flowpic-full, synthetic", desc, nd, 1500, 5, pics, 4, FLOWPIC_VALUE_RAW, 3);
    free_pictures(pics, 4);
    make_picture(&pics[0], 1500, PIC_FULL, 0, &rng);
    sparse_vs_dense("flowpic-full, full density", desc, nd, 1500, 2, pics, 1, FLOWPIC_VALUE_BINARY, 2);
    free_pictures(pics, 1);
}

/* $DATA (as in tests/lib.sh), else ../shared/data beside the checkout, else /work/shared/data. */
static const char *shared_data_dir(void)
{
    const char *dirs[3];
    size_t i;
    dirs[0] = getenv("DATA");
    dirs[1] = "../shared/data";
    dirs[2] = "/work/shared/data";
    for (i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[512];
        FILE *f;
        if (!dirs[i] || !dirs[i][0]) continue;
        snprintf(path, sizeof path, "%s/LABELS.tsv", dirs[i]);
        f = fopen(path, "rb");
        if (f) { fclose(f); return dirs[i]; }
    }
    return NULL;
}

/* Real pictures: the blocks of two captures of ../shared/data (a video stream, an HTTP
 * download: the densest pictures there are), the 6 with the most packets and 2 small ones. */
static void test_sparse_vs_dense_real(void)
{
    static const char *const files[] = {"ndpi-video/1kxun.pcap", "lab-file-transfer/http_download.pcap"};
    const char *dir = shared_data_dir();
    flowpic_layer_desc desc[FLOWPIC_NN_MAX_LAYERS];
    flowpic_block_config cfg;
    flowpic_dataset ds;
    flowpic_picture pics[8];
    size_t i, f, order[8], n = 0;
    const int nd = flowpic_net_preset(FLOWPIC_ARCH_FULL, 1500, desc);
    if (!dir) { printf("     (no ../shared/data: skipped)\n"); return; }
    flowpic_block_config_preset(&cfg, FLOWPIC_PRESET_PAPER);
    flowpic_dataset_init(&ds, &cfg);
    for (f = 0; f < sizeof files / sizeof files[0]; f++) {
        char path[512];
        pcapl_reader r;
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        CHECK_EQ(pcapl_open_path(&r, path), PCAPL_OK);
        CHECK_EQ(flowpic_dataset_add_capture(&ds, &r, path, NULL, NULL, NULL, NULL), FLOWPIC_OK);
        pcapl_close(&r);
    }
    CHECK(ds.n_blocks >= 8);
    /* the 6 largest blocks, then the first and the last */
    for (n = 0; n < 6; n++) {
        size_t best = 0, k;
        int found = 0;
        for (i = 0; i < ds.n_blocks; i++) {
            int used = 0;
            for (k = 0; k < n; k++) used |= order[k] == i;
            if (!used && (!found || ds.blocks[i].n_packets > ds.blocks[best].n_packets)) { best = i; found = 1; }
        }
        order[n] = best;
    }
    order[6] = 0;
    order[7] = ds.n_blocks - 1;
    memset(pics, 0, sizeof pics);
    for (i = 0; i < 8; i++)
        CHECK_EQ(flowpic_picture_build(&pics[i], ds.config.preset, ds.config.block_ns,
                                       flowpic_dataset_block_packets(&ds, order[i]), ds.blocks[order[i]].n_packets, 1500),
                 FLOWPIC_OK);
    printf("     %zu blocks; non-zero pixels of the chosen:", ds.n_blocks);
    for (i = 0; i < 8; i++) printf(" %u", pics[i].n);
    printf("\n");
    sparse_vs_dense("flowpic-full, real pictures", desc, nd, 1500, 5, pics, 8, FLOWPIC_VALUE_RAW, 3);
    free_pictures(pics, 8);
    flowpic_dataset_free(&ds);
}

/* ------------------------------------------------------------------ main */

typedef struct test_entry { const char *name; void (*fn)(void); } test_entry;

static const test_entry g_tests[] = {
    {"presets", test_presets},
    {"api_errors", test_api_errors},
    {"glorot", test_glorot},
    {"dropout_train_mode", test_dropout_train_mode},
    {"fpv_reader", test_fpv_reader},
    {"gradcheck", test_gradcheck},
    {"conv_naive_vs_blocked", test_conv_naive_vs_blocked},
    {"conv_naive_vs_blocked_full_dense", test_conv_full_dense},
    {"threads_bit_identical_mini", test_threads_bit_identical},
    {"threads_bit_identical_full", test_threads_bit_identical_full},
    {"training_separable", test_training_separable},
    {"sparse_api_errors", test_sparse_api_errors},
    {"sparse_vs_dense_small", test_sparse_vs_dense_small},
    {"sparse_vs_dense_full", test_sparse_vs_dense_full},
    {"sparse_vs_dense_real", test_sparse_vs_dense_real},
    {"model_roundtrip", test_model_roundtrip},
    {"model_rejects", test_model_rejects},
    {"vectors", test_vectors},
};

int main(int argc, char **argv)
{
    size_t t;
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) g_verbose = 1;
        else if (g_nfilters < 64) g_filters[g_nfilters++] = argv[i];
    }
    for (t = 0; t < sizeof g_tests / sizeof g_tests[0]; t++) {
        int run = g_nfilters == 0;
        for (i = 0; i < g_nfilters && !run; i++)
            run = strstr(g_tests[t].name, g_filters[i]) != NULL
                  || (starts_with(g_filters[i], "vectors/") && strcmp(g_tests[t].name, "vectors") == 0);
        if (!run) continue;
        case_begin(g_tests[t].name);
        g_tests[t].fn();
        case_end();
    }
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
