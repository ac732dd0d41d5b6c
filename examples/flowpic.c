/* flowpic - the command-line tool: one binary, subcommands over the calls flowpic.h offers.
 *
 *   flowpic info FILE...                      what a capture holds
 *   flowpic flows [--bidirectional] FILE...   one TSV line per flow
 *   flowpic extract [OPTIONS] -o OUT FILE...  captures -> labelled data set of blocks
 *   flowpic blocks [OPTIONS] FILE...          one TSV line per block
 *   flowpic stats DATASET...                  classes, blocks, packets, sources
 *   flowpic render [OPTIONS] -o OUT.png X     one FlowPic as PNG or PGM
 *   flowpic export --npy OUT.npy DATASET...   pictures and labels for NumPy
 *   flowpic help [COMMAND]                    usage
 *
 * Build: cc -O2 -o flowpic examples/flowpic.c -lm   (from the top of the repository)
 * Exit status: 0 success, 1 runtime error (bad input, I/O), 2 usage error.
 */
#define _POSIX_C_SOURCE 200809L /* the CLI only: isatty, stat, clock_gettime, inet_pton */
#define FLOWPIC_IMPLEMENTATION
#include "../flowpic.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* ---- messages -------------------------------------------------------------------------------- */

/* "flowpic: what 'arg'" and a pointer to the command's help, exit status 2 follows. */
static void fail_usage(const char *cmd, const char *what, const char *arg)
{
    if (arg)
        fprintf(stderr, "flowpic: %s '%s'\n", what, arg);
    else
        fprintf(stderr, "flowpic: %s\n", what);
    fprintf(stderr, "usage: flowpic %s ... (see 'flowpic help %s')\n", cmd, cmd);
}

/* "flowpic: FILE: record N, offset M: why" for a reader error. */
/* "flowpic: invalid value 'V' for --opt" and the pointer to the command's help. */
static void fail_value(const char *cmd, const char *name, const char *value)
{
    fprintf(stderr, "flowpic: invalid value '%s' for %s\n", value, name);
    fprintf(stderr, "usage: flowpic %s ... (see 'flowpic help %s')\n", cmd, cmd);
}

static void report_reader_error(const char *path, const pcapl_reader *r)
{
    const pcapl_error *e = &r->error;
    if (e->code == PCAPL_ERR_OPEN || e->code == PCAPL_ERR_EMPTY)
        fprintf(stderr, "flowpic: %s: %s\n", path, e->reason);
    else
        fprintf(stderr, "flowpic: %s: record %llu, offset %llu: %s\n", path,
                (unsigned long long)e->record, (unsigned long long)e->offset, e->reason);
}

static void print_time(FILE *out, uint64_t ns)
{
    fprintf(out, "%llu.%09llu", (unsigned long long)(ns / 1000000000u),
            (unsigned long long)(ns % 1000000000u));
}

/* ---- reading captures ------------------------------------------------------------------------ */

typedef void (*packet_fn)(void *user, const pcapl_packet *pkt, const pcapl_decoded *d, pcapl_skip skip);

/* Opens path ("-" = standard input); 0, or 1 after printing the error. */
static int open_capture(const char *path, pcapl_reader *r)
{
    pcapl_result res = !strcmp(path, "-") ? pcapl_open_file(r, stdin) : pcapl_open_path(r, path);
    if (res == PCAPL_OK) return 0;
    if (res == PCAPL_ERR_OPEN)
        fprintf(stderr, "flowpic: %s: cannot open: %s\n", path, strerror(errno));
    else
        report_reader_error(path, r);
    return 1;
}

static int scan_capture(const char *path, pcapl_reader *r, packet_fn fn, void *user)
{
    pcapl_packet pkt;
    pcapl_decoded d;
    pcapl_result res;
    if (open_capture(path, r)) return 1;
    while ((res = pcapl_next(r, &pkt)) == PCAPL_OK) fn(user, &pkt, &d, pcapl_decode(&pkt, &d));
    if (res != PCAPL_END) {
        report_reader_error(path, r);
        return 1;
    }
    return 0;
}

/* ---- info ------------------------------------------------------------------------------------ */

#define MAX_LINKTYPES 16

typedef struct capture_info {
    uint64_t packets, captured_bytes, wire_bytes;
    uint64_t ipv4, ipv6, tcp, udp, other_proto;
    uint64_t skipped[PCAPL_SKIP_COUNT];
    uint64_t first_ns, last_ns, timed, clamped;
    uint32_t linktypes[MAX_LINKTYPES];
    uint64_t linktype_packets[MAX_LINKTYPES];
    int n_linktypes;
    uint64_t linktype_overflow;
} capture_info;

static void info_count_linktype(capture_info *ci, uint32_t linktype)
{
    int i;
    for (i = 0; i < ci->n_linktypes; i++)
        if (ci->linktypes[i] == linktype) {
            ci->linktype_packets[i]++;
            return;
        }
    if (ci->n_linktypes == MAX_LINKTYPES) {
        ci->linktype_overflow++;
        return;
    }
    ci->linktypes[ci->n_linktypes] = linktype;
    ci->linktype_packets[ci->n_linktypes++] = 1;
}

static void info_packet(void *user, const pcapl_packet *pkt, const pcapl_decoded *d, pcapl_skip skip)
{
    capture_info *ci = (capture_info *)user;
    ci->packets++;
    ci->captured_bytes += pkt->caplen;
    ci->wire_bytes += pkt->origlen;
    info_count_linktype(ci, pkt->linktype);
    if (!(pkt->flags & PCAPL_PKT_NO_TIMESTAMP)) {
        if (!ci->timed++ || pkt->ts_ns < ci->first_ns) ci->first_ns = pkt->ts_ns;
        if (pkt->ts_ns > ci->last_ns) ci->last_ns = pkt->ts_ns;
    }
    if (pkt->flags & PCAPL_PKT_TS_CLAMPED) ci->clamped++;
    ci->skipped[skip]++;
    if (d->ip_version == 4) ci->ipv4++;
    if (d->ip_version == 6) ci->ipv6++;
    if (skip == PCAPL_SKIP_NONE) {
        if (d->proto == 6) ci->tcp++;
        else ci->udp++;
    }
}

static const char *linktype_name(uint32_t lt)
{
    switch (lt) {
    case PCAPL_LINK_NULL: return "null";
    case PCAPL_LINK_ETHERNET: return "ethernet";
    case PCAPL_LINK_RAW_12:
    case PCAPL_LINK_RAW_14:
    case PCAPL_LINK_RAW: return "raw-ip";
    case PCAPL_LINK_LOOP: return "loop";
    case PCAPL_LINK_SLL: return "linux-sll";
    case PCAPL_LINK_IPV4: return "raw-ipv4";
    case PCAPL_LINK_IPV6: return "raw-ipv6";
    case PCAPL_LINK_SLL2: return "linux-sll2";
    default: return "unsupported";
    }
}

static void info_print(const char *path, const pcapl_reader *r, const capture_info *ci, int failed)
{
    int i;
    printf("file:            %s\n", path);
    printf("format:          %s, %s-endian", pcapl_format_string(r->format), r->swapped ? "big" : "little");
    if (r->format == PCAPL_FORMAT_PCAP)
        printf(", %s timestamps, snaplen %u", r->nanosecond ? "ns" : "us", r->snaplen);
    else
        printf(", %llu section(s)", (unsigned long long)r->sections);
    printf(", version %u.%u\n", r->version_major, r->version_minor);
    printf("link types:     ");
    for (i = 0; i < ci->n_linktypes; i++)
        printf(" %u (%s): %llu packets%s", ci->linktypes[i], linktype_name(ci->linktypes[i]),
               (unsigned long long)ci->linktype_packets[i], i + 1 < ci->n_linktypes ? "," : "");
    if (!ci->n_linktypes) printf(" %u (%s)", r->linktype, linktype_name(r->linktype));
    printf("\n");
    printf("file bytes:      %llu\n", (unsigned long long)r->bytes);
    printf("packets:         %llu\n", (unsigned long long)ci->packets);
    printf("captured bytes:  %llu\n", (unsigned long long)ci->captured_bytes);
    printf("wire bytes:      %llu\n", (unsigned long long)ci->wire_bytes);
    printf("ipv4:            %llu\n", (unsigned long long)ci->ipv4);
    printf("ipv6:            %llu\n", (unsigned long long)ci->ipv6);
    printf("tcp:             %llu\n", (unsigned long long)ci->tcp);
    printf("udp:             %llu\n", (unsigned long long)ci->udp);
    printf("skipped:         %llu\n", (unsigned long long)(ci->packets - ci->skipped[PCAPL_SKIP_NONE]));
    for (i = 1; i < PCAPL_SKIP_COUNT; i++)
        if (ci->skipped[i])
            printf("  %-15s%llu\n", pcapl_skip_string((pcapl_skip)i), (unsigned long long)ci->skipped[i]);
    if (r->skipped_blocks) printf("other blocks:    %llu\n", (unsigned long long)r->skipped_blocks);
    if (ci->timed) {
        printf("first:           ");
        print_time(stdout, ci->first_ns);
        printf("\nlast:            ");
        print_time(stdout, ci->last_ns);
        printf("\nduration:        ");
        print_time(stdout, ci->last_ns - ci->first_ns);
        printf(" s\n");
    }
    if (ci->clamped) printf("clamped times:   %llu\n", (unsigned long long)ci->clamped);
    if (failed)
        printf("error:           record %llu, offset %llu: %s\n", (unsigned long long)r->error.record,
               (unsigned long long)r->error.offset, r->error.reason);
    else
        printf("error:           none\n");
}

static int cmd_info(int argc, char **argv)
{
    int i, status = 0;
    if (argc < 2) {
        fail_usage("info", "no capture given", 0);
        return EXIT_USAGE;
    }
    for (i = 1; i < argc; i++) {
        pcapl_reader r;
        capture_info ci;
        int failed;
        memset(&ci, 0, sizeof ci);
        failed = scan_capture(argv[i], &r, info_packet, &ci);
        if (failed && r.format == PCAPL_FORMAT_NONE) {
            status = EXIT_RUNTIME;
            continue; /* nothing was read: the error line says it all */
        }
        if (i > 1) printf("\n");
        info_print(argv[i], &r, &ci, failed);
        pcapl_close(&r);
        if (failed) status = EXIT_RUNTIME;
    }
    return status;
}

/* ---- flows ----------------------------------------------------------------------------------- */

typedef struct flows_state {
    flowpic_flowtable table;
    flowpic_result error;
} flows_state;

static void flows_packet(void *user, const pcapl_packet *pkt, const pcapl_decoded *d, pcapl_skip skip)
{
    flows_state *st = (flows_state *)user;
    flowpic_packet p;
    flowpic_result res;
    if (skip != PCAPL_SKIP_NONE || st->error != FLOWPIC_OK) return;
    flowpic_packet_from_decoded(&p, pkt->ts_ns, d);
    res = flowpic_flowtable_add(&st->table, &p, 0);
    if (res != FLOWPIC_OK) st->error = res;
}

static void flows_print(const flowpic_flowtable *ft)
{
    size_t i;
    for (i = 0; i < ft->count; i++) {
        const flowpic_flow *f = &ft->flows[i];
        char src[46], dst[46];
        pcapl_format_address(f->key.ip_version, f->key.src, src);
        pcapl_format_address(f->key.ip_version, f->key.dst, dst);
        printf("%s\t%s\t%u\t%s\t%u\t%llu\t%llu\t", f->key.proto == 6 ? "tcp" : "udp", src, f->key.sport, dst,
               f->key.dport, (unsigned long long)f->packets, (unsigned long long)f->bytes);
        print_time(stdout, f->first_ns);
        putchar('\t');
        print_time(stdout, f->last_ns);
        putchar('\n');
    }
}

static int cmd_flows(int argc, char **argv)
{
    int i, bidirectional = 0, status = 0, files = 0;
    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else if (!strcmp(argv[i], "--bidirectional")) {
            bidirectional = 1;
        } else {
            fail_usage("flows", "unknown option", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (i == argc) {
        fail_usage("flows", "no capture given", 0);
        return EXIT_USAGE;
    }
    printf("proto\tsrc\tsport\tdst\tdport\tpackets\tbytes\tfirst\tlast\n");
    for (; i < argc; i++, files++) {
        pcapl_reader r;
        flows_state st;
        int failed;
        memset(&st, 0, sizeof st);
        flowpic_flowtable_init(&st.table, bidirectional, 0);
        failed = scan_capture(argv[i], &r, flows_packet, &st);
        flows_print(&st.table);
        if (st.error != FLOWPIC_OK) {
            fprintf(stderr, "flowpic: %s: %s\n", argv[i], flowpic_result_string(st.error));
            failed = 1;
        }
        flowpic_flowtable_free(&st.table);
        pcapl_close(&r);
        if (failed) status = EXIT_RUNTIME;
    }
    (void)files;
    return status;
}

/* ---- selection: presets, windows, labels and flow filters (extract, blocks) -------------------- */

#define MAX_FILTER_ITEMS 32

typedef struct net_filter {
    uint8_t addr[16];
    int version;
    unsigned prefix;
} net_filter;

/* Flow filters (all given must hold; repeated --port / --net mean any of them). */
typedef struct flow_filter {
    int proto; /* 0 = any */
    uint16_t ports[MAX_FILTER_ITEMS];
    int n_ports;
    net_filter nets[MAX_FILTER_ITEMS];
    int n_nets;
    uint64_t min_packets;
    double min_duration, min_rate, max_rate;
    int has_min_duration, has_min_rate, has_max_rate;
} flow_filter;

typedef struct label_rule {
    char *glob;
    char *label;
    flow_filter filter;
} label_rule;

typedef struct label_map {
    label_rule *rules;
    size_t n, cap;
} label_map;

typedef struct selection {
    flowpic_preset preset;
    double block_s, step_s, idle_s; /* < 0: the preset's */
    long min_packets;               /* < 0: the preset's */
    int bidirectional, clip;
    const char *label;
    const char *labels_path;
    label_map map;
    flow_filter filter;
    int progress; /* -1: when stderr is a terminal */
    const char *output;
} selection;

static int parse_double(const char *s, double *out)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end || errno || v != v || v < 0) return 0;
    *out = v;
    return 1;
}

static int parse_ulong(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    unsigned long long v;
    if (!*s || *s == '-') return 0;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (*end || errno || v > max) return 0;
    *out = v;
    return 1;
}

static int parse_cidr(const char *s, net_filter *net)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    unsigned long long prefix;
    if (n >= sizeof buf) return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(net, 0, sizeof *net);
    if (inet_pton(AF_INET, buf, net->addr) == 1) net->version = 4;
    else if (inet_pton(AF_INET6, buf, net->addr) == 1) net->version = 6;
    else return 0;
    if (!slash) prefix = net->version == 4 ? 32 : 128;
    else if (!parse_ulong(slash + 1, net->version == 4 ? 32 : 128, &prefix)) return 0;
    net->prefix = (unsigned)prefix;
    return 1;
}

/* One filter option: 1 taken, 0 not a filter option, -1 bad value. */
static int filter_option(flow_filter *f, const char *name, const char *value)
{
    unsigned long long v;
    if (!strcmp(name, "--proto")) {
        if (!strcmp(value, "tcp")) f->proto = 6;
        else if (!strcmp(value, "udp")) f->proto = 17;
        else return -1;
    } else if (!strcmp(name, "--port")) {
        if (!parse_ulong(value, 65535, &v) || f->n_ports == MAX_FILTER_ITEMS) return -1;
        f->ports[f->n_ports++] = (uint16_t)v;
    } else if (!strcmp(name, "--net")) {
        if (f->n_nets == MAX_FILTER_ITEMS || !parse_cidr(value, &f->nets[f->n_nets])) return -1;
        f->n_nets++;
    } else if (!strcmp(name, "--min-flow-packets")) {
        if (!parse_ulong(value, UINT64_MAX, &v)) return -1;
        f->min_packets = v;
    } else if (!strcmp(name, "--min-duration")) {
        if (!parse_double(value, &f->min_duration)) return -1;
        f->has_min_duration = 1;
    } else if (!strcmp(name, "--min-rate")) {
        if (!parse_double(value, &f->min_rate)) return -1;
        f->has_min_rate = 1;
    } else if (!strcmp(name, "--max-rate")) {
        if (!parse_double(value, &f->max_rate)) return -1;
        f->has_max_rate = 1;
    } else {
        return 0;
    }
    return 1;
}

static int net_contains(const net_filter *net, const flowpic_key *k, const uint8_t *addr)
{
    unsigned bits = net->prefix, i;
    if (k->ip_version != net->version) return 0;
    for (i = 0; bits >= 8; i++, bits -= 8)
        if (addr[i] != net->addr[i]) return 0;
    return bits == 0 || ((addr[i] ^ net->addr[i]) & (0xFF00u >> bits) & 0xFFu) == 0;
}

static int filter_passes(const flow_filter *f, const flowpic_flow *flow)
{
    const flowpic_key *k = &flow->key;
    double duration = (double)(flow->last_ns > flow->first_ns ? flow->last_ns - flow->first_ns : 0) / 1e9;
    double rate = duration > 0 ? (double)flow->packets / duration : 0;
    int i, hit;
    if (f->proto && k->proto != f->proto) return 0;
    for (i = 0, hit = !f->n_ports; i < f->n_ports && !hit; i++) hit = k->sport == f->ports[i] || k->dport == f->ports[i];
    if (!hit) return 0;
    for (i = 0, hit = !f->n_nets; i < f->n_nets && !hit; i++)
        hit = net_contains(&f->nets[i], k, k->src) || net_contains(&f->nets[i], k, k->dst);
    if (!hit) return 0;
    if (flow->packets < f->min_packets) return 0;
    if (f->has_min_duration && duration < f->min_duration) return 0;
    if (f->has_min_rate && rate < f->min_rate) return 0;
    if (f->has_max_rate && rate > f->max_rate) return 0;
    return 1;
}

/* fnmatch-style: '*' (any run, '/' included), '?', '[...]' with ranges and '!' / '^'. */
static int glob_match(const char *g, const char *s)
{
    for (; *g; g++, s++) {
        if (*g == '*') {
            while (g[1] == '*') g++;
            if (!g[1]) return 1;
            for (; *s; s++)
                if (glob_match(g + 1, s)) return 1;
            return 0;
        }
        if (!*s) return 0;
        if (*g == '[') {
            const char *p = g + 1;
            int negate = *p == '!' || *p == '^', hit = 0;
            if (negate) p++;
            for (; *p && (*p != ']' || p == g + 1 + negate); p++) {
                if (p[1] == '-' && p[2] && p[2] != ']') {
                    hit |= (unsigned char)*s >= (unsigned char)p[0] && (unsigned char)*s <= (unsigned char)p[2];
                    p += 2;
                } else {
                    hit |= *p == *s;
                }
            }
            if (!*p || hit == negate) return 0;
            g = p;
        } else if (*g != '?' && *g != *s) {
            return 0;
        }
    }
    return !*s;
}

/* A rule's glob matches the path as given or any trailing part of it after a '/'. */
static int path_matches(const char *glob, const char *path)
{
    const char *p;
    if (glob_match(glob, path)) return 1;
    for (p = strchr(path, '/'); p; p = strchr(p + 1, '/'))
        if (glob_match(glob, p + 1)) return 1;
    return 0;
}

static const label_rule *find_rule(const label_map *m, const char *path)
{
    size_t i;
    for (i = 0; i < m->n; i++)
        if (path_matches(m->rules[i].glob, path)) return &m->rules[i];
    return 0;
}

static char *copy_string(const char *s, size_t n)
{
    char *c = (char *)malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

/* The filter column of a rule: options separated by spaces. */
static int parse_rule_filter(flow_filter *f, char *text)
{
    char *name = strtok(text, " "), *value;
    while (name) {
        value = strtok(0, " ");
        if (!value || filter_option(f, name, value) != 1) return 0;
        name = strtok(0, " ");
    }
    return 1;
}

static void free_label_map(label_map *m)
{
    size_t i;
    for (i = 0; i < m->n; i++) {
        free(m->rules[i].glob);
        free(m->rules[i].label);
    }
    free(m->rules);
    memset(m, 0, sizeof *m);
}

/* Lines "GLOB<TAB>LABEL[<TAB>FILTER]"; '#' comments and a "glob" header line are skipped. */
static int load_label_map(const char *path, label_map *m)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int lineno = 0;
    if (!f) {
        fprintf(stderr, "flowpic: %s: cannot open: %s\n", path, strerror(errno));
        return 0;
    }
    while (fgets(line, sizeof line, f)) {
        char *tab, *tab2, *end = line + strlen(line);
        label_rule r;
        lineno++;
        while (end > line && (end[-1] == '\n' || end[-1] == '\r')) *--end = '\0';
        if (!line[0] || line[0] == '#') continue;
        tab = strchr(line, '\t');
        if (lineno == 1 && !strncmp(line, "glob\t", 5)) continue;
        memset(&r, 0, sizeof r);
        tab2 = tab ? strchr(tab + 1, '\t') : 0;
        if (!tab || tab == line || (tab2 ? tab2 == tab + 1 : !tab[1]) ||
            (tab2 && !parse_rule_filter(&r.filter, tab2 + 1))) {
            fprintf(stderr, "flowpic: %s: line %d: expected GLOB<TAB>LABEL[<TAB>FILTER OPTIONS]\n", path, lineno);
            fclose(f);
            return 0;
        }
        if (m->n == m->cap) {
            size_t cap = m->cap ? m->cap * 2 : 16;
            label_rule *nr = (label_rule *)realloc(m->rules, cap * sizeof *nr);
            if (!nr) break;
            m->rules = nr;
            m->cap = cap;
        }
        r.glob = copy_string(line, (size_t)(tab - line));
        r.label = copy_string(tab + 1, tab2 ? (size_t)(tab2 - tab - 1) : strlen(tab + 1));
        m->rules[m->n++] = r;
        if (!r.glob || !r.label) break;
    }
    fclose(f);
    return 1;
}

static int is_value_option(const char *name)
{
    static const char *const names[] = {"--preset", "--block", "--step", "--min-packets", "--idle-timeout",
                                        "--label", "--labels", "-o", "--proto", "--port", "--net",
                                        "--min-flow-packets", "--min-duration", "--min-rate", "--max-rate"};
    size_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i])) return 1;
    return 0;
}

/* Options shared by extract and blocks: 1 taken (i advanced past a value), 0 not ours,
 * -1 usage error (reported). */
static int selection_option(const char *cmd, selection *sel, int argc, char **argv, int *i)
{
    const char *name = argv[*i], *value = *i + 1 < argc ? argv[*i + 1] : 0;
    unsigned long long v;
    int r;
    if (!strcmp(name, "--bidirectional")) {
        sel->bidirectional = 1;
        return 1;
    }
    if (!strcmp(name, "--clip")) {
        sel->clip = 1;
        return 1;
    }
    if (!strcmp(name, "--progress") || !strcmp(name, "--no-progress")) {
        sel->progress = name[2] == 'p';
        return 1;
    }
    if (!is_value_option(name)) return 0;
    if (!value) {
        fail_usage(cmd, "missing value after", name);
        return -1;
    }
    (*i)++;
    if (!strcmp(name, "--preset")) r = flowpic_preset_from_name(value, &sel->preset) ? 1 : -1;
    else if (!strcmp(name, "--block")) r = parse_double(value, &sel->block_s) && sel->block_s > 0 ? 1 : -1;
    else if (!strcmp(name, "--step")) r = parse_double(value, &sel->step_s) && sel->step_s > 0 ? 1 : -1;
    else if (!strcmp(name, "--idle-timeout")) r = parse_double(value, &sel->idle_s) ? 1 : -1;
    else if (!strcmp(name, "--min-packets")) {
        r = parse_ulong(value, 1u << 28, &v) && v > 0 ? 1 : -1;
        sel->min_packets = (long)v;
    } else if (!strcmp(name, "--label")) sel->label = value, r = 1;
    else if (!strcmp(name, "--labels")) sel->labels_path = value, r = 1;
    else if (!strcmp(name, "-o")) sel->output = value, r = 1;
    else r = filter_option(&sel->filter, name, value);
    if (r != 1) {
        fail_value(cmd, name, value);
        return -1;
    }
    return 1;
}

/* The cutting configuration a selection asks for; 0 after a usage message when it is invalid. */
static int selection_config(const char *cmd, const selection *sel, flowpic_block_config *cfg)
{
    flowpic_block_config_preset(cfg, sel->preset);
    if (sel->block_s > 0) cfg->block_ns = (uint64_t)(sel->block_s * 1e9 + 0.5);
    if (sel->step_s > 0) cfg->step_ns = (uint64_t)(sel->step_s * 1e9 + 0.5);
    else if (sel->block_s > 0) cfg->step_ns = cfg->block_ns;
    if (sel->idle_s > 0) cfg->idle_timeout_ns = (uint64_t)(sel->idle_s * 1e9 + 0.5);
    if (sel->min_packets > 0) cfg->min_packets = (uint32_t)sel->min_packets;
    if (sel->bidirectional) cfg->bidirectional = 1;
    if (sel->clip) cfg->size_policy = FLOWPIC_SIZE_CLIP;
    if (flowpic_block_config_check(cfg) != FLOWPIC_OK) {
        fail_usage(cmd, sel->preset == FLOWPIC_PRESET_ORIGINAL
                            ? "the original preset has fixed 60 s windows"
                            : "invalid windows: need 0 < step <= block, block < 78 h, block / step <= 4096",
                   0);
        return 0;
    }
    return 1;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Progress on stderr, about 6 redraws a second: files, packets/s, ETA by bytes. */
typedef struct progress {
    int on;
    int file, files;
    uint64_t packets, packets_before, bytes_done, bytes_total;
    double start, last;
} progress;

static uint64_t file_size(const char *path)
{
    struct stat st;
    return strcmp(path, "-") && stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void progress_init(progress *p, int setting, char **files, int n)
{
    int i;
    memset(p, 0, sizeof *p);
    p->on = setting < 0 ? isatty(fileno(stderr)) : setting;
    p->files = n;
    for (i = 0; i < n; i++) p->bytes_total += file_size(files[i]);
    p->start = p->last = now_seconds();
}

static void progress_show(progress *p, uint64_t file_bytes, int force)
{
    double t, rate, eta;
    uint64_t done = p->bytes_done + file_bytes;
    if (!p->on) return;
    t = now_seconds();
    if (!force && t - p->last < 0.16) return;
    p->last = t;
    rate = t > p->start ? (double)p->packets / (t - p->start) : 0;
    eta = done && p->bytes_total > done ? (t - p->start) * (double)(p->bytes_total - done) / (double)done : 0;
    fprintf(stderr, "\rfile %d/%d  %llu packets  %.0f packets/s  %3.0f%%  ETA %.0f s   ", p->file, p->files,
            (unsigned long long)p->packets, rate,
            p->bytes_total ? 100.0 * (double)done / (double)p->bytes_total : 0.0, eta);
    if (force) fputc('\n', stderr);
}

/* The label of a flow that passes the command-line filters and its file's rule filter. */
typedef struct label_context {
    const flow_filter *filter;
    const flow_filter *rule_filter;
    const char *label;
} label_context;

static const char *label_flow(void *user, const flowpic_flow *flow)
{
    const label_context *lc = (const label_context *)user;
    if (!filter_passes(lc->filter, flow)) return 0;
    if (lc->rule_filter && !filter_passes(lc->rule_filter, flow)) return 0;
    return lc->label;
}

static void progress_packets(void *user, uint64_t packets, uint64_t bytes)
{
    progress *p = (progress *)user;
    p->packets = p->packets_before + packets;
    progress_show(p, bytes, 0);
}

/* Adds the labelled blocks of one capture to ds; 0, or 1 after reporting an error. */
static int add_capture(flowpic_dataset *ds, const char *path, label_context *lc, progress *prog)
{
    pcapl_reader r;
    flowpic_result res;
    if (open_capture(path, &r)) return 1;
    res = flowpic_dataset_add_capture(ds, &r, path, label_flow, lc, prog ? progress_packets : 0, prog);
    if (prog) {
        prog->bytes_done += r.bytes;
        prog->packets_before += r.packets;
        prog->packets = prog->packets_before;
    }
    if (r.error.code != PCAPL_OK && r.error.code != PCAPL_END)
        report_reader_error(path, &r);
    else if (res != FLOWPIC_OK)
        fprintf(stderr, "flowpic: %s: %s\n", path, flowpic_result_string(res));
    pcapl_close(&r);
    return res != FLOWPIC_OK;
}

/* A command's own value options besides the selection: 1 taken, 0 not its, -1 bad value. */
typedef int (*extra_option_fn)(void *user, const char *name, const char *value);

static int parse_selection(const char *cmd, selection *sel, int argc, char **argv, flowpic_block_config *cfg,
                           extra_option_fn extra, void *extra_user)
{
    int i;
    memset(sel, 0, sizeof *sel);
    sel->block_s = sel->step_s = sel->idle_s = -1;
    sel->min_packets = -1;
    sel->progress = -1;
    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        int r;
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
        if (extra && i + 1 < argc && (r = extra(extra_user, argv[i], argv[i + 1])) != 0) {
            if (r < 0) {
                fail_value(cmd, argv[i], argv[i + 1]);
                return -1;
            }
            i++;
            continue;
        }
        r = selection_option(cmd, sel, argc, argv, &i);
        if (r < 0) return -1;
        if (r == 0) {
            fail_usage(cmd, "unknown option", argv[i]);
            return -1;
        }
    }
    if (sel->label && sel->labels_path) {
        fail_usage(cmd, "give --label or --labels, not both", 0);
        return -1;
    }
    if (!selection_config(cmd, sel, cfg)) return -1;
    if (sel->labels_path && !load_label_map(sel->labels_path, &sel->map)) return -2;
    return i;
}

/* The labelling of a file; 0 when a label map has no rule for it. */
static int label_for(const selection *sel, const char *path, label_context *lc)
{
    lc->filter = &sel->filter;
    lc->rule_filter = 0;
    if (sel->labels_path) {
        const label_rule *rule = find_rule(&sel->map, path);
        if (!rule) return 0;
        lc->label = rule->label;
        lc->rule_filter = &rule->filter;
        return 1;
    }
    lc->label = sel->label ? sel->label : "unlabelled";
    return 1;
}

/* ---- extract --------------------------------------------------------------------------------- */

static void print_class_summary(FILE *out, const flowpic_dataset *ds)
{
    uint32_t c;
    size_t i;
    fprintf(out, "class\tblocks\tpackets\n");
    for (c = 0; c < ds->n_classes; c++) {
        uint64_t blocks = 0, packets = 0;
        for (i = 0; i < ds->n_blocks; i++)
            if (ds->blocks[i].label == c) {
                blocks++;
                packets += ds->blocks[i].n_packets;
            }
        fprintf(out, "%s\t%llu\t%llu\n", ds->classes[c], (unsigned long long)blocks, (unsigned long long)packets);
    }
}

/* Runs the selection over files into ds (extract, render from captures). */
static int extract_into(const selection *sel, int n, char **files, flowpic_dataset *ds, int *skipped)
{
    progress prog;
    int i, status = 0;
    progress_init(&prog, sel->progress, files, n);
    for (i = 0; i < n; i++) {
        label_context lc;
        prog.file = i + 1;
        if (!label_for(sel, files[i], &lc)) {
            (*skipped)++;
            continue;
        }
        if (add_capture(ds, files[i], &lc, &prog)) status = 1;
    }
    progress_show(&prog, 0, 1);
    return status;
}

static int cmd_extract(int argc, char **argv)
{
    selection sel;
    flowpic_block_config cfg;
    flowpic_dataset ds;
    flowpic_error err;
    int first = parse_selection("extract", &sel, argc, argv, &cfg, 0, 0), skipped = 0, status;
    if (first == -2) return EXIT_RUNTIME;
    if (first < 0) return EXIT_USAGE;
    if (!sel.output) {
        fail_usage("extract", "no output file (-o OUT)", 0);
        free_label_map(&sel.map);
        return EXIT_USAGE;
    }
    if (first == argc) {
        fail_usage("extract", "no capture given", 0);
        free_label_map(&sel.map);
        return EXIT_USAGE;
    }
    flowpic_dataset_init(&ds, &cfg);
    status = extract_into(&sel, argc - first, argv + first, &ds, &skipped);
    if (status != 0) {
        fprintf(stderr, "flowpic: %s: not written (an input failed)\n", sel.output);
    } else {
        if (flowpic_dataset_save(&ds, sel.output, &err) != FLOWPIC_OK) {
            fprintf(stderr, "flowpic: %s: %s\n", sel.output, err.reason);
            status = 1;
        } else {
            printf("wrote %s: %llu blocks, %llu packets, %u classes, %u captures", sel.output,
                   (unsigned long long)ds.n_blocks, (unsigned long long)ds.n_packets, ds.n_classes,
                   ds.n_sources);
            if (skipped) printf(", %d captures matched no label rule (skipped)", skipped);
            printf("\n");
            print_class_summary(stdout, &ds);
        }
    }
    flowpic_dataset_free(&ds);
    free_label_map(&sel.map);
    return status ? EXIT_RUNTIME : 0;
}

/* ---- blocks ---------------------------------------------------------------------------------- */

static void print_key(const flowpic_key *k)
{
    char src[46], dst[46];
    pcapl_format_address(k->ip_version, k->src, src);
    pcapl_format_address(k->ip_version, k->dst, dst);
    printf("%s\t%s\t%u\t%s\t%u", k->proto == 6 ? "tcp" : "udp", src, k->sport, dst, k->dport);
}

static void print_blocks(const flowpic_dataset *ds)
{
    size_t i;
    for (i = 0; i < ds->n_blocks; i++) {
        const flowpic_ds_block *b = &ds->blocks[i];
        print_key(&ds->flows[b->flow].key);
        printf("\t%u\t", b->index);
        print_time(stdout, b->start_ns);
        printf("\t%u\n", flowpic_picture_packets(ds->config.preset, flowpic_dataset_block_packets(ds, i), b->n_packets));
    }
}

static int cmd_blocks(int argc, char **argv)
{
    selection sel;
    flowpic_block_config cfg;
    int first = parse_selection("blocks", &sel, argc, argv, &cfg, 0, 0), i, status = 0;
    if (first == -2) return EXIT_RUNTIME;
    if (first < 0) return EXIT_USAGE;
    if (first == argc) {
        fail_usage("blocks", "no capture given", 0);
        free_label_map(&sel.map);
        return EXIT_USAGE;
    }
    printf("proto\tsrc\tsport\tdst\tdport\tblock\tstart\tpackets\n");
    for (i = first; i < argc; i++) {
        flowpic_dataset ds;
        label_context lc;
        if (!label_for(&sel, argv[i], &lc)) continue;
        flowpic_dataset_init(&ds, &cfg);
        if (add_capture(&ds, argv[i], &lc, 0)) status = 1;
        print_blocks(&ds);
        flowpic_dataset_free(&ds);
    }
    free_label_map(&sel.map);
    return status ? EXIT_RUNTIME : 0;
}

/* ---- stats ----------------------------------------------------------------------------------- */

/* Loads and merges data sets; 0 after reporting an error. */
static int load_datasets(int n, const char *const *paths, flowpic_dataset *ds)
{
    int i;
    flowpic_dataset_init(ds, 0);
    for (i = 0; i < n; i++) {
        flowpic_dataset one;
        flowpic_error err;
        if (flowpic_dataset_load(&one, paths[i], &err) != FLOWPIC_OK) {
            if (err.code == FLOWPIC_ERR_FORMAT)
                fprintf(stderr, "flowpic: %s: offset %llu: %s\n", paths[i], (unsigned long long)err.offset, err.reason);
            else
                fprintf(stderr, "flowpic: %s: %s\n", paths[i], err.code == FLOWPIC_ERR_IO ? strerror(errno) : err.reason);
            flowpic_dataset_free(ds);
            return 0;
        }
        if (flowpic_dataset_merge(ds, &one, &err) != FLOWPIC_OK) {
            fprintf(stderr, "flowpic: %s: %s\n", paths[i], err.reason);
            flowpic_dataset_free(&one);
            flowpic_dataset_free(ds);
            return 0;
        }
        flowpic_dataset_free(&one);
    }
    return 1;
}

/* splitmix64's finalizer: the pixel checksum of ../shared/bench (gen_pcap.py --ref). */
static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    return x ^ (x >> 31);
}

/* Non-zero pixels of every block at res, and the order-free checksum of (row, column, count). */
static int print_pixels(const flowpic_dataset *ds, uint32_t res)
{
    flowpic_picture pic;
    uint64_t pixels = 0, sum = 0;
    size_t i;
    uint32_t k;
    memset(&pic, 0, sizeof pic);
    for (i = 0; i < ds->n_blocks; i++) {
        if (flowpic_picture_build(&pic, ds->config.preset, ds->config.block_ns, flowpic_dataset_block_packets(ds, i),
                                  ds->blocks[i].n_packets, res) != FLOWPIC_OK)
            return 0;
        pixels += pic.n;
        for (k = 0; k < pic.n; k++) {
            uint64_t row = pic.pixels[k].index / res, col = pic.pixels[k].index % res;
            sum += mix64(row << 40 | col << 20 | pic.pixels[k].count);
        }
    }
    flowpic_picture_free(&pic);
    printf("nonzero_pixels %llu\nchecksum %llu\n", (unsigned long long)pixels, (unsigned long long)sum);
    return 1;
}

static int cmd_stats(int argc, char **argv)
{
    flowpic_dataset ds;
    const flowpic_block_config *c = &ds.config;
    unsigned long long res = 0;
    uint32_t s;
    size_t i;
    if (argc > 2 && !strcmp(argv[1], "--pixels")) {
        if (!parse_ulong(argv[2], FLOWPIC_MAX_RES, &res) || !res) {
            fail_usage("stats", "invalid value for", "--pixels");
            return EXIT_USAGE;
        }
        argc -= 2;
        argv += 2;
    }
    if (argc < 2) {
        fail_usage("stats", "no data set given", 0);
        return EXIT_USAGE;
    }
    if (!load_datasets(argc - 1, (const char *const *)(argv + 1), &ds)) return EXIT_RUNTIME;
    if (res) {
        int ok = print_pixels(&ds, (uint32_t)res);
        flowpic_dataset_free(&ds);
        return ok ? 0 : EXIT_RUNTIME;
    }
    printf("preset %s, block %.9g s, step %.9g s, min packets %u, max size %u (%s), %s", flowpic_preset_name(c->preset),
           (double)c->block_ns / 1e9, (double)c->step_ns / 1e9, c->min_packets, c->max_size,
           c->size_policy == FLOWPIC_SIZE_CLIP ? "clip" : "drop", c->bidirectional ? "bidirectional" : "unidirectional");
    if (c->idle_timeout_ns) printf(", idle timeout %.9g s", (double)c->idle_timeout_ns / 1e9);
    printf("\n%u classes, %u sources, %llu flows, %llu blocks, %llu packets\n\n", ds.n_classes, ds.n_sources,
           (unsigned long long)ds.n_flows, (unsigned long long)ds.n_blocks, (unsigned long long)ds.n_packets);
    print_class_summary(stdout, &ds);
    printf("\nsource\tflows\tblocks\tpackets\n");
    for (s = 0; s < ds.n_sources; s++) {
        uint64_t flows = 0, blocks = 0, packets = 0;
        for (i = 0; i < ds.n_flows; i++) flows += ds.flows[i].source == s;
        for (i = 0; i < ds.n_blocks; i++)
            if (ds.flows[ds.blocks[i].flow].source == s) {
                blocks++;
                packets += ds.blocks[i].n_packets;
            }
        printf("%s\t%llu\t%llu\t%llu\n", ds.sources[s], (unsigned long long)flows, (unsigned long long)blocks,
               (unsigned long long)packets);
    }
    flowpic_dataset_free(&ds);
    return 0;
}

/* ---- render ---------------------------------------------------------------------------------- */

typedef struct render_options {
    unsigned long long index, res, scale, dot;
    int has_res, has_scale, has_dot;
    const char *class_name;
} render_options;

static int render_option(void *user, const char *name, const char *value)
{
    render_options *o = (render_options *)user;
    if (!strcmp(name, "--index")) return parse_ulong(value, UINT32_MAX, &o->index) ? 1 : -1;
    if (!strcmp(name, "--res")) return (o->has_res = parse_ulong(value, FLOWPIC_MAX_RES, &o->res) && o->res) ? 1 : -1;
    if (!strcmp(name, "--scale")) return (o->has_scale = parse_ulong(value, 64, &o->scale) && o->scale) ? 1 : -1;
    if (!strcmp(name, "--dot")) return (o->has_dot = parse_ulong(value, 64, &o->dot)) ? 1 : -1;
    if (!strcmp(name, "--class")) return (o->class_name = value) != 0;
    return 0;
}

static int is_dataset_file(const char *path)
{
    char magic[4];
    FILE *f = fopen(path, "rb");
    int yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "FPDS", 4);
    if (f) fclose(f);
    return yes;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Block *index of the data set, or the *index-th block of a class; 1 when it exists, with
 * *index then the data-set index. */
static int find_block(const flowpic_dataset *ds, const char *class_name, unsigned long long *index)
{
    unsigned long long seen = 0;
    size_t i;
    if (!class_name) return *index < ds->n_blocks;
    for (i = 0; i < ds->n_blocks; i++)
        if (!strcmp(ds->classes[ds->blocks[i].label], class_name) && seen++ == *index) {
            *index = i;
            return 1;
        }
    return 0;
}

static int cmd_render(int argc, char **argv)
{
    selection sel;
    flowpic_block_config cfg;
    render_options ro;
    flowpic_dataset ds;
    flowpic_picture pic;
    flowpic_error err;
    const flowpic_ds_block *b;
    uint8_t *data = 0;
    size_t size = 0;
    int first, skipped = 0, status = 0;
    memset(&ro, 0, sizeof ro);
    first = parse_selection("render", &sel, argc, argv, &cfg, render_option, &ro);
    if (first == -2) return EXIT_RUNTIME;
    if (first < 0) return EXIT_USAGE;
    if (!sel.output || first + 1 != argc) {
        fail_usage("render", sel.output ? "give one data set or capture" : "no output file (-o OUT.png)", 0);
        free_label_map(&sel.map);
        return EXIT_USAGE;
    }
    if (is_dataset_file(argv[first])) {
        if (!load_datasets(1, (const char *const *)(argv + first), &ds)) status = 1;
    } else {
        flowpic_dataset_init(&ds, &cfg);
        status = extract_into(&sel, 1, argv + first, &ds, &skipped);
    }
    if (!status && !find_block(&ds, ro.class_name, &ro.index)) {
        fprintf(stderr, "flowpic: %s: no block %llu%s%s\n", argv[first], ro.index, ro.class_name ? " of class " : "",
                ro.class_name ? ro.class_name : "");
        status = 1;
    }
    memset(&pic, 0, sizeof pic);
    if (!status) {
        uint32_t res = ro.has_res ? (uint32_t)ro.res : 1500;
        uint32_t scale = ro.has_scale ? (uint32_t)ro.scale : res >= 512 ? 1 : (512 + res - 1) / res;
        uint32_t dot = ro.has_dot ? (uint32_t)ro.dot : res * scale >= 1000 ? 3 : 0;
        flowpic_result r;
        b = &ds.blocks[ro.index];
        r = flowpic_picture_build(&pic, ds.config.preset, ds.config.block_ns,
                                  flowpic_dataset_block_packets(&ds, ro.index), b->n_packets, res);
        if (r == FLOWPIC_OK)
            r = ends_with(sel.output, ".pgm") ? flowpic_picture_pgm(&pic, scale, dot, &data, &size)
                                              : flowpic_picture_png(&pic, scale, dot, &data, &size);
        if (r == FLOWPIC_OK) r = flowpic_write_file_atomic(sel.output, data, size, &err);
        if (r != FLOWPIC_OK) {
            fprintf(stderr, "flowpic: %s: %s\n", sel.output, r == FLOWPIC_ERR_IO ? err.reason : flowpic_result_string(r));
            status = 1;
        } else {
            printf("wrote %s: block %llu (%s, ", sel.output, ro.index, ds.classes[b->label]);
            print_key(&ds.flows[b->flow].key);
            printf(", window %u), %u x %u pixels at scale %u, %u packets, %u non-zero pixels\n", b->index, res, res,
                   scale, pic.packets, pic.n);
        }
    }
    free(data);
    flowpic_picture_free(&pic);
    flowpic_dataset_free(&ds);
    free_label_map(&sel.map);
    return status ? EXIT_RUNTIME : 0;
}

/* ---- export ---------------------------------------------------------------------------------- */

/* A file written through PATH.tmp and renamed at the end; nothing is left on failure. */
typedef struct atomic_file {
    FILE *f;
    char tmp[4096];
    const char *path;
} atomic_file;

static int atomic_open(atomic_file *a, const char *path)
{
    a->path = path;
    if ((size_t)snprintf(a->tmp, sizeof a->tmp, "%s.tmp", path) >= sizeof a->tmp) return 0;
    a->f = fopen(a->tmp, "wb");
    if (!a->f) fprintf(stderr, "flowpic: %s: cannot create: %s\n", a->tmp, strerror(errno));
    return a->f != 0;
}

static int atomic_close(atomic_file *a, int ok)
{
    ok = !ferror(a->f) && ok;
    ok = fclose(a->f) == 0 && ok;
    if (ok && rename(a->tmp, a->path) != 0) ok = 0;
    if (!ok) {
        fprintf(stderr, "flowpic: %s: cannot write: %s\n", a->path, strerror(errno));
        remove(a->tmp);
    }
    return ok;
}

/* "OUT.npy" -> "OUT.<what>" */
static void sibling_path(char *out, size_t cap, const char *npy, const char *what)
{
    size_t n = strlen(npy);
    if (ends_with(npy, ".npy")) n -= 4;
    snprintf(out, cap, "%.*s.%s", (int)n, npy, what);
}

typedef struct export_options {
    const char *npy;
    unsigned long long res;
    int f32;
    flowpic_transform transform;
    int has_transform;
} export_options;

static int export_option(void *user, const char *name, const char *value)
{
    export_options *o = (export_options *)user;
    if (!strcmp(name, "--npy")) return (o->npy = value) != 0;
    if (!strcmp(name, "--res")) return parse_ulong(value, FLOWPIC_MAX_RES, &o->res) && o->res ? 1 : -1;
    if (!strcmp(name, "--dtype")) {
        if (strcmp(value, "u8") && strcmp(value, "f32")) return -1;
        o->f32 = value[0] == 'f';
        return 1;
    }
    if (!strcmp(name, "--transform")) return (o->has_transform = flowpic_transform_from_name(value, &o->transform)) ? 1 : -1;
    return 0;
}

static int write_pictures(const flowpic_dataset *ds, const export_options *o, atomic_file *a)
{
    char header[FLOWPIC_NPY_HEADER];
    uint64_t shape[3];
    uint32_t res = (uint32_t)o->res;
    size_t i, px = (size_t)res * res, j;
    float *dense = (float *)malloc(px * sizeof *dense);
    uint8_t *bytes = (uint8_t *)malloc(px);
    flowpic_picture pic;
    int ok = dense && bytes;
    shape[0] = ds->n_blocks;
    shape[1] = shape[2] = res;
    fwrite(header, 1, flowpic_npy_header(header, o->f32 ? "<f4" : "|u1", shape, 3), a->f);
    memset(&pic, 0, sizeof pic);
    for (i = 0; i < ds->n_blocks && ok; i++) {
        const flowpic_ds_block *b = &ds->blocks[i];
        ok = flowpic_picture_build(&pic, ds->config.preset, ds->config.block_ns, flowpic_dataset_block_packets(ds, i),
                                   b->n_packets, res) == FLOWPIC_OK;
        if (!ok) break;
        flowpic_picture_render(&pic, o->f32 ? o->transform : FLOWPIC_VALUE_CLIP255, dense);
        if (o->f32) {
            ok = fwrite(dense, sizeof *dense, px, a->f) == px; /* little-endian hosts */
        } else {
            for (j = 0; j < px; j++) bytes[j] = (uint8_t)dense[j];
            ok = fwrite(bytes, 1, px, a->f) == px;
        }
    }
    flowpic_picture_free(&pic);
    free(dense);
    free(bytes);
    return ok;
}

static int write_labels(const flowpic_dataset *ds, atomic_file *a)
{
    char header[FLOWPIC_NPY_HEADER];
    uint64_t shape[1];
    size_t i;
    shape[0] = ds->n_blocks;
    fwrite(header, 1, flowpic_npy_header(header, "<i4", shape, 1), a->f);
    for (i = 0; i < ds->n_blocks; i++) {
        int32_t v = ds->blocks[i].label;
        fwrite(&v, sizeof v, 1, a->f);
    }
    return 1;
}

static int cmd_export(int argc, char **argv)
{
    export_options o;
    flowpic_dataset ds;
    atomic_file a;
    char path[4096];
    uint32_t c;
    int i, ok;
    memset(&o, 0, sizeof o);
    o.res = 32;
    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i += 2) { /* every option takes a value */
        int r = i + 1 < argc ? export_option(&o, argv[i], argv[i + 1]) : 0;
        if (r <= 0) {
            if (r < 0) fail_value("export", argv[i], argv[i + 1]);
            else fail_usage("export", "unknown option", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!o.npy || i == argc) {
        fail_usage("export", o.npy ? "no data set given" : "no output (--npy OUT.npy)", 0);
        return EXIT_USAGE;
    }
    if (!load_datasets(argc - i, (const char *const *)(argv + i), &ds)) return EXIT_RUNTIME;
    if (!o.has_transform) o.transform = ds.config.preset == FLOWPIC_PRESET_TCBENCH ? FLOWPIC_VALUE_SCALE : FLOWPIC_VALUE_RAW;
    ok = atomic_open(&a, o.npy) && atomic_close(&a, write_pictures(&ds, &o, &a));
    sibling_path(path, sizeof path, o.npy, "labels.npy");
    ok = ok && atomic_open(&a, path) && atomic_close(&a, write_labels(&ds, &a));
    sibling_path(path, sizeof path, o.npy, "classes.txt");
    if (ok && atomic_open(&a, path)) {
        for (c = 0; c < ds.n_classes; c++) fprintf(a.f, "%s\n", ds.classes[c]);
        ok = atomic_close(&a, 1);
    } else {
        ok = 0;
    }
    if (ok)
        printf("wrote %s (%llu x %llu x %llu, %s), its labels and class names\n", o.npy, (unsigned long long)ds.n_blocks,
               o.res, o.res, o.f32 ? flowpic_transform_name(o.transform) : "uint8 counts clipped at 255");
    flowpic_dataset_free(&ds);
    return ok ? 0 : EXIT_RUNTIME;
}

/* ---- train ----------------------------------------------------------------------------------- */

typedef struct train_options {
    flowpic_arch arch;
    unsigned long long res, epochs, batch, seed, threads;
    double lr, val_split;
    const char *val_path, *output;
    flowpic_transform transform;
    int has_res, has_transform, has_batch, has_epochs, has_val_split;
    int group_by_file, balance, paper_schedule, keep_best, progress;
} train_options;

static int train_option(train_options *o, const char *name, const char *value)
{
    if (!strcmp(name, "--net")) {
        if (!strcmp(value, "full")) o->arch = FLOWPIC_ARCH_FULL;
        else if (!strcmp(value, "mini")) o->arch = FLOWPIC_ARCH_MINI;
        else return -1;
        return 1;
    }
    if (!strcmp(name, "--res")) return (o->has_res = parse_ulong(value, FLOWPIC_MAX_RES, &o->res) && o->res) ? 1 : -1;
    if (!strcmp(name, "--transform")) return (o->has_transform = flowpic_transform_from_name(value, &o->transform)) ? 1 : -1;
    if (!strcmp(name, "--epochs")) return (o->has_epochs = parse_ulong(value, 100000, &o->epochs) && o->epochs) ? 1 : -1;
    if (!strcmp(name, "--batch")) return (o->has_batch = parse_ulong(value, 4096, &o->batch) && o->batch) ? 1 : -1;
    if (!strcmp(name, "--lr")) return parse_double(value, &o->lr) && o->lr > 0 ? 1 : -1;
    if (!strcmp(name, "--seed")) return parse_ulong(value, UINT64_MAX, &o->seed) ? 1 : -1;
    if (!strcmp(name, "--threads")) return parse_ulong(value, 256, &o->threads) && o->threads ? 1 : -1;
    if (!strcmp(name, "--val-split")) return (o->has_val_split = parse_double(value, &o->val_split) && o->val_split < 1) ? 1 : -1;
    if (!strcmp(name, "--val")) return (o->val_path = value) != 0;
    if (!strcmp(name, "--group-by")) return !strcmp(value, "file") ? (o->group_by_file = 1) : -1;
    if (!strcmp(name, "-o")) return (o->output = value) != 0;
    return 0;
}

static int train_flag(train_options *o, const char *name)
{
    if (!strcmp(name, "--balance")) return o->balance = 1;
    if (!strcmp(name, "--paper-schedule")) return o->paper_schedule = 1;
    if (!strcmp(name, "--keep-best")) return o->keep_best = 1;
    if (!strcmp(name, "--no-keep-best")) return (o->keep_best = 0) == 0;
    if (!strcmp(name, "--progress")) return o->progress = 1;
    if (!strcmp(name, "--no-progress")) return (o->progress = 0) == 0;
    return 0;
}

/* Fisher-Yates with the one generator. */
static void shuffle(size_t *v, size_t n, flowpic_rng *rng)
{
    size_t i;
    for (i = n; i > 1; i--) {
        size_t j = (size_t)(flowpic_rng_uniform(rng) * (double)i), t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* Splits the blocks of ds into training and validation: a share of the blocks at random, or of
 * the source files (no file on both sides). Both arrays hold block indices. */
static void split_blocks(const flowpic_dataset *ds, const train_options *o, flowpic_rng *rng, size_t *train,
                         size_t *n_train, size_t *val, size_t *n_val)
{
    size_t i, target = (size_t)(o->val_split * (double)ds->n_blocks + 0.5);
    *n_train = *n_val = 0;
    if (o->group_by_file) {
        size_t *files = (size_t *)malloc((ds->n_sources + 1) * sizeof *files), in_val = 0;
        char *is_val = (char *)calloc(ds->n_sources + 1, 1);
        for (i = 0; i < ds->n_sources; i++) files[i] = i;
        shuffle(files, ds->n_sources, rng);
        for (i = 0; i < ds->n_sources && in_val < target; i++) {
            size_t k;
            is_val[files[i]] = 1;
            for (k = 0; k < ds->n_blocks; k++) in_val += ds->flows[ds->blocks[k].flow].source == files[i];
        }
        for (i = 0; i < ds->n_blocks; i++) {
            if (is_val[ds->flows[ds->blocks[i].flow].source]) val[(*n_val)++] = i;
            else train[(*n_train)++] = i;
        }
        free(files);
        free(is_val);
        return;
    }
    for (i = 0; i < ds->n_blocks; i++) train[i] = i;
    shuffle(train, ds->n_blocks, rng);
    for (i = 0; i < ds->n_blocks; i++) {
        if (i < target) val[(*n_val)++] = train[i];
        else train[(*n_train)++] = train[i];
    }
}

/* Random undersampling to the smallest class (the paper's balancing), order kept. */
static void balance_blocks(const flowpic_dataset *ds, size_t *blocks, size_t *n, flowpic_rng *rng)
{
    size_t *count = (size_t *)calloc(ds->n_classes + 1, sizeof *count), *kept = (size_t *)calloc(ds->n_classes + 1, sizeof *kept);
    size_t smallest = (size_t)-1, i, m = 0;
    uint32_t c;
    shuffle(blocks, *n, rng);
    for (i = 0; i < *n; i++) count[ds->blocks[blocks[i]].label]++;
    for (c = 0; c < ds->n_classes; c++)
        if (count[c] && count[c] < smallest) smallest = count[c];
    for (i = 0; i < *n; i++) {
        uint16_t l = ds->blocks[blocks[i]].label;
        if (kept[l] < smallest) {
            kept[l]++;
            blocks[m++] = blocks[i];
        }
    }
    *n = m;
    free(count);
    free(kept);
}

typedef struct train_progress {
    int on, epoch, epochs;
    double start, last;
} train_progress;

static void show_train_progress(void *user, size_t done, size_t total, const flowpic_epoch_stats *s)
{
    train_progress *p = (train_progress *)user;
    double t = now_seconds(), rate;
    int bar, k;
    if (!p->on || (done < total && t - p->last < 0.16)) return;
    p->last = t;
    rate = t > p->start ? (double)done / (t - p->start) : 0;
    bar = total ? (int)(20 * done / total) : 20;
    fprintf(stderr, "\repoch %d/%d [", p->epoch, p->epochs);
    for (k = 0; k < 20; k++) fputc(k < bar ? '#' : '.', stderr);
    fprintf(stderr, "] %3.0f%%  loss %.4f  acc %.3f  %.0f samples/s  ETA %.0f s ", 100.0 * (double)done / (double)total,
            s->loss, s->samples ? (double)s->correct / (double)s->samples : 0.0, rate,
            rate > 0 ? (double)(total - done) / rate : 0.0);
}

/* Mean loss, accuracy and balanced accuracy of the model on blocks (labels = data-set labels). */
/* Workspace flags: the library runs the presets on sparse pictures (flowpic_train_epoch,
 * flowpic_predict_blocks), so their workspaces leave out the dense first layers. */
static unsigned ws_flags(const flowpic_net *net, unsigned flags)
{
    return flowpic_net_sparse_ok(net) ? flags | FLOWPIC_WS_SPARSE : flags;
}

static int evaluate_split(const flowpic_model *m, flowpic_workspace *ws, const flowpic_dataset *ds, const size_t *blocks,
                          size_t n, double *loss, double *acc, double *balanced)
{
    float *probs = (float *)malloc((n ? n : 1) * m->n_classes * sizeof *probs);
    size_t i, correct = 0, *hit = (size_t *)calloc(m->n_classes, sizeof *hit), *all = (size_t *)calloc(m->n_classes, sizeof *all);
    uint32_t c, present = 0;
    double sum = 0, recall = 0;
    int ok = probs && hit && all && flowpic_predict_blocks(m, ws, ds, blocks, n, probs) == FLOWPIC_OK;
    for (i = 0; ok && i < n; i++) {
        const float *p = probs + i * m->n_classes;
        uint16_t label = ds->blocks[blocks[i]].label;
        uint32_t best = 0;
        for (c = 1; c < m->n_classes; c++)
            if (p[c] > p[best]) best = c;
        sum -= log(p[label] > 1e-30f ? (double)p[label] : 1e-30);
        correct += best == label;
        all[label]++;
        hit[label] += best == label;
    }
    for (c = 0; c < m->n_classes; c++)
        if (all[c]) {
            present++;
            recall += (double)hit[c] / (double)all[c];
        }
    *loss = n ? sum / (double)n : 0;
    *acc = n ? (double)correct / (double)n : 0;
    *balanced = present ? recall / present : 0;
    free(probs);
    free(hit);
    free(all);
    return ok;
}

static int cmd_train(int argc, char **argv)
{
    train_options o;
    flowpic_dataset ds, val_ds;
    const flowpic_dataset *vds = &ds;
    flowpic_model m;
    flowpic_workspace ws, ews;
    flowpic_prep prep;
    flowpic_rng rng;
    flowpic_error err;
    size_t *train = 0, *val = 0, n_train = 0, n_val = 0, i;
    int *labels = 0, first, status = 0;
    unsigned long long e;
    float *best = 0;
    double best_loss = 1e300;
    memset(&o, 0, sizeof o);
    o.arch = FLOWPIC_ARCH_MINI;
    o.lr = 1e-3;
    o.seed = 1;
    o.val_split = 0.1;
    o.keep_best = 1;
    o.progress = -1;
    for (first = 1; first < argc && argv[first][0] == '-' && argv[first][1]; first++) {
        int r = train_flag(&o, argv[first]);
        if (r) continue;
        r = first + 1 < argc ? train_option(&o, argv[first], argv[first + 1]) : 0;
        if (r <= 0) {
            if (r < 0) fail_value("train", argv[first], argv[first + 1]);
            else fail_usage("train", "unknown option", argv[first]);
            return EXIT_USAGE;
        }
        first++;
    }
    if (!o.output || first == argc) {
        fail_usage("train", o.output ? "no data set given" : "no output model (-o MODEL)", 0);
        return EXIT_USAGE;
    }
    if (o.paper_schedule) { /* the paper's recipe: its net at 1500 x 1500, raw counts, batch 128 */
        o.arch = FLOWPIC_ARCH_FULL;
        if (!o.has_batch) o.batch = 128;
    }
    if (!o.has_res) o.res = o.arch == FLOWPIC_ARCH_FULL ? 1500 : 64;
    /* the paper's raw counts for its net; log1p for the mini net, where count / 255 leaves the
     * single-packet pixels of sparse pictures too faint to learn from (docs/RESULTS.md) */
    if (!o.has_transform) o.transform = o.arch == FLOWPIC_ARCH_FULL ? FLOWPIC_VALUE_RAW : FLOWPIC_VALUE_LOG1P;
    if (!o.has_batch) o.batch = o.arch == FLOWPIC_ARCH_FULL ? 32 : 64;
    if (!o.has_epochs) o.epochs = 20;
    if (o.val_path && o.has_val_split) {
        fail_usage("train", "give --val-split or --val, not both", 0);
        return EXIT_USAGE;
    }
#ifdef _OPENMP
    if (o.threads) omp_set_num_threads((int)o.threads);
#endif
    if (!load_datasets(argc - first, (const char *const *)(argv + first), &ds)) return EXIT_RUNTIME;
    if (ds.n_classes < 2 || ds.n_blocks < 2) {
        fprintf(stderr, "flowpic: train: need at least two classes and two blocks (have %u, %llu)\n", ds.n_classes,
                (unsigned long long)ds.n_blocks);
        flowpic_dataset_free(&ds);
        return EXIT_RUNTIME;
    }
    flowpic_rng_seed(&rng, o.seed);
    prep.blocks = ds.config;
    prep.res = (uint32_t)o.res;
    prep.transform = o.transform;
    if (flowpic_model_init(&m, o.arch, &prep, (const char *const *)ds.classes, ds.n_classes, &rng) != FLOWPIC_OK) {
        fprintf(stderr, "flowpic: train: no %s net at %llu x %llu (full: 1500; mini: 32 or 64)\n", flowpic_arch_name(o.arch),
                o.res, o.res);
        flowpic_dataset_free(&ds);
        return EXIT_USAGE;
    }
    train = (size_t *)malloc(ds.n_blocks * sizeof *train);
    val = (size_t *)malloc(ds.n_blocks * sizeof *val);
    labels = (int *)malloc(ds.n_blocks * sizeof *labels);
    if (o.val_path) {
        if (!load_datasets(1, &o.val_path, &val_ds)) status = 1;
        else if (!flowpic_prep_accepts(&prep, &val_ds.config)) {
            fprintf(stderr, "flowpic: %s: cut with other block settings than the training data\n", o.val_path);
            status = 1;
        }
        for (i = 0; i < ds.n_blocks; i++) train[i] = i;
        n_train = ds.n_blocks;
        if (!status) {
            vds = &val_ds;
            val = (size_t *)realloc(val, (val_ds.n_blocks + 1) * sizeof *val);
            for (i = 0; i < val_ds.n_blocks; i++) val[i] = i;
            n_val = val_ds.n_blocks;
        }
    } else {
        split_blocks(&ds, &o, &rng, train, &n_train, val, &n_val);
    }
    if (!status && o.balance) balance_blocks(&ds, train, &n_train, &rng);
    if (!status && (flowpic_workspace_init(&ws, &m.net, (int)o.batch, ws_flags(&m.net, FLOWPIC_WS_TRAIN)) != FLOWPIC_OK ||
                    flowpic_workspace_init(&ews, &m.net, (int)o.batch, ws_flags(&m.net, 0)) != FLOWPIC_OK)) {
        fprintf(stderr, "flowpic: train: out of memory for a batch of %llu\n", o.batch);
        status = 1;
    }
    if (!status)
        printf("training %s at %llu x %llu (%s) on %llu blocks, validating on %llu, %u classes, batch %llu, lr %g, seed %llu\n",
               flowpic_arch_name(o.arch), o.res, o.res, flowpic_transform_name(o.transform), (unsigned long long)n_train,
               (unsigned long long)n_val, ds.n_classes, o.batch, o.lr, o.seed);
    if (!status) printf("epoch\ttrain_loss\ttrain_acc\tval_loss\tval_acc\tval_balanced_acc\tseconds\n");
    best = (float *)malloc(m.net.num_params * sizeof *best);
    for (e = 1; !status && e <= o.epochs; e++) {
        train_progress tp;
        flowpic_epoch_stats st;
        double vloss = 0, vacc = 0, vbal = 0;
        tp.on = o.progress < 0 ? isatty(fileno(stderr)) : o.progress;
        tp.epoch = (int)e;
        tp.epochs = (int)o.epochs;
        tp.start = tp.last = now_seconds();
        shuffle(train, n_train, &rng);
        for (i = 0; i < n_train; i++) labels[i] = ds.blocks[train[i]].label;
        if (flowpic_train_epoch(&m, &ws, &ds, train, labels, n_train, (int)o.batch, o.lr, &rng, show_train_progress, &tp,
                                &st) != FLOWPIC_OK) {
            fprintf(stderr, "\nflowpic: train: training failed\n");
            status = 1;
            break;
        }
        if (tp.on) fputc('\n', stderr);
        if (n_val && !evaluate_split(&m, &ews, vds, val, n_val, &vloss, &vacc, &vbal)) status = 1;
        printf("%llu\t%.4f\t%.4f\t", e, st.loss, st.samples ? (double)st.correct / (double)st.samples : 0.0);
        if (n_val) printf("%.4f\t%.4f\t%.4f", vloss, vacc, vbal);
        else printf("-\t-\t-");
        printf("\t%.1f\n", now_seconds() - tp.start);
        fflush(stdout);
        if (n_val && o.keep_best && vloss < best_loss && best) {
            best_loss = vloss;
            memcpy(best, m.net.params, m.net.num_params * sizeof *best);
        }
    }
    if (!status && n_val && o.keep_best && best && best_loss < 1e300) {
        memcpy(m.net.params, best, m.net.num_params * sizeof *best);
        printf("kept the weights of the epoch with the lowest validation loss (%.4f)\n", best_loss);
    }
    if (!status) {
        if (flowpic_model_save(&m, o.output, &err) != FLOWPIC_OK) {
            fprintf(stderr, "flowpic: %s: %s\n", o.output, err.reason);
            status = 1;
        } else {
            printf("wrote %s\n", o.output);
        }
    }
    if (o.val_path && vds == &val_ds) flowpic_dataset_free(&val_ds);
    flowpic_workspace_free(&ws);
    flowpic_workspace_free(&ews);
    flowpic_model_free(&m);
    flowpic_dataset_free(&ds);
    free(train);
    free(val);
    free(labels);
    free(best);
    return status ? EXIT_RUNTIME : 0;
}

/* ---- eval ------------------------------------------------------------------------------------ */

/* Loads a model; 0 after reporting an error. */
static int load_model(const char *path, flowpic_model *m)
{
    flowpic_error err;
    if (flowpic_model_load(m, path, &err) == FLOWPIC_OK) return 1;
    if (err.code == FLOWPIC_ERR_FORMAT)
        fprintf(stderr, "flowpic: %s: offset %llu: %s\n", path, (unsigned long long)err.offset, err.reason);
    else
        fprintf(stderr, "flowpic: %s: %s\n", path, err.code == FLOWPIC_ERR_IO ? strerror(errno) : err.reason);
    return 0;
}

static int cmd_eval(int argc, char **argv)
{
    flowpic_model m;
    flowpic_dataset ds;
    flowpic_workspace ws;
    size_t *blocks, n = 0, i, skipped = 0, *conf;
    int *model_class, json = 0, first = 1, status = 0;
    float *probs;
    uint32_t c, k;
    double correct = 0, balanced = 0;
    unsigned present = 0;
    if (argc > 1 && !strcmp(argv[1], "--json")) json = first = 2;
    if (argc - first < 2) {
        fail_usage("eval", "give a model and at least one data set", 0);
        return EXIT_USAGE;
    }
    if (!load_model(argv[first], &m)) return EXIT_RUNTIME;
    if (!load_datasets(argc - first - 1, (const char *const *)(argv + first + 1), &ds)) {
        flowpic_model_free(&m);
        return EXIT_RUNTIME;
    }
    if (!flowpic_prep_accepts(&m.prep, &ds.config)) {
        fprintf(stderr, "flowpic: eval: the data set was cut with other block settings than the model's\n");
        flowpic_dataset_free(&ds);
        flowpic_model_free(&m);
        return EXIT_RUNTIME;
    }
    model_class = (int *)malloc((ds.n_classes + 1) * sizeof *model_class);
    for (c = 0; c < ds.n_classes; c++) {
        model_class[c] = -1;
        for (k = 0; k < m.n_classes; k++)
            if (!strcmp(ds.classes[c], m.classes[k])) model_class[c] = (int)k;
    }
    blocks = (size_t *)malloc((ds.n_blocks + 1) * sizeof *blocks);
    for (i = 0; i < ds.n_blocks; i++) {
        if (model_class[ds.blocks[i].label] >= 0) blocks[n++] = i;
        else skipped++;
    }
    probs = (float *)malloc((n + 1) * m.n_classes * sizeof *probs);
    conf = (size_t *)calloc((size_t)m.n_classes * m.n_classes, sizeof *conf);
    memset(&ws, 0, sizeof ws);
    if (!probs || !conf || flowpic_workspace_init(&ws, &m.net, 32, ws_flags(&m.net, 0)) != FLOWPIC_OK ||
        flowpic_predict_blocks(&m, &ws, &ds, blocks, n, probs) != FLOWPIC_OK) {
        fprintf(stderr, "flowpic: eval: out of memory\n");
        status = EXIT_RUNTIME;
        goto done;
    }
    for (i = 0; i < n; i++) {
        const float *p = probs + i * m.n_classes;
        uint32_t best = 0, truth = (uint32_t)model_class[ds.blocks[blocks[i]].label];
        for (k = 1; k < m.n_classes; k++)
            if (p[k] > p[best]) best = k;
        conf[truth * m.n_classes + best]++;
        correct += best == truth;
    }
    if (json) printf("{\"blocks\": %llu, \"skipped\": %llu, \"classes\": [", (unsigned long long)n, (unsigned long long)skipped);
    for (c = 0; json && c < m.n_classes; c++) printf("%s\"%s\"", c ? ", " : "", m.classes[c]);
    if (json) printf("],\n \"confusion\": [");
    else printf("blocks %llu (skipped %llu of classes the model does not know)\n\nconfusion (rows: true class, columns: predicted)\nclass",
                (unsigned long long)n, (unsigned long long)skipped);
    for (c = 0; !json && c < m.n_classes; c++) printf("\t%s", m.classes[c]);
    for (c = 0; c < m.n_classes; c++) {
        size_t row = 0;
        for (k = 0; k < m.n_classes; k++) row += conf[c * m.n_classes + k];
        if (json) printf("%s[", c ? ", " : "");
        else printf("\n%s", m.classes[c]);
        for (k = 0; k < m.n_classes; k++)
            printf("%s%llu", json ? (k ? ", " : "") : "\t", (unsigned long long)conf[c * m.n_classes + k]);
        if (json) printf("]");
        (void)row;
    }
    if (!json) {
        printf("\n\nconfusion, share of each row\nclass");
        for (c = 0; c < m.n_classes; c++) printf("\t%s", m.classes[c]);
        for (c = 0; c < m.n_classes; c++) {
            size_t row = 0;
            for (k = 0; k < m.n_classes; k++) row += conf[c * m.n_classes + k];
            printf("\n%s", m.classes[c]);
            for (k = 0; k < m.n_classes; k++) printf("\t%.3f", row ? (double)conf[c * m.n_classes + k] / (double)row : 0.0);
        }
        printf("\n\nclass\tprecision\trecall\tf1\tsupport\n");
    } else {
        printf("],\n \"per_class\": [");
    }
    for (c = 0; c < m.n_classes; c++) {
        size_t tp = conf[c * m.n_classes + c], row = 0, col = 0;
        double precision, recall, f1;
        for (k = 0; k < m.n_classes; k++) {
            row += conf[c * m.n_classes + k];
            col += conf[k * m.n_classes + c];
        }
        precision = col ? (double)tp / (double)col : 0;
        recall = row ? (double)tp / (double)row : 0;
        f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
        if (row) {
            present++;
            balanced += recall;
        }
        if (json)
            printf("%s{\"class\": \"%s\", \"precision\": %.4f, \"recall\": %.4f, \"f1\": %.4f, \"support\": %llu}", c ? ", " : "",
                   m.classes[c], precision, recall, f1, (unsigned long long)row);
        else
            printf("%s\t%.4f\t%.4f\t%.4f\t%llu\n", m.classes[c], precision, recall, f1, (unsigned long long)row);
    }
    if (json)
        printf("],\n \"accuracy\": %.4f, \"balanced_accuracy\": %.4f}\n", n ? correct / (double)n : 0.0, present ? balanced / present : 0.0);
    else
        printf("\naccuracy\t%.4f\nbalanced_accuracy\t%.4f\n", n ? correct / (double)n : 0.0, present ? balanced / present : 0.0);
done:
    flowpic_workspace_free(&ws);
    free(model_class);
    free(blocks);
    free(probs);
    free(conf);
    flowpic_dataset_free(&ds);
    flowpic_model_free(&m);
    return status;
}

/* ---- classify -------------------------------------------------------------------------------- */

/* The flow's decision from its blocks' probabilities: majority of the block votes (ties to the
 * larger summed probability) or the largest mean probability; confidence is the winner's share. */
static uint32_t vote(const float *probs, size_t n, uint32_t classes, int mean, double *confidence)
{
    double sum[FLOWPIC_NN_MAX_CLASSES];
    size_t votes[FLOWPIC_NN_MAX_CLASSES], i;
    uint32_t c, best = 0;
    for (c = 0; c < classes; c++) sum[c] = 0, votes[c] = 0;
    for (i = 0; i < n; i++) {
        const float *p = probs + i * classes;
        uint32_t top = 0;
        for (c = 0; c < classes; c++) {
            sum[c] += (double)p[c];
            if (p[c] > p[top]) top = c;
        }
        votes[top]++;
    }
    for (c = 1; c < classes; c++)
        if (mean ? sum[c] > sum[best] : votes[c] > votes[best] || (votes[c] == votes[best] && sum[c] > sum[best])) best = c;
    *confidence = mean ? sum[best] / (double)n : (double)votes[best] / (double)n;
    return best;
}

static int cmd_classify(int argc, char **argv)
{
    flowpic_model m;
    flowpic_workspace ws;
    int first, mean = 0, per_block = 0, status = 0, f;
    uint32_t c;
    for (first = 1; first < argc && argv[first][0] == '-' && argv[first][1]; first++) {
        if (!strcmp(argv[first], "--per-block")) per_block = 1;
        else if (!strcmp(argv[first], "--vote") && first + 1 < argc && (!strcmp(argv[first + 1], "mean") || !strcmp(argv[first + 1], "majority")))
            mean = !strcmp(argv[++first], "mean");
        else {
            fail_usage("classify", "unknown option or bad value", argv[first]);
            return EXIT_USAGE;
        }
    }
    if (argc - first < 2) {
        fail_usage("classify", "give a model and at least one capture", 0);
        return EXIT_USAGE;
    }
    if (!load_model(argv[first], &m)) return EXIT_RUNTIME;
    if (flowpic_workspace_init(&ws, &m.net, 32, ws_flags(&m.net, 0)) != FLOWPIC_OK) {
        fprintf(stderr, "flowpic: classify: out of memory\n");
        flowpic_model_free(&m);
        return EXIT_RUNTIME;
    }
    if (per_block) {
        printf("proto\tsrc\tsport\tdst\tdport\tblock\tstart\tlabel");
        for (c = 0; c < m.n_classes; c++) printf("\tp_%s", m.classes[c]);
        printf("\n");
    } else {
        printf("proto\tsrc\tsport\tdst\tdport\tblocks\tlabel\tconfidence\n");
    }
    for (f = first + 1; f < argc; f++) {
        flowpic_dataset ds;
        label_context lc;
        flow_filter none;
        size_t *blocks, i, start;
        float *probs;
        memset(&none, 0, sizeof none);
        lc.filter = &none;
        lc.rule_filter = 0;
        lc.label = "unlabelled";
        flowpic_dataset_init(&ds, &m.prep.blocks);
        if (add_capture(&ds, argv[f], &lc, 0)) status = 1;
        blocks = (size_t *)malloc((ds.n_blocks + 1) * sizeof *blocks);
        probs = (float *)malloc((ds.n_blocks + 1) * m.n_classes * sizeof *probs);
        for (i = 0; i < ds.n_blocks; i++) blocks[i] = i;
        if (!blocks || !probs || flowpic_predict_blocks(&m, &ws, &ds, blocks, ds.n_blocks, probs) != FLOWPIC_OK) {
            fprintf(stderr, "flowpic: %s: prediction failed\n", argv[f]);
            status = 1;
        } else {
            for (start = 0; start < ds.n_blocks; start = i) { /* blocks of a flow are together */
                double confidence;
                uint32_t label;
                for (i = start; i < ds.n_blocks && ds.blocks[i].flow == ds.blocks[start].flow; i++) {
                    if (!per_block) continue;
                    label = vote(probs + i * m.n_classes, 1, m.n_classes, 1, &confidence);
                    print_key(&ds.flows[ds.blocks[i].flow].key);
                    printf("\t%u\t", ds.blocks[i].index);
                    print_time(stdout, ds.blocks[i].start_ns);
                    printf("\t%s", m.classes[label]);
                    for (c = 0; c < m.n_classes; c++) printf("\t%.4f", (double)probs[i * m.n_classes + c]);
                    printf("\n");
                }
                if (per_block) continue;
                label = vote(probs + start * m.n_classes, i - start, m.n_classes, mean, &confidence);
                print_key(&ds.flows[ds.blocks[start].flow].key);
                printf("\t%llu\t%s\t%.4f\n", (unsigned long long)(i - start), m.classes[label], confidence);
            }
        }
        free(blocks);
        free(probs);
        flowpic_dataset_free(&ds);
    }
    flowpic_workspace_free(&ws);
    flowpic_model_free(&m);
    return status ? EXIT_RUNTIME : 0;
}

/* ---- help ------------------------------------------------------------------------------------ */

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    const char *help;
} command;

static int cmd_help(int argc, char **argv);

#define SELECTION_HELP                                                                         \
    "Blocks:\n"                                                                              \
    "  --preset P            paper (default), original (the authors' code), tcbench\n"      \
    "  --block S             window length in seconds        [paper: 60, tcbench: 15]\n"   \
    "  --step S              step between windows (S < block overlaps)     [= block]\n"  \
    "  --min-packets N       packets a window needs to be a block  [paper: 10, original: 11]\n" \
    "  --bidirectional       both directions of a 5-tuple in one flow [tcbench: on]\n"      \
    "  --clip                clip sizes over 1500 instead of dropping [tcbench: on]\n"      \
    "  --idle-timeout S      a silence of S seconds ends a flow          [none]\n"           \
    "Labels:\n"                                                                              \
    "  --label NAME          every block of every file is NAME           [unlabelled]\n"    \
    "  --labels MAP          lines GLOB<TAB>LABEL[<TAB>FILTER]: the first glob that matches\n" \
    "                        the path (or a trailing part after a '/') labels the file and\n" \
    "                        its FILTER options pick the flows; files no rule matches are\n" \
    "                        skipped and counted ('#' comments; ../shared/data/LABELS.tsv)\n" \
    "Flow filters (all given must hold; repeated --port / --net: any of them):\n"           \
    "  --proto tcp|udp       --port N (either end)     --net CIDR (either end, v4 or v6)\n"  \
    "  --min-flow-packets N  packets of the flow over the whole capture\n"                    \
    "  --min-duration S      last - first packet of the flow, seconds\n"                     \
    "  --min-rate R, --max-rate R   packets / duration (a 0 s flow has rate 0)\n"            \
    "Output:\n"                                                                              \
    "  -o OUT                the data set (extract) or picture (render)\n"                  \
    "  --progress, --no-progress    progress on stderr     [when stderr is a terminal]\n"

static const command commands[] = {
    {"info", cmd_info, "what a capture holds: format, link types, packets, protocols, times",
     "usage: flowpic info FILE...\n"
     "\n"
     "For each capture (pcap or pcapng; '-' reads standard input): format, byte order and\n"
     "version, link types with their packet counts, file / captured / wire bytes, packets,\n"
     "IPv4 / IPv6 / TCP / UDP counts, skipped packets by reason (unknown link type, not IP,\n"
     "truncated or malformed header, non-first fragment, other protocol), the earliest and\n"
     "latest timestamp and the duration between them, and any error with its record number\n"
     "and byte offset (the counts then cover every packet before the bad record).\n"
     "\n"
     "Exit status: 0 when every file reads to its end, 1 otherwise, 2 on a usage error.\n"},
    {"flows", cmd_flows, "one tab-separated line per flow of each capture",
     "usage: flowpic flows [--bidirectional] FILE...\n"
     "\n"
     "Prints a header line and one line per flow, in the order flows first appear:\n"
     "  proto  src  sport  dst  dport  packets  bytes  first  last\n"
     "proto is tcp or udp; addresses in standard text form (IPv6 as RFC 5952); bytes is the\n"
     "sum of IP packet sizes (IPv4 total length, IPv6 payload length + 40, whatever the\n"
     "snap length); first and last are capture timestamps in seconds with 9 decimals.\n"
     "A flow is one direction of one 5-tuple over the whole capture; each file's flows are\n"
     "listed separately, file after file. Only IPv4/IPv6 TCP/UDP packets count.\n"
     "\n"
     "Options:\n"
     "  --bidirectional   merge both directions under the key of the flow's first packet\n"},
    {"extract", cmd_extract, "cut captures into labelled blocks: a data set file",
     "usage: flowpic extract [OPTIONS] -o OUT FILE...\n"
     "\n"
     "Cuts every flow of every capture into blocks (FLOWPIC.md section 2) and writes them with\n"
     "their labels to the data set OUT (format: docs/DATASET.md; written to OUT.tmp, then\n"
     "renamed). Prints the blocks per class. Progress goes to stderr when it is a terminal.\n"
     "\n"
     SELECTION_HELP},
    {"blocks", cmd_blocks, "one tab-separated line per block of each capture",
     "usage: flowpic blocks [OPTIONS] FILE...\n"
     "\n"
     "Prints a header line and one line per block, flow after flow (first-seen order):\n"
     "  proto  src  sport  dst  dport  block  start  packets\n"
     "block is the window number k, start the window start in seconds (9 decimals), packets\n"
     "the packets in its picture. The options are those of extract (labels only select files).\n"
     "\n"
     SELECTION_HELP},
    {"stats", cmd_stats, "what a data set holds: classes, blocks, packets, sources",
     "usage: flowpic stats [--pixels R] DATASET...\n"
     "\n"
     "The block settings, then per class its blocks and packets, then per source capture its\n"
     "flows, blocks and packets. Several data sets are merged (they must share block settings;\n"
     "classes are matched by name).\n"
     "\n"
     "  --pixels R   instead: the non-zero pixels of all pictures at R x R and their checksum,\n"
     "               the sum of mix64(row << 40 | column << 20 | count) (as ../shared/bench)\n"},
    {"render", cmd_render, "draw one FlowPic as PNG or PGM",
     "usage: flowpic render [--index N] [--class C] [--res R] [--scale S] [--dot D] [OPTIONS]\n"
     "                      -o OUT.png DATASET|FILE\n"
     "\n"
     "Draws block N (default 0; with --class, the N-th block of class C) of a data set, or of a\n"
     "capture cut with the options of extract,\n"
     "at R x R (default 1500), each pixel S x S (default: 512 / R rounded up, at least 1).\n"
     "Time runs left to right, size bottom to top; every non-zero pixel is black on white,\n"
     "grown by D image pixels on each side so single packets show (default: 3 when the image\n"
     "is 1000 pixels or more, else 0).\n"
     "OUT ending in .pgm gives PGM, anything else PNG.\n"},
    {"export", cmd_export, "pictures and labels as NumPy files",
     "usage: flowpic export --npy OUT.npy [--res R] [--dtype u8|f32] [--transform T] DATASET...\n"
     "\n"
     "Writes OUT.npy, an N x R x R array of every block's picture (default R = 32), with\n"
     "OUT.labels.npy (int32 class index per block) and OUT.classes.txt (one class name a line,\n"
     "in index order). u8 (default): counts clipped at 255. f32: the value transform T, one of\n"
     "raw, clip255, scale (count / 255 after clipping), binary, log1p; default scale for the\n"
     "tcbench preset, raw otherwise. In Python: x = numpy.load('OUT.npy').\n"},
    {"train", cmd_train, "train a CNN on data sets: a model file",
     "usage: flowpic train [OPTIONS] -o MODEL DATASET...\n"
     "\n"
     "Trains the network on the blocks of the data sets (merged) and writes MODEL (docs/MODEL.md):\n"
     "the weights, the class names and how pictures are built (block settings, resolution,\n"
     "transform), so the model is never applied to pictures built differently. One line per\n"
     "epoch on stdout (train and validation loss and accuracy), a progress bar on stderr.\n"
     "Same seed, data and options: the same model file, whatever the thread count.\n"
     "\n"
     "  --net full|mini        the paper's net (1500 x 1500) or tcbench's LeNet-5 (32 / 64)  [mini]\n"
     "  --res R                picture resolution                     [full: 1500, mini: 64]\n"
     "  --transform T          raw, clip255, scale, binary, log1p     [full: raw, mini: log1p]\n"
     "  --epochs N             passes over the training blocks        [20]\n"
     "  --batch N              blocks per Adam step                   [full: 32, mini: 64]\n"
     "  --lr X                 Adam learning rate                     [0.001]\n"
     "  --seed N               one seed for split, init, order, dropout [1]\n"
     "  --threads N            OpenMP threads (builds with OPENMP=1)  [all]\n"
     "  --val-split F          share of blocks held out for validation [0.1]\n"
     "  --group-by file        hold out whole capture files instead of blocks\n"
     "  --val DATASET          validate on this data set instead\n"
     "  --balance              undersample every class to the smallest (the paper's recipe)\n"
     "  --keep-best, --no-keep-best  keep the weights of the best validation loss [on]\n"
     "  --paper-schedule       the paper's setup: full net, 1500 x 1500, raw counts, batch 128\n"
     "  --progress, --no-progress    progress bar on stderr   [when stderr is a terminal]\n"},
    {"eval", cmd_eval, "accuracy, confusion matrix, precision / recall / F1 of a model",
     "usage: flowpic eval [--json] MODEL DATASET...\n"
     "\n"
     "Classifies every block of the data sets (which must be cut as the model expects) and prints\n"
     "the confusion matrix in counts and as shares of each row, per-class precision, recall, F1\n"
     "and support, accuracy and balanced accuracy (the mean of the recalls). Blocks of classes\n"
     "the model does not know are skipped and counted. --json prints one JSON object.\n"},
    {"classify", cmd_classify, "the class of every flow of captures",
     "usage: flowpic classify [--vote majority|mean] [--per-block] MODEL FILE...\n"
     "\n"
     "Cuts each capture (pcap or pcapng) the way the model was trained, classifies every block\n"
     "and prints one line per flow that has a block:\n"
     "  proto  src  sport  dst  dport  blocks  label  confidence\n"
     "majority (default): the most frequent block label, ties to the larger summed probability,\n"
     "confidence = its share of the votes; mean: the largest mean probability, confidence = it.\n"
     "--per-block prints each block with its probabilities instead.\n"},
    {"help", cmd_help, "this list, or the usage of one command", "usage: flowpic help [COMMAND]\n"},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_usage(FILE *out)
{
    size_t i;
    fprintf(out,
            "flowpic %s - encrypted traffic classification from FlowPic pictures\n"
            "\n"
            "usage: flowpic COMMAND [OPTIONS] [ARGS]\n"
            "       flowpic --version\n"
            "\n"
            "commands:\n",
            flowpic_version_string());
    for (i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-9s%s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'flowpic help COMMAND' tells more.\n");
}

static const command *find_command(const char *name)
{
    size_t i;
    for (i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].name, name)) return &commands[i];
    return 0;
}

static int cmd_help(int argc, char **argv)
{
    const command *c;
    if (argc < 2) {
        print_usage(stdout);
        return 0;
    }
    c = find_command(argv[1]);
    if (!c) {
        fprintf(stderr, "flowpic: unknown command '%s'\n", argv[1]);
        print_usage(stderr);
        return EXIT_USAGE;
    }
    fputs(c->help, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    const command *c;
    if (argc < 2) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("flowpic %s\n", flowpic_version_string());
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return cmd_help(1, argv);
    c = find_command(argv[1]);
    if (!c) {
        fprintf(stderr, "flowpic: unknown command '%s'\n", argv[1]);
        print_usage(stderr);
        return EXIT_USAGE;
    }
    if (argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
        fputs(c->help, stdout);
        return 0;
    }
    return c->run(argc - 1, argv + 1);
}
