/* flowpic - the command-line tool: one binary, subcommands over the calls flowpic.h offers.
 *
 *   flowpic info FILE...                      what a capture holds
 *   flowpic flows [--bidirectional] FILE...   one TSV line per flow
 *   flowpic extract [OPTIONS] -o OUT FILE...  captures -> labelled data set of blocks
 *   flowpic blocks [OPTIONS] FILE...          one TSV line per block
 *   flowpic stats DATASET...                  classes, blocks, packets, sources
 *   flowpic render [OPTIONS] -o OUT.png X     one FlowPic as PNG or PGM
 *   flowpic export --npy OUT.npy DATASET...   pictures and labels for NumPy
 *   flowpic classify MODEL FILE...            the class of every flow (also --follow, '-')
 *   flowpic live [OPTIONS] MODEL              decisions on live traffic (AF_PACKET)
 *   flowpic help [COMMAND]                    usage
 *
 * Build: cc -O2 -o flowpic examples/flowpic.c -lm   (from the top of the repository)
 * Exit status: 0 success, 1 runtime error (bad input, I/O), 2 usage error; SIGINT / SIGTERM end
 * the run cleanly, then by the same signal (see "interrupts").
 */
#define _POSIX_C_SOURCE 200809L /* the CLI only: isatty, stat, clock_gettime, inet_pton, sigaction */
#include <stdio.h>

/* Every read and write of the library goes through these (see "interrupts" below). */
static long read_unless_interrupted(FILE *f, void *buf, size_t n);
static size_t write_unless_interrupted(FILE *f, const void *buf, size_t n);
#define FLOWPIC_FREAD(f, buf, n) read_unless_interrupted(f, buf, n)
#define FLOWPIC_FWRITE(f, buf, n) write_unless_interrupted(f, buf, n)
#define FLOWPIC_IMPLEMENTATION
#include "../flowpic.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__ /* live: AF_PACKET, TPACKET_V3 */
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/mman.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* ---- interrupts ------------------------------------------------------------------------------
 * SIGINT and SIGTERM only set a flag. Every library read and write fails once it is set, so
 * reading a capture, a data set or a model stops at the next buffer (and a blocked read returns
 * at once: no SA_RESTART), and a file being written is abandoned: its temporary is removed and
 * the existing output stays as it was. Long loops (training) test interrupted() themselves. The
 * command then fails as after an I/O error and main() ends the process by the same signal, so a
 * calling shell sees the interruption. A second signal ends the process at once. */

static volatile sig_atomic_t interrupt_signal; /* the signal received, 0 = none */

static void on_interrupt(int sig) { interrupt_signal = sig; }

/* A signal ignored at start stays ignored (a shell script's background jobs ignore SIGINT). */
static void catch_interrupts(void)
{
    static const int signals[] = {SIGINT, SIGTERM};
    struct sigaction sa, old;
    size_t i;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sa.sa_flags = (int)SA_RESETHAND; /* the second signal takes the default action */
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < sizeof signals / sizeof signals[0]; i++)
        if (sigaction(signals[i], 0, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(signals[i], &sa, 0);
}

static int interrupted(void) { return interrupt_signal != 0; }

/* After the command has cleaned up: "flowpic: interrupted", then the default action. */
static void end_if_interrupted(void)
{
    if (!interrupted()) return;
    fprintf(stderr, "flowpic: interrupted\n");
    fflush(0);
    signal(interrupt_signal, SIG_DFL);
    raise(interrupt_signal);
}

static long read_unless_interrupted(FILE *f, void *buf, size_t n)
{
    size_t got;
    if (interrupted()) return -1;
    got = fread(buf, 1, n, f); /* what arrived before a signal is still delivered */
    return got == 0 && (ferror(f) || interrupted()) ? -1 : (long)got;
}

static size_t write_unless_interrupted(FILE *f, const void *buf, size_t n)
{
    return interrupted() ? 0 : fwrite(buf, 1, n, f);
}

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
    if (interrupted() && e->code == PCAPL_ERR_READ)
        fprintf(stderr, "flowpic: %s: interrupted at record %llu, offset %llu\n", path,
                (unsigned long long)e->record, (unsigned long long)e->offset);
    else if (e->code == PCAPL_ERR_OPEN || e->code == PCAPL_ERR_EMPTY)
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

/* parse_selection for the commands that read captures: the index of the first capture, or minus
 * the exit status after the message. */
static int parse_capture_args(const char *cmd, selection *sel, int argc, char **argv, flowpic_block_config *cfg)
{
    int first = parse_selection(cmd, sel, argc, argv, cfg, 0, 0);
    if (first == -2) return -EXIT_RUNTIME;
    if (first < 0) return -EXIT_USAGE;
    if (first == argc) {
        fail_usage(cmd, "no capture given", 0);
        free_label_map(&sel->map);
        return -EXIT_USAGE;
    }
    return first;
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

/* The flows the filters and label rules select, with their label when labelled. */
static void flows_print(const flowpic_flowtable *ft, label_context *lc, int labelled)
{
    size_t i;
    for (i = 0; i < ft->count; i++) {
        const flowpic_flow *f = &ft->flows[i];
        const char *label = label_flow(lc, f);
        char src[46], dst[46];
        if (!label) continue;
        pcapl_format_address(f->key.ip_version, f->key.src, src);
        pcapl_format_address(f->key.ip_version, f->key.dst, dst);
        printf("%s\t%s\t%u\t%s\t%u\t%llu\t%llu\t", f->key.proto == 6 ? "tcp" : "udp", src, f->key.sport, dst,
               f->key.dport, (unsigned long long)f->packets, (unsigned long long)f->bytes);
        print_time(stdout, f->first_ns);
        putchar('\t');
        print_time(stdout, f->last_ns);
        if (labelled) printf("\t%s", label);
        putchar('\n');
    }
}

static int cmd_flows(int argc, char **argv)
{
    selection sel;
    flowpic_block_config cfg;
    int i = parse_capture_args("flows", &sel, argc, argv, &cfg), status = 0, skipped = 0, labelled;
    if (i < 0) return -i;
    labelled = sel.label || sel.labels_path;
    printf("proto\tsrc\tsport\tdst\tdport\tpackets\tbytes\tfirst\tlast%s\n", labelled ? "\tlabel" : "");
    for (; i < argc; i++) {
        pcapl_reader r;
        flows_state st;
        label_context lc;
        int failed;
        if (!label_for(&sel, argv[i], &lc)) {
            skipped++;
            continue;
        }
        memset(&st, 0, sizeof st);
        flowpic_flowtable_init(&st.table, sel.bidirectional, 0);
        failed = scan_capture(argv[i], &r, flows_packet, &st);
        flows_print(&st.table, &lc, labelled);
        if (st.error != FLOWPIC_OK) {
            fprintf(stderr, "flowpic: %s: %s\n", argv[i], flowpic_result_string(st.error));
            failed = 1;
        }
        flowpic_flowtable_free(&st.table);
        pcapl_close(&r);
        if (failed) status = EXIT_RUNTIME;
    }
    if (skipped) fprintf(stderr, "flowpic: flows: %d captures matched no label rule (skipped)\n", skipped);
    free_label_map(&sel.map);
    return status;
}

/* ---- outputs ---------------------------------------------------------------------------------
 * Every file the CLI writes goes through PATH.tmp, renamed over PATH at the end, so a failed or
 * interrupted run removes its temporary and leaves an existing PATH as it was. A PATH that is a
 * device or a pipe (/dev/stdout, /dev/full, a FIFO) is written directly: renaming over it would
 * replace the device node. */

typedef struct atomic_file {
    FILE *f;
    char tmp[4096]; /* "" when PATH is written directly */
    const char *path;
} atomic_file;

static int is_stream(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
}

static int atomic_open(atomic_file *a, const char *path)
{
    a->path = path;
    a->tmp[0] = '\0';
    if (!is_stream(path) && (size_t)snprintf(a->tmp, sizeof a->tmp, "%s.tmp", path) >= sizeof a->tmp) {
        fprintf(stderr, "flowpic: %s: path too long\n", path);
        return 0;
    }
    a->f = fopen(a->tmp[0] ? a->tmp : path, "wb");
    if (!a->f) fprintf(stderr, "flowpic: %s: cannot create: %s\n", a->tmp[0] ? a->tmp : path, strerror(errno));
    return a->f != 0;
}

/* Removes the temporary (if any) and says why PATH was not written; err is an errno, 0 unknown. */
static int atomic_fail(const atomic_file *a, int err)
{
    if (a->tmp[0]) remove(a->tmp);
    if (interrupted())
        fprintf(stderr, "flowpic: %s: not written (interrupted)\n", a->path);
    else
        fprintf(stderr, "flowpic: %s: cannot write: %s\n", a->path, err ? strerror(err) : "write error");
    return 0;
}

/* Closes the temporary: 1 when everything reached it, else 0 after removing it. */
static int atomic_finish(atomic_file *a, int ok)
{
    int err = 0;
    ok = ok && !ferror(a->f) && !interrupted();
    if (!ok) err = errno;
    if (fclose(a->f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    return ok ? 1 : atomic_fail(a, err);
}

/* Renames a finished temporary over PATH: 1 when PATH holds the new contents. */
static int atomic_commit(const atomic_file *a)
{
    return !a->tmp[0] || rename(a->tmp, a->path) == 0 ? 1 : atomic_fail(a, errno);
}

/* A finished temporary that is not wanted after all (another output of the command failed). */
static void atomic_discard(const atomic_file *a)
{
    if (a->tmp[0]) remove(a->tmp);
}

/* Closes, then renames (ok) or removes the temporary; 1 when PATH holds the new contents. */
static int atomic_close(atomic_file *a, int ok)
{
    return atomic_finish(a, ok) && atomic_commit(a);
}

/* One buffer to PATH as above; 0 after printing the error. */
static int write_output(const char *path, const void *data, size_t size)
{
    atomic_file a;
    return atomic_open(&a, path) && atomic_close(&a, write_unless_interrupted(a.f, data, size) == size);
}

/* A data set or model the library encoded (and malloc'd) to PATH; 0 after printing the error. */
static int write_encoded(const char *path, flowpic_result encoded, uint8_t *data, size_t size)
{
    int ok = encoded == FLOWPIC_OK && write_output(path, data, size);
    if (encoded != FLOWPIC_OK) fprintf(stderr, "flowpic: %s: %s\n", path, flowpic_result_string(encoded));
    free(data);
    return ok;
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
        uint8_t *data = 0;
        size_t size = 0;
        flowpic_result encoded = flowpic_dataset_to_memory(&ds, &data, &size);
        if (!write_encoded(sel.output, encoded, data, size)) {
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
    int first = parse_capture_args("blocks", &sel, argc, argv, &cfg), i, status = 0;
    if (first < 0) return -first;
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
            if (interrupted())
                fprintf(stderr, "flowpic: %s: not read (interrupted)\n", paths[i]);
            else if (err.code == FLOWPIC_ERR_FORMAT)
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
    int has_res, has_scale, has_dot, busiest;
    const char *class_name;
} render_options;

static int render_option(void *user, const char *name, const char *value)
{
    render_options *o = (render_options *)user;
    if (!strcmp(name, "--index") && !strcmp(value, "busiest")) return o->busiest = 1;
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

/* Block *index of the data set, or the *index-th block of a class, or (busiest) the block with
 * the most packets (of the class); 1 when it exists, with *index then the data-set index. */
static int find_block(const flowpic_dataset *ds, const char *class_name, int busiest, unsigned long long *index)
{
    unsigned long long seen = 0;
    size_t i, best = (size_t)-1;
    if (!class_name && !busiest) return *index < ds->n_blocks;
    for (i = 0; i < ds->n_blocks; i++) {
        if (class_name && strcmp(ds->classes[ds->blocks[i].label], class_name) != 0) continue;
        if (busiest) {
            if (best == (size_t)-1 || ds->blocks[i].n_packets > ds->blocks[best].n_packets) best = i;
        } else if (seen++ == *index) {
            *index = i;
            return 1;
        }
    }
    if (!busiest || best == (size_t)-1) return 0;
    *index = best;
    return 1;
}

static int cmd_render(int argc, char **argv)
{
    selection sel;
    flowpic_block_config cfg;
    render_options ro;
    flowpic_dataset ds;
    flowpic_picture pic;
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
    if (!status && !find_block(&ds, ro.class_name, ro.busiest, &ro.index)) {
        if (ro.busiest) fprintf(stderr, "flowpic: %s: no block", argv[first]);
        else fprintf(stderr, "flowpic: %s: no block %llu", argv[first], ro.index);
        fprintf(stderr, "%s%s\n", ro.class_name ? " of class " : "", ro.class_name ? ro.class_name : "");
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
        if (r != FLOWPIC_OK) {
            fprintf(stderr, "flowpic: %s: %s\n", sel.output, flowpic_result_string(r));
            status = 1;
        } else if (!write_output(sel.output, data, size)) {
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

static int write_class_names(const flowpic_dataset *ds, atomic_file *a)
{
    uint32_t c;
    for (c = 0; c < ds->n_classes; c++) fprintf(a->f, "%s\n", ds->classes[c]);
    return 1;
}

/* The pictures, the labels and the class names to their temporaries (paths: OUT.npy and its two
 * siblings); how many are complete, 3 = all. */
static int write_export_files(const flowpic_dataset *ds, const export_options *o, char paths[3][4096], atomic_file *out)
{
    if (!atomic_open(&out[0], paths[0]) || !atomic_finish(&out[0], write_pictures(ds, o, &out[0]))) return 0;
    if (!atomic_open(&out[1], paths[1]) || !atomic_finish(&out[1], write_labels(ds, &out[1]))) return 1;
    if (!atomic_open(&out[2], paths[2]) || !atomic_finish(&out[2], write_class_names(ds, &out[2]))) return 2;
    return 3;
}

/* All or nothing: the three files are renamed over their paths only when all three are complete,
 * else every temporary is removed and existing outputs stay as they were. */
static int cmd_export(int argc, char **argv)
{
    export_options o;
    flowpic_dataset ds;
    atomic_file out[3];
    char paths[3][4096];
    int i, k, done, ok;
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
    if ((size_t)snprintf(paths[0], sizeof paths[0], "%s", o.npy) >= sizeof paths[0]) {
        fprintf(stderr, "flowpic: %s: path too long\n", o.npy);
        return EXIT_RUNTIME;
    }
    sibling_path(paths[1], sizeof paths[1], o.npy, "labels.npy");
    sibling_path(paths[2], sizeof paths[2], o.npy, "classes.txt");
    if (!load_datasets(argc - i, (const char *const *)(argv + i), &ds)) return EXIT_RUNTIME;
    if (!o.has_transform) o.transform = ds.config.preset == FLOWPIC_PRESET_TCBENCH ? FLOWPIC_VALUE_SCALE : FLOWPIC_VALUE_RAW;
    done = write_export_files(&ds, &o, paths, out);
    ok = done == 3;
    for (k = 0; k < 3 && ok; k++) ok = atomic_commit(&out[k]);
    for (k = ok ? 3 : k; k < done; k++) atomic_discard(&out[k]); /* a failed rename removed its own */
    if (ok)
        printf("wrote %s (%llu x %llu x %llu, %s), its labels and class names\n", o.npy, (unsigned long long)ds.n_blocks,
               o.res, o.res, o.f32 ? flowpic_transform_name(o.transform) : "uint8 counts clipped at 255");
    else
        fprintf(stderr, "flowpic: %s: not written, nor its labels and class names (all three or none)\n", o.npy);
    flowpic_dataset_free(&ds);
    return ok ? 0 : EXIT_RUNTIME;
}

/* ---- sampling and progress ------------------------------------------------------------------ */

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

static int class_of(const flowpic_dataset *ds, size_t block, const int *model_class)
{
    return model_class ? model_class[ds->blocks[block].label] : (int)ds->blocks[block].label;
}

/* Random undersampling to the smallest class (the paper's balancing); classes are the data
 * set's labels, or model_class[label] when given. */
static void balance_blocks(const flowpic_dataset *ds, size_t *blocks, size_t *n, const int *model_class, flowpic_rng *rng)
{
    size_t *count = (size_t *)calloc(ds->n_classes + 1, sizeof *count), *kept = (size_t *)calloc(ds->n_classes + 1, sizeof *kept);
    size_t smallest = (size_t)-1, i, m = 0;
    uint32_t c;
    shuffle(blocks, *n, rng);
    for (i = 0; i < *n; i++) count[class_of(ds, blocks[i], model_class)]++;
    for (c = 0; c < ds->n_classes; c++)
        if (count[c] && count[c] < smallest) smallest = count[c];
    for (i = 0; i < *n; i++) {
        int l = class_of(ds, blocks[i], model_class);
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
    size_t total;             /* blocks in the epoch */
    flowpic_epoch_stats done; /* of the slices before the current one */
} train_progress;

static void show_train_progress(void *user, size_t slice_done, size_t slice_total, const flowpic_epoch_stats *slice)
{
    train_progress *p = (train_progress *)user;
    double t = now_seconds(), rate;
    size_t done = p->done.samples + slice_done, total = p->total;
    flowpic_epoch_stats all, *s = &all;
    int bar, k;
    if (!p->on || (slice_done < slice_total && t - p->last < 0.16)) return;
    all.samples = done;
    all.correct = p->done.correct + slice->correct;
    all.loss = done ? (p->done.loss * (double)p->done.samples + slice->loss * (double)slice->samples) / (double)done : 0;
    p->last = t;
    rate = t > p->start ? (double)done / (t - p->start) : 0;
    bar = total ? (int)(20 * done / total) : 20;
    fprintf(stderr, "\repoch %d/%d [", p->epoch, p->epochs);
    for (k = 0; k < 20; k++) fputc(k < bar ? '#' : '.', stderr);
    fprintf(stderr, "] %3.0f%%  loss %.4f  acc %.3f  %.0f samples/s  ETA %.0f s ", 100.0 * (double)done / (double)total,
            s->loss, s->samples ? (double)s->correct / (double)s->samples : 0.0, rate,
            rate > 0 ? (double)(total - done) / rate : 0.0);
}

/* One epoch in slices of 16 batches, so that an interruption stops it within a slice: the same
 * batches, dropout draws and Adam steps as a single flowpic_train_epoch call. */
static flowpic_result train_epoch(flowpic_model *m, flowpic_workspace *ws, const flowpic_dataset *ds,
                                  const size_t *blocks, const int *labels, size_t n, int batch, double lr,
                                  flowpic_rng *rng, train_progress *tp, flowpic_epoch_stats *st)
{
    size_t slice = (size_t)batch * 16, at;
    memset(&tp->done, 0, sizeof tp->done);
    tp->total = n;
    for (at = 0; at < n && !interrupted(); at += slice) {
        flowpic_epoch_stats part;
        size_t samples = tp->done.samples;
        flowpic_result r = flowpic_train_epoch(m, ws, ds, blocks + at, labels + at, n - at < slice ? n - at : slice,
                                               batch, lr, rng, show_train_progress, tp, &part);
        if (r != FLOWPIC_OK) return r;
        tp->done.samples += part.samples;
        tp->done.correct += part.correct;
        tp->done.loss = (tp->done.loss * (double)samples + part.loss * (double)part.samples) / (double)tp->done.samples;
    }
    *st = tp->done;
    return FLOWPIC_OK;
}

/* flowpic_predict_blocks in slices of 512 blocks (16 batches), so that an interruption stops eval
 * and classify within a slice; a block's probabilities do not depend on the slicing.
 * FLOWPIC_ERR_IO when interrupted. */
static flowpic_result predict_blocks(const flowpic_model *m, flowpic_workspace *ws, const flowpic_dataset *ds,
                                     const size_t *blocks, size_t n, float *probs)
{
    const size_t slice = 512;
    size_t at;
    for (at = 0; at < n; at += slice) {
        flowpic_result r;
        if (interrupted()) return FLOWPIC_ERR_IO;
        r = flowpic_predict_blocks(m, ws, ds, blocks + at, n - at < slice ? n - at : slice, probs + at * m->n_classes);
        if (r != FLOWPIC_OK) return r;
    }
    return FLOWPIC_OK;
}

/* ---- fitting: the training recipe of train and experiment ------------------------------------ */

typedef struct fit_setup {
    unsigned long long epochs, batch, patience; /* patience 0: run every epoch */
    double lr;
    int keep_best;          /* restore the weights of the best validation epoch */
    int balanced_loss;      /* the validation criterion: mean over classes of each class's mean loss */
    int oversample;         /* each epoch, repeat random blocks of smaller classes up to the largest */
    flowpic_augment aug;    /* applied to each training sample, drawn anew every epoch */
    int progress;           /* a progress bar on stderr */
    int log;                /* one TSV line per epoch on stdout */
    const int *model_class; /* data-set label -> model class; NULL: the same */
    const char *cmd, *output; /* for messages: the command, and the file an interruption leaves unwritten */
} fit_setup;

typedef struct split_scores {
    double loss, balanced_loss, acc, balanced;
} split_scores;

/* Loss, balanced loss, accuracy and balanced accuracy of the model on blocks of ds. */
static int evaluate_split(const flowpic_model *m, flowpic_workspace *ws, const flowpic_dataset *ds, const size_t *blocks,
                          size_t n, const fit_setup *s, split_scores *out)
{
    float *probs = (float *)malloc((n ? n : 1) * m->n_classes * sizeof *probs);
    size_t i, correct = 0, *hit = (size_t *)calloc(m->n_classes, sizeof *hit), *all = (size_t *)calloc(m->n_classes, sizeof *all);
    double *class_loss = (double *)calloc(m->n_classes, sizeof *class_loss), sum = 0;
    uint32_t c, present = 0;
    int ok = probs && hit && all && class_loss && flowpic_predict_blocks(m, ws, ds, blocks, n, probs) == FLOWPIC_OK;
    memset(out, 0, sizeof *out);
    for (i = 0; ok && i < n; i++) {
        const float *p = probs + i * m->n_classes;
        int label = class_of(ds, blocks[i], s->model_class);
        uint32_t best = 0;
        double ce = -log(p[label] > 1e-30f ? (double)p[label] : 1e-30);
        for (c = 1; c < m->n_classes; c++)
            if (p[c] > p[best]) best = c;
        sum += ce;
        class_loss[label] += ce;
        correct += best == (uint32_t)label;
        all[label]++;
        hit[label] += best == (uint32_t)label;
    }
    for (c = 0; ok && c < m->n_classes; c++)
        if (all[c]) {
            present++;
            out->balanced += (double)hit[c] / (double)all[c];
            out->balanced_loss += class_loss[c] / (double)all[c];
        }
    if (n) {
        out->loss = sum / (double)n;
        out->acc = (double)correct / (double)n;
    }
    if (present) {
        out->balanced /= present;
        out->balanced_loss /= present;
    }
    free(probs);
    free(hit);
    free(all);
    free(class_loss);
    return ok;
}

/* The blocks of one epoch, in order: train[] shuffled, plus with oversampling random repeats of
 * each smaller class's blocks up to the largest class's count. Returns the count. */
static size_t epoch_blocks(const flowpic_dataset *ds, const size_t *train, size_t n, const fit_setup *s, uint32_t classes,
                           flowpic_rng *rng, size_t *order)
{
    size_t i, m = n, *count, *first, *members, largest = 0;
    uint32_t c;
    memcpy(order, train, n * sizeof *order);
    if (s->oversample && (count = (size_t *)calloc(2 * (size_t)classes + 1, sizeof *count)) != 0) {
        first = count + classes;
        members = (size_t *)malloc((n + 1) * sizeof *members);
        for (i = 0; i < n; i++) count[class_of(ds, train[i], s->model_class)]++;
        for (c = 0; c < classes; c++) {
            first[c + 1] = first[c] + count[c];
            if (count[c] > largest) largest = count[c];
        }
        for (c = 0; c < classes; c++) count[c] = 0;
        for (i = 0; members && i < n; i++) {
            int k = class_of(ds, train[i], s->model_class);
            members[first[k] + count[k]++] = train[i];
        }
        for (c = 0; members && c < classes; c++) {
            size_t extra;
            for (extra = count[c]; count[c] && extra < largest; extra++)
                order[m++] = members[first[c] + (size_t)(flowpic_rng_uniform(rng) * (double)count[c])];
        }
        free(members);
        free(count);
    }
    shuffle(order, m, rng);
    return m;
}

/* An empty data set cut like ds, with its classes and one flow to hang new blocks on. */
static int scratch_dataset(const flowpic_dataset *ds, flowpic_dataset *out, uint32_t *flow)
{
    uint32_t c, source;
    uint16_t label;
    flowpic_key none;
    int ok = 1;
    memset(&none, 0, sizeof none);
    flowpic_dataset_init(out, &ds->config);
    for (c = 0; ok && c < ds->n_classes; c++) ok = flowpic_dataset_class(out, ds->classes[c], &label) == FLOWPIC_OK;
    ok = ok && flowpic_dataset_source(out, "scratch", &source) == FLOWPIC_OK &&
         flowpic_dataset_add_flow(out, &none, source, 0, flow) == FLOWPIC_OK;
    if (!ok) flowpic_dataset_free(out);
    return ok;
}

/* A data set of the augmented packets of blocks[0 .. n) of ds, block i being blocks[i]. */
static int augment_blocks(const flowpic_dataset *ds, const size_t *blocks, size_t n, const flowpic_augment *aug,
                          flowpic_rng *rng, flowpic_dataset *out)
{
    flowpic_pkt *buf = 0;
    size_t cap = 0, i;
    uint32_t flow;
    int ok = scratch_dataset(ds, out, &flow);
    for (i = 0; ok && i < n; i++) {
        const flowpic_ds_block *b = &ds->blocks[blocks[i]];
        flowpic_block nb;
        if (b->n_packets > cap) {
            flowpic_pkt *nbuf = (flowpic_pkt *)realloc(buf, b->n_packets * sizeof *buf);
            if (!nbuf) {
                ok = 0;
                break;
            }
            buf = nbuf;
            cap = b->n_packets;
        }
        memset(&nb, 0, sizeof nb);
        nb.index = b->index;
        nb.start_ns = b->start_ns;
        nb.packets = buf;
        nb.n_packets = flowpic_augment_packets(aug, ds->config.block_ns, flowpic_dataset_block_packets(ds, blocks[i]),
                                               b->n_packets, buf, rng);
        ok = flowpic_dataset_add_block(out, flow, b->label, &nb) == FLOWPIC_OK;
    }
    free(buf);
    if (!ok && out->n_classes) flowpic_dataset_free(out);
    return ok;
}

/* Trains m on train[] of ds for s->epochs, validating on val[] of vds after each epoch (when
 * n_val), early stopping after s->patience epochs without a better validation score and keeping
 * the best weights when asked. 1 on success; *out gets the best validation score, the epochs
 * run and the best epoch. */
typedef struct fit_result {
    double best_score;                      /* 1e300 without validation */
    unsigned long long epochs, best_epoch;  /* best_epoch 0: without validation */
} fit_result;

static int fit(flowpic_model *m, const flowpic_dataset *ds, const size_t *train, size_t n_train, const flowpic_dataset *vds,
               const size_t *val, size_t n_val, const fit_setup *s, flowpic_rng *rng, fit_result *out)
{
    flowpic_workspace ws, ews;
    size_t cap = n_train * (s->oversample ? m->n_classes : 1) + 1, *order = (size_t *)malloc(cap * sizeof *order);
    size_t *ident = (size_t *)malloc(cap * sizeof *ident), n, i;
    int *labels = (int *)malloc(cap * sizeof *labels), ok = 1;
    float *best = (float *)malloc(m->net.num_params * sizeof *best);
    unsigned long long e, since_best = 0;
    double best_val = 1e300;
    int augmenting = flowpic_augment_active(&s->aug);
    memset(out, 0, sizeof *out);
    memset(&ws, 0, sizeof ws);
    memset(&ews, 0, sizeof ews);
    if (!order || !ident || !labels || !best || flowpic_model_workspace_init(&ws, m, (int)s->batch, FLOWPIC_WS_TRAIN) != FLOWPIC_OK ||
        flowpic_model_workspace_init(&ews, m, (int)s->batch, 0) != FLOWPIC_OK) {
        fprintf(stderr, "flowpic: out of memory for a batch of %llu\n", s->batch);
        ok = 0;
    }
    for (i = 0; ok && i < cap; i++) ident[i] = i;
    for (e = 1; ok && e <= s->epochs; e++) {
        train_progress tp;
        flowpic_epoch_stats st;
        flowpic_dataset aug;
        const flowpic_dataset *eds = ds;
        const size_t *eblocks = order;
        split_scores v;
        double score;
        memset(&st, 0, sizeof st);
        tp.on = s->progress;
        tp.epoch = (int)e;
        tp.epochs = (int)s->epochs;
        tp.start = tp.last = now_seconds();
        n = epoch_blocks(ds, train, n_train, s, m->n_classes, rng, order);
        for (i = 0; i < n; i++) labels[i] = class_of(ds, order[i], s->model_class);
        if (augmenting) {
            if (!augment_blocks(ds, order, n, &s->aug, rng, &aug)) {
                fprintf(stderr, "flowpic: out of memory for augmented blocks\n");
                ok = 0;
                break;
            }
            eds = &aug;
            eblocks = ident;
        }
        if (train_epoch(m, &ws, eds, eblocks, labels, n, (int)s->batch, s->lr, rng, &tp, &st) != FLOWPIC_OK) {
            fprintf(stderr, "\nflowpic: training failed\n");
            ok = 0;
        }
        if (augmenting) flowpic_dataset_free(&aug);
        if (ok && interrupted()) {
            fprintf(stderr, "%sflowpic: %s: interrupted in epoch %llu", tp.on ? "\n" : "", s->cmd, e);
            if (s->output) fprintf(stderr, "; %s not written", s->output);
            fputc('\n', stderr);
            ok = 0;
        }
        if (!ok) break;
        if (tp.on) fputc('\n', stderr);
        memset(&v, 0, sizeof v);
        if (n_val && !evaluate_split(m, &ews, vds, val, n_val, s, &v)) {
            ok = 0;
            break;
        }
        if (s->log) {
            printf("%llu\t%.4f\t%.4f\t", e, st.loss, st.samples ? (double)st.correct / (double)st.samples : 0.0);
            if (n_val) printf("%.4f\t%.4f\t%.4f", s->balanced_loss ? v.balanced_loss : v.loss, v.acc, v.balanced);
            else printf("-\t-\t-");
            printf("\t%.1f\n", now_seconds() - tp.start);
            fflush(stdout);
        }
        if (!n_val) continue;
        score = s->balanced_loss ? v.balanced_loss : v.loss;
        if (score < best_val) {
            best_val = score;
            out->best_epoch = e;
            since_best = 0;
            memcpy(best, m->net.params, m->net.num_params * sizeof *best);
        } else if (s->patience && ++since_best >= s->patience) {
            break;
        }
    }
    if (ok && n_val && s->keep_best && best_val < 1e300) memcpy(m->net.params, best, m->net.num_params * sizeof *best);
    out->best_score = best_val;
    out->epochs = e > s->epochs ? s->epochs : e;
    flowpic_workspace_free(&ws);
    flowpic_workspace_free(&ews);
    free(order);
    free(ident);
    free(labels);
    free(best);
    return ok;
}

/* ---- training recipe: the options train and experiment share --------------------------------- */

typedef struct recipe {
    flowpic_arch arch;
    unsigned long long res, seed, threads;
    flowpic_transform transform;
    int has_res, has_transform, has_batch, has_epochs, has_patience;
    int undersample, paper_schedule;
    fit_setup fit;
} recipe;

static void recipe_defaults(recipe *r)
{
    memset(r, 0, sizeof *r);
    r->arch = FLOWPIC_ARCH_FULL;
    r->seed = 1;
    r->fit.lr = 1e-3;
    r->fit.keep_best = 1;
    r->fit.progress = -1;
    /* the best recipe on ../shared/data (docs/RESULTS.md): every class oversampled to the
     * largest, half of the samples augmented with all five augmentations */
    r->fit.oversample = 1;
    r->fit.aug.share = 0.5;
    r->fit.aug.rtt = 0.5;
    r->fit.aug.shift_s = 1;
    r->fit.aug.loss_s = 0.1;
    r->fit.aug.thin = 0.5;
    r->fit.aug.truncate_s = 10;
}

/* 1 taken, 0 not a recipe option, -1 bad value. */
static int recipe_option(recipe *r, const char *name, const char *value)
{
    flowpic_augment *a = &r->fit.aug;
    if (!strcmp(name, "--net")) {
        if (!strcmp(value, "full")) r->arch = FLOWPIC_ARCH_FULL;
        else if (!strcmp(value, "mini")) r->arch = FLOWPIC_ARCH_MINI;
        else return -1;
        return 1;
    }
    if (!strcmp(name, "--res")) return (r->has_res = parse_ulong(value, FLOWPIC_MAX_RES, &r->res) && r->res) ? 1 : -1;
    if (!strcmp(name, "--transform")) return (r->has_transform = flowpic_transform_from_name(value, &r->transform)) ? 1 : -1;
    if (!strcmp(name, "--epochs")) return (r->has_epochs = parse_ulong(value, 100000, &r->fit.epochs) && r->fit.epochs) ? 1 : -1;
    if (!strcmp(name, "--batch")) return (r->has_batch = parse_ulong(value, 4096, &r->fit.batch) && r->fit.batch) ? 1 : -1;
    if (!strcmp(name, "--patience")) return (r->has_patience = parse_ulong(value, 100000, &r->fit.patience)) ? 1 : -1;
    if (!strcmp(name, "--lr")) return parse_double(value, &r->fit.lr) && r->fit.lr > 0 ? 1 : -1;
    if (!strcmp(name, "--seed")) return parse_ulong(value, UINT64_MAX, &r->seed) ? 1 : -1;
    if (!strcmp(name, "--threads")) return parse_ulong(value, 256, &r->threads) && r->threads ? 1 : -1;
    if (!strcmp(name, "--aug-share")) return parse_double(value, &a->share) && a->share >= 0 && a->share <= 1 ? 1 : -1;
    if (!strcmp(name, "--aug-rtt")) return parse_double(value, &a->rtt) && a->rtt >= 0 && a->rtt < 1 ? 1 : -1;
    if (!strcmp(name, "--aug-shift")) return parse_double(value, &a->shift_s) && a->shift_s >= 0 ? 1 : -1;
    if (!strcmp(name, "--aug-loss")) return parse_double(value, &a->loss_s) && a->loss_s >= 0 ? 1 : -1;
    if (!strcmp(name, "--aug-thin")) return parse_double(value, &a->thin) && a->thin >= 0 && a->thin <= 1 ? 1 : -1;
    if (!strcmp(name, "--aug-truncate")) return parse_double(value, &a->truncate_s) && a->truncate_s >= 0 ? 1 : -1;
    return 0;
}

/* The balancing: undersampling (once, before training), oversampling (each epoch) or neither. */
static int set_balance(recipe *r, int undersample, int oversample)
{
    r->undersample = undersample;
    r->fit.oversample = oversample;
    return 1;
}

static int recipe_flag(recipe *r, const char *name)
{
    if (!strcmp(name, "--balance")) return set_balance(r, 1, 0);
    if (!strcmp(name, "--oversample")) return set_balance(r, 0, 1);
    if (!strcmp(name, "--no-balance")) return set_balance(r, 0, 0);
    if (!strcmp(name, "--no-augment")) {
        memset(&r->fit.aug, 0, sizeof r->fit.aug);
        return 1;
    }
    if (!strcmp(name, "--paper-schedule")) return r->paper_schedule = 1;
    if (!strcmp(name, "--keep-best")) return r->fit.keep_best = 1;
    if (!strcmp(name, "--no-keep-best")) return (r->fit.keep_best = 0) == 0;
    if (!strcmp(name, "--balanced-loss")) return r->fit.balanced_loss = 1;
    if (!strcmp(name, "--progress")) return r->fit.progress = 1;
    if (!strcmp(name, "--no-progress")) return (r->fit.progress = 0) == 0;
    return 0;
}

/* The defaults that depend on the net, once the options are read. */
static void recipe_finish(recipe *r)
{
    if (r->paper_schedule) { /* the paper's recipe: its net at 1500 x 1500, raw counts, batch 128 */
        r->arch = FLOWPIC_ARCH_FULL;
        if (!r->has_batch) r->fit.batch = 128;
    }
    if (!r->has_res) r->res = r->arch == FLOWPIC_ARCH_FULL ? 1500 : 64;
    /* log1p: raw counts let a few busy pixels drown the single packets that short flows are
     * made of, count / 255 leaves those too faint (docs/RESULTS.md); the paper's schedule keeps
     * its raw counts */
    if (!r->has_transform) r->transform = r->paper_schedule ? FLOWPIC_VALUE_RAW : FLOWPIC_VALUE_LOG1P;
    if (!r->has_batch) r->fit.batch = r->arch == FLOWPIC_ARCH_FULL ? 32 : 64;
    if (!r->has_epochs) r->fit.epochs = 15;
    if (r->fit.progress < 0) r->fit.progress = isatty(fileno(stderr));
#ifdef _OPENMP
    if (r->threads) omp_set_num_threads((int)r->threads);
#endif
}

/* A model for ds's classes (or the given class names) with the recipe's net and pictures. */
static int recipe_model(const recipe *r, const flowpic_dataset *ds, const char *const *classes, uint32_t n_classes,
                        flowpic_rng *rng, flowpic_model *m, const char *cmd)
{
    flowpic_prep prep;
    prep.blocks = ds->config;
    prep.res = (uint32_t)r->res;
    prep.transform = r->transform;
    if (flowpic_model_init(m, r->arch, &prep, classes, n_classes, rng) == FLOWPIC_OK) return 1;
    fprintf(stderr, "flowpic: %s: no %s net at %llu x %llu for %u classes (full: 1500; mini: 32 or 64)\n", cmd,
            flowpic_arch_name(r->arch), r->res, r->res, n_classes);
    return 0;
}

static const char recipe_help[] =
    "  --net full|mini        the paper's net (1500 x 1500) or tcbench's LeNet-5 (32 / 64)  [full]\n"
    "  --res R                picture resolution                     [full: 1500, mini: 64]\n"
    "  --transform T          raw, clip255, scale, binary, log1p     [log1p]\n"
    "  --epochs N             passes over the training blocks        [15]\n"
    "  --patience N           stop after N epochs without a better validation score [0: never]\n"
    "  --batch N              blocks per Adam step                   [full: 32, mini: 64]\n"
    "  --lr X                 Adam learning rate                     [0.001]\n"
    "  --seed N               one seed for split, init, order, dropout, augmentation [1]\n"
    "  --threads N            OpenMP threads (builds with OPENMP=1)  [all]\n"
    "  --oversample           each epoch, repeat random blocks of smaller classes up to the largest [on]\n"
    "  --balance              undersample every class to the smallest instead (the paper's recipe)\n"
    "  --no-balance           neither\n"
    "  --balanced-loss        validate on the mean over classes of each class's loss\n"
    "  --keep-best, --no-keep-best  keep the weights of the best validation score [on]\n"
    "  --paper-schedule       the paper's setup: full net, 1500 x 1500, raw counts, batch 128\n"
    "  --progress, --no-progress    progress bar on stderr   [when stderr is a terminal]\n"
    "augmentations of the training samples, drawn anew each epoch (docs/RESULTS.md); on by\n"
    "default, 0 turns one off, --no-augment all:\n"
    "  --aug-share P          share of the samples augmented         [0.5]\n"
    "  --aug-rtt X            time offsets x U(1 - X, 1 + X)         [0.5, tcbench's]\n"
    "  --aug-shift S          time shift by U(-S, S) seconds         [1, tcbench's]\n"
    "  --aug-loss S           drop the packets within +- S s of a random instant [0.1, tcbench's]\n"
    "  --aug-thin P           drop each packet with probability U(0, P) [0.5]\n"
    "  --aug-truncate S       keep only the first U(S, L) seconds of the window [10]\n";

/* A command's own flags: 1 taken, 0 not its. */
typedef int (*extra_flag_fn)(void *user, const char *name);

/* Parses the recipe options and a command's own (extra, flag); returns the index of the first
 * argument, or -1 after a usage message. */
static int parse_recipe(const char *cmd, recipe *r, int argc, char **argv, extra_option_fn extra, extra_flag_fn flag,
                        void *user)
{
    int i;
    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        int got = recipe_flag(r, argv[i]);
        if (got || (flag && flag(user, argv[i]))) continue;
        got = i + 1 < argc ? recipe_option(r, argv[i], argv[i + 1]) : 0;
        if (!got && extra && i + 1 < argc) got = extra(user, argv[i], argv[i + 1]);
        if (got <= 0) {
            if (got < 0) fail_value(cmd, argv[i], argv[i + 1]);
            else fail_usage(cmd, "unknown option", argv[i]);
            return -1;
        }
        i++;
    }
    recipe_finish(r);
    return i;
}

/* ---- train ----------------------------------------------------------------------------------- */

typedef struct train_options {
    double val_split;
    const char *val_path, *output;
    int has_val_split, group_by_file;
} train_options;

static int train_option(void *user, const char *name, const char *value)
{
    train_options *o = (train_options *)user;
    if (!strcmp(name, "--val-split")) return (o->has_val_split = parse_double(value, &o->val_split) && o->val_split < 1) ? 1 : -1;
    if (!strcmp(name, "--val")) return (o->val_path = value) != 0;
    if (!strcmp(name, "--group-by")) return !strcmp(value, "file") ? (o->group_by_file = 1) : -1;
    if (!strcmp(name, "-o")) return (o->output = value) != 0;
    return 0;
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

static int cmd_train(int argc, char **argv)
{
    recipe r;
    train_options o;
    flowpic_dataset ds, val_ds;
    const flowpic_dataset *vds = &ds;
    flowpic_model m;
    flowpic_rng rng;
    size_t *train = 0, *val = 0, n_train = 0, n_val = 0, i;
    int first, status = 0;
    fit_result fr;
    recipe_defaults(&r);
    memset(&o, 0, sizeof o);
    if ((first = parse_recipe("train", &r, argc, argv, train_option, 0, &o)) < 0) return EXIT_USAGE;
    if (!o.output || first == argc) {
        fail_usage("train", o.output ? "no data set given" : "no output model (-o MODEL)", 0);
        return EXIT_USAGE;
    }
    if (o.val_path && o.has_val_split) {
        fail_usage("train", "give --val-split or --val, not both", 0);
        return EXIT_USAGE;
    }
    if (!load_datasets(argc - first, (const char *const *)(argv + first), &ds)) return EXIT_RUNTIME;
    if (ds.n_classes < 2 || ds.n_blocks < 2) {
        fprintf(stderr, "flowpic: train: need at least two classes and two blocks (have %u, %llu)\n", ds.n_classes,
                (unsigned long long)ds.n_blocks);
        flowpic_dataset_free(&ds);
        return EXIT_RUNTIME;
    }
    flowpic_rng_seed(&rng, r.seed);
    if (!recipe_model(&r, &ds, (const char *const *)ds.classes, ds.n_classes, &rng, &m, "train")) {
        flowpic_dataset_free(&ds);
        return EXIT_USAGE;
    }
    train = (size_t *)malloc((ds.n_blocks + 1) * sizeof *train);
    val = (size_t *)malloc((ds.n_blocks + 1) * sizeof *val);
    if (!train || !val) {
        fprintf(stderr, "flowpic: train: out of memory for %llu blocks\n", (unsigned long long)ds.n_blocks);
        status = 1;
    } else if (o.val_path) {
        size_t *grown = 0;
        if (!load_datasets(1, &o.val_path, &val_ds)) {
            status = 1;
        } else {
            vds = &val_ds; /* freed at the end, whatever happens next */
            if (!flowpic_prep_accepts(&m.prep, &val_ds.config)) {
                fprintf(stderr, "flowpic: %s: cut with other block settings than the training data\n", o.val_path);
                status = 1;
            } else if (!(grown = (size_t *)realloc(val, (val_ds.n_blocks + 1) * sizeof *val))) {
                fprintf(stderr, "flowpic: %s: out of memory\n", o.val_path);
                status = 1;
            }
        }
        for (i = 0; i < ds.n_blocks; i++) train[i] = i;
        n_train = ds.n_blocks;
        if (grown) {
            val = grown;
            for (i = 0; i < val_ds.n_blocks; i++) val[i] = i;
            n_val = val_ds.n_blocks;
        }
    } else {
        split_blocks(&ds, &o, &rng, train, &n_train, val, &n_val);
    }
    if (!status && r.undersample) balance_blocks(&ds, train, &n_train, 0, &rng);
    if (!status) {
        printf("training %s at %llu x %llu (%s) on %llu blocks, validating on %llu, %u classes, batch %llu, lr %g, seed %llu\n",
               flowpic_arch_name(r.arch), r.res, r.res, flowpic_transform_name(r.transform), (unsigned long long)n_train,
               (unsigned long long)n_val, ds.n_classes, r.fit.batch, r.fit.lr, r.seed);
        printf("epoch\ttrain_loss\ttrain_acc\tval_loss\tval_acc\tval_balanced_acc\tseconds\n");
        r.fit.log = 1;
        r.fit.cmd = "train";
        r.fit.output = o.output;
        if (!fit(&m, &ds, train, n_train, vds, val, n_val, &r.fit, &rng, &fr)) status = 1;
    }
    if (!status && n_val && r.fit.keep_best && fr.best_score < 1e300)
        printf("kept the weights of epoch %llu, the lowest validation loss (%.4f)\n", fr.best_epoch, fr.best_score);
    if (!status) {
        uint8_t *data = 0;
        size_t size = 0;
        flowpic_result encoded = flowpic_model_to_memory(&m, &data, &size);
        if (!write_encoded(o.output, encoded, data, size)) {
            status = 1;
        } else {
            printf("wrote %s\n", o.output);
        }
    }
    if (vds == &val_ds) flowpic_dataset_free(&val_ds);
    flowpic_model_free(&m);
    flowpic_dataset_free(&ds);
    free(train);
    free(val);
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
    if (!probs || !conf || flowpic_model_workspace_init(&ws, &m, 32, 0) != FLOWPIC_OK ||
        predict_blocks(&m, &ws, &ds, blocks, n, probs) != FLOWPIC_OK) {
        fprintf(stderr, "flowpic: eval: %s\n", interrupted() ? "interrupted while predicting" : "out of memory");
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

/* ---- online: classify --follow / classify MODEL -, live --------------------------------------
 * Packets go one by one into a flowpic_classifier; each decision is one TSV line, flushed at once.
 * SIGINT / SIGTERM stop the input: open blocks become final decisions, then exit status 0 (for
 * these commands an interruption is the normal end, unlike the abort of "interrupts" above).
 * SIGUSR1 prints the statistics on stderr (they are also printed at the end). */

static volatile sig_atomic_t online_stop, online_stats;

static void online_signal(int sig)
{
    if (sig == SIGUSR1) online_stats = 1;
    else online_stop = 1;
}

/* The one place that installs signal handlers for the online commands. No SA_RESTART: a
 * blocking read or poll returns at once with EINTR. */
static void online_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = online_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, 0);
    sigaction(SIGTERM, &sa, 0);
    sigaction(SIGUSR1, &sa, 0);
}

typedef struct online {
    flowpic_classifier cl;
    flowpic_model model;
    uint64_t drops;            /* live: packets the kernel dropped (ring full) */
    uint64_t skipped;          /* not IPv4/IPv6 TCP/UDP */
    flowpic_packet pending[FLOWPIC_BATCH]; /* packets not yet given to the classifier: they go */
    size_t n_pending;          /* in together (overlapped lookups), at the latest when input pauses */
} online;

static void online_print(void *user, const flowpic_decision *d)
{
    const online *o = (const online *)user;
    print_time(stdout, d->time_ns);
    putchar('\t');
    print_key(&d->key);
    printf("\t%u\t%s\t%s\t%.4f\n", d->block, flowpic_decision_state_name(d->state), o->model.classes[d->label],
           d->confidence);
}

static void online_print_stats(const online *o)
{
    flowpic_classifier_stats s;
    flowpic_classifier_stats_get(&o->cl, &s);
    fprintf(stderr,
            "flowpic: packets %llu (skipped %llu), flows live %llu (peak %llu, total %llu), ended idle %llu, "
            "evicted %llu, decisions partial %llu final %llu flow %llu, batches %llu (second thread %llu), drops %llu\n",
            (unsigned long long)s.packets, (unsigned long long)o->skipped, (unsigned long long)s.flows_live,
            (unsigned long long)s.flows_peak, (unsigned long long)s.flows_total, (unsigned long long)s.flows_idle,
            (unsigned long long)s.flows_evicted, (unsigned long long)s.decisions_partial,
            (unsigned long long)s.decisions_final, (unsigned long long)s.decisions_flow,
            (unsigned long long)s.batches, (unsigned long long)s.batches_threaded, (unsigned long long)o->drops);
}

/* Options of the online classifier: 1 taken (i advanced past a value), 0 not one, -1 bad value
 * (reported). */
static int online_option(const char *cmd, flowpic_classifier_config *c, int argc, char **argv, int *i)
{
    const char *name = argv[*i], *value = *i + 1 < argc ? argv[*i + 1] : 0;
    unsigned long long u;
    double s;
    if (strcmp(name, "--early-packets") && strcmp(name, "--early-after") && strcmp(name, "--idle-timeout") &&
        strcmp(name, "--max-flows") && strcmp(name, "--batch"))
        return 0;
    if (!value) {
        fail_usage(cmd, "missing value for", name);
        return -1;
    }
    (*i)++;
    if (!strcmp(name, "--early-packets") && parse_ulong(value, 0xFFFFFFFFu, &u)) c->early_packets = (uint32_t)u;
    else if (!strcmp(name, "--max-flows") && parse_ulong(value, 0x7FFFFFFFu, &u) && u > 0) c->max_flows = (size_t)u;
    else if (!strcmp(name, "--batch") && parse_ulong(value, 4096, &u) && u > 0) c->batch = (int)u;
    else if (!strcmp(name, "--early-after") && parse_double(value, &s) && s < 1e9) c->early_after_ns = (uint64_t)(s * 1e9);
    else if (!strcmp(name, "--idle-timeout") && parse_double(value, &s) && s < 1e9) c->idle_timeout_ns = (uint64_t)(s * 1e9);
    else {
        fail_value(cmd, name, value);
        return -1;
    }
    return 1;
}

/* Loads the model, starts the classifier and prints the header; 0 after reporting an error.
 * live: each decision line goes out when it is made (live capture, --follow, a pipe); else (a
 * file read once, --stream) stdout keeps its own buffering. */
static int online_start(online *o, const char *model_path, const flowpic_classifier_config *config, int live)
{
    flowpic_result res;
    memset(o, 0, sizeof *o);
    if (!load_model(model_path, &o->model)) return 0;
    res = flowpic_classifier_init(&o->cl, &o->model, config, online_print, o);
    if (res != FLOWPIC_OK) {
        fprintf(stderr, "flowpic: %s: %s\n", model_path, flowpic_result_string(res));
        flowpic_model_free(&o->model);
        return 0;
    }
    if (live) setvbuf(stdout, 0, _IOLBF, 0); /* a decision is seen when it is made */
    online_signals();
    printf("time\tproto\tsrc\tsport\tdst\tdport\tblock\tstate\tlabel\tconfidence\n");
    return 1;
}

/* Gives the waiting packets to the classifier; 0 after reporting an error. */
static int online_send(online *o)
{
    flowpic_result res = flowpic_classifier_add_batch(&o->cl, o->pending, o->n_pending);
    o->n_pending = 0;
    if (res == FLOWPIC_OK) return 1;
    fprintf(stderr, "flowpic: classifier: %s\n", flowpic_result_string(res));
    return 0;
}

/* Flushes the open blocks as final decisions, prints the statistics, frees; the exit status. */
static int online_finish(online *o, int status)
{
    flowpic_result res;
    if (!online_send(o)) status = EXIT_RUNTIME;
    res = flowpic_classifier_flush(&o->cl);
    if (res != FLOWPIC_OK) {
        fprintf(stderr, "flowpic: classifier: %s\n", flowpic_result_string(res));
        status = EXIT_RUNTIME;
    }
    online_print_stats(o);
    flowpic_classifier_free(&o->cl);
    flowpic_model_free(&o->model);
    return status;
}

/* One packet for the classifier (in with the next FLOWPIC_BATCH); 0 after reporting an error. */
static int online_packet(online *o, uint64_t ts_ns, const pcapl_decoded *d, pcapl_skip skip)
{
    if (skip != PCAPL_SKIP_NONE) {
        o->skipped++;
        return 1;
    }
    flowpic_packet_from_decoded(&o->pending[o->n_pending++], ts_ns, d);
    return o->n_pending < FLOWPIC_BATCH || online_send(o);
}

/* Between reads: the waiting packets in, statistics when asked, and the waiting batch classified
 * (its decisions out). */
static int online_idle(online *o, uint64_t now_ns)
{
    flowpic_result res;
    if (!online_send(o)) return 0;
    res = flowpic_classifier_tick(&o->cl, now_ns);
    if (online_stats) {
        online_stats = 0;
        online_print_stats(o);
    }
    if (res == FLOWPIC_OK) return 1;
    fprintf(stderr, "flowpic: classifier: %s\n", flowpic_result_string(res));
    return 0;
}

/* A capture that is still being written (follow) or a pipe: reads wait for more bytes, so a
 * record cut in two by the writer is simply completed later. The end: the pipe closes, or a
 * signal (follow never ends by itself). */
typedef struct stream_source {
    int fd;
    int follow;
    online *o;
    int failed;
} stream_source;

static long stream_read(void *user, void *buf, size_t size)
{
    stream_source *s = (stream_source *)user;
    for (;;) {
        struct pollfd pfd;
        ssize_t n;
        if (online_stop || s->failed) return 0;
        pfd.fd = s->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (!s->follow && poll(&pfd, 1, 200) == 0) { /* a quiet pipe: decide what waits */
            if (!online_idle(s->o, 0)) s->failed = 1;
            continue;
        }
        n = read(s->fd, buf, size);
        if (n > 0) return (long)n;
        if (n < 0 && errno != EINTR && errno != EAGAIN) return -1;
        if (n == 0 && !s->follow) return 0;
        if (n == 0) { /* the end of the file for now: wait for the writer */
            struct timespec wait = {0, 100 * 1000 * 1000};
            if (!online_idle(s->o, 0)) s->failed = 1;
            nanosleep(&wait, 0);
        }
    }
}

/* classify --follow MODEL FILE, classify MODEL -: the online classifier over a capture stream. */
static int classify_stream(const char *model_path, const char *path, int follow, const flowpic_classifier_config *c)
{
    online o;
    stream_source src;
    pcapl_reader r;
    pcapl_packet pkt;
    pcapl_decoded d;
    pcapl_result res;
    int status = 0;
    memset(&src, 0, sizeof src);
    src.follow = follow;
    src.fd = strcmp(path, "-") ? open(path, O_RDONLY) : 0;
    if (src.fd < 0) {
        fprintf(stderr, "flowpic: %s: cannot open: %s\n", path, strerror(errno));
        return EXIT_RUNTIME;
    }
    if (!online_start(&o, model_path, c, follow || !strcmp(path, "-"))) {
        if (src.fd) close(src.fd);
        return EXIT_RUNTIME;
    }
    src.o = &o;
#ifdef _OPENMP /* a second thread classifies full batches while this one reads (ONLINE.md) */
#pragma omp parallel num_threads(2) if (omp_get_max_threads() > 1)
#pragma omp single
#endif
    {
        res = pcapl_open_callback(&r, stream_read, &src);
        if (res == PCAPL_OK) {
            while ((res = pcapl_next(&r, &pkt)) == PCAPL_OK)
                if (!online_packet(&o, pkt.ts_ns, &d, pcapl_decode(&pkt, &d))) break;
        }
    }
    if (src.failed || res == PCAPL_OK) status = EXIT_RUNTIME; /* reported where it happened */
    else if (res != PCAPL_END && !online_stop) {
        report_reader_error(path, &r);
        status = EXIT_RUNTIME;
    }
    /* (stopped by a signal in the middle of a record: the packets before it count) */
    if (res != PCAPL_ERR_OPEN) pcapl_close(&r);
    if (src.fd) close(src.fd);
    return online_finish(&o, status);
}

/* ---- live ----------------------------------------------------------------------------------- */

#ifdef __linux__
/* A TPACKET_V3 receive ring on an AF_PACKET socket: the kernel fills blocks of packets, we
 * hand each block back when its packets are read. No copy, no libpcap. */
enum { RING_BLOCK_SIZE = 1 << 20, RING_BLOCKS = 16, RING_FRAME_SIZE = 2048, RING_TIMEOUT_MS = 100 };

typedef struct live_ring {
    int fd;
    uint8_t *map;
    size_t map_size;
} live_ring;

/* 0 and the ring ready, or 1 after reporting an error. */
static int live_open(live_ring *ring, const char *interface, int promisc)
{
    int version = TPACKET_V3;
    struct tpacket_req3 req;
    struct sockaddr_ll addr;
    unsigned ifindex = 0;
    ring->map = 0;
    ring->fd = -1;
    if (interface && !(ifindex = if_nametoindex(interface))) {
        fprintf(stderr, "flowpic: live: interface '%s': %s\n", interface, strerror(errno));
        return 1;
    }
    ring->fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (ring->fd < 0) {
        int e = errno;
        fprintf(stderr, "flowpic: live: cannot open a packet socket: %s%s\n", strerror(e),
                e == EPERM || e == EACCES ? " (needs root or the CAP_NET_RAW capability)" : "");
        return 1;
    }
    memset(&req, 0, sizeof req);
    req.tp_block_size = RING_BLOCK_SIZE;
    req.tp_block_nr = RING_BLOCKS;
    req.tp_frame_size = RING_FRAME_SIZE;
    req.tp_frame_nr = RING_BLOCK_SIZE / RING_FRAME_SIZE * RING_BLOCKS;
    req.tp_retire_blk_tov = RING_TIMEOUT_MS;
    ring->map_size = (size_t)RING_BLOCK_SIZE * RING_BLOCKS;
    memset(&addr, 0, sizeof addr);
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(ETH_P_ALL);
    addr.sll_ifindex = (int)ifindex;
    if (setsockopt(ring->fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) ||
        setsockopt(ring->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) ||
        (ring->map = (uint8_t *)mmap(0, ring->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring->fd, 0)) ==
            (uint8_t *)MAP_FAILED ||
        bind(ring->fd, (struct sockaddr *)&addr, sizeof addr)) {
        fprintf(stderr, "flowpic: live: cannot set up the TPACKET_V3 ring: %s\n", strerror(errno));
        if (ring->map == (uint8_t *)MAP_FAILED) ring->map = 0;
        return 1;
    }
    if (promisc && ifindex) {
        struct packet_mreq mr;
        memset(&mr, 0, sizeof mr);
        mr.mr_ifindex = (int)ifindex;
        mr.mr_type = PACKET_MR_PROMISC;
        if (setsockopt(ring->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr)) {
            fprintf(stderr, "flowpic: live: cannot enable promiscuous mode: %s\n", strerror(errno));
            return 1;
        }
    }
    return 0;
}

static void live_close(live_ring *ring)
{
    if (ring->map) munmap(ring->map, ring->map_size);
    if (ring->fd >= 0) close(ring->fd);
}

/* The pcap link type of a packet's device type: Ethernet framing or bare IP. */
static uint32_t live_linktype(unsigned short hatype)
{
    if (hatype == ARPHRD_ETHER || hatype == ARPHRD_LOOPBACK) return 1;   /* LINKTYPE_ETHERNET */
    if (hatype == ARPHRD_NONE || hatype == ARPHRD_TUNNEL || hatype == ARPHRD_TUNNEL6 || hatype == ARPHRD_IPGRE)
        return 101; /* LINKTYPE_RAW */
    return 0xFFFFFFFFu; /* unknown: skipped */
}

/* The packets of one ring block. 0 after reporting an error. */
static int live_block(online *o, const struct tpacket_block_desc *desc)
{
    const uint8_t *base = (const uint8_t *)desc;
    uint32_t i, offset = desc->hdr.bh1.offset_to_first_pkt;
    for (i = 0; i < desc->hdr.bh1.num_pkts; i++) {
        const struct tpacket3_hdr *h = (const struct tpacket3_hdr *)(const void *)(base + offset);
        const struct sockaddr_ll *ll =
            (const struct sockaddr_ll *)(const void *)((const uint8_t *)h + ((sizeof *h + TPACKET_ALIGNMENT - 1u) & ~(size_t)(TPACKET_ALIGNMENT - 1u)));
        uint64_t ts = (uint64_t)h->tp_sec * 1000000000u + h->tp_nsec;
        pcapl_decoded d;
        pcapl_skip skip = pcapl_decode_frame(live_linktype(ll->sll_hatype), (const uint8_t *)h + h->tp_mac,
                                             h->tp_snaplen, h->tp_len, &d);
        if (!online_packet(o, ts, &d, skip)) return 0;
        offset += h->tp_next_offset;
    }
    return online_send(o); /* the block's packets wait no longer */
}

static uint64_t wall_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int live_run(online *o, live_ring *ring)
{
    unsigned current = 0;
    while (!online_stop) {
        struct tpacket_block_desc *desc =
            (struct tpacket_block_desc *)(void *)(ring->map + (size_t)current * RING_BLOCK_SIZE);
        if (!(__atomic_load_n(&desc->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            struct pollfd pfd;
            pfd.fd = ring->fd;
            pfd.events = POLLIN | POLLERR;
            pfd.revents = 0;
            poll(&pfd, 1, RING_TIMEOUT_MS);
            if (!online_idle(o, wall_ns())) return EXIT_RUNTIME;
            continue;
        }
        if (!live_block(o, desc)) return EXIT_RUNTIME;
        __atomic_store_n(&desc->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        current = (current + 1) % RING_BLOCKS;
    }
    return 0;
}

static uint64_t live_drops(const live_ring *ring)
{
    struct tpacket_stats_v3 st;
    socklen_t len = sizeof st;
    memset(&st, 0, sizeof st);
    if (getsockopt(ring->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len)) return 0;
    return st.tp_drops;
}
#endif

static int cmd_live(int argc, char **argv)
{
    flowpic_classifier_config config;
    const char *interface = 0;
    int i, promisc = 0;
    flowpic_classifier_config_default(&config);
    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        int taken = online_option("live", &config, argc, argv, &i);
        if (taken < 0) return EXIT_USAGE;
        if (taken) continue;
        if (!strcmp(argv[i], "--promisc")) promisc = 1;
        else if (!strcmp(argv[i], "--interface") && i + 1 < argc) interface = argv[++i];
        else if (!strcmp(argv[i], "--vote") && i + 1 < argc && (!strcmp(argv[i + 1], "mean") || !strcmp(argv[i + 1], "majority")))
            config.vote = !strcmp(argv[++i], "mean") ? FLOWPIC_VOTE_MEAN : FLOWPIC_VOTE_MAJORITY;
        else {
            fail_usage("live", "unknown option or bad value", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (argc - i != 1) {
        fail_usage("live", "give one model", 0);
        return EXIT_USAGE;
    }
#ifdef __linux__
    {
        live_ring ring;
        online o;
        int status;
        if (live_open(&ring, interface, promisc)) {
            live_close(&ring);
            return EXIT_RUNTIME;
        }
        if (!online_start(&o, argv[i], &config, 1)) {
            live_close(&ring);
            return EXIT_RUNTIME;
        }
#ifdef _OPENMP /* a second thread classifies full batches while this one captures */
#pragma omp parallel num_threads(2) if (omp_get_max_threads() > 1)
#pragma omp single
#endif
        status = live_run(&o, &ring);
        o.drops = live_drops(&ring);
        live_close(&ring);
        return online_finish(&o, status);
    }
#else
    (void)interface;
    (void)promisc;
    fprintf(stderr, "flowpic: live: needs Linux (AF_PACKET)\n");
    return EXIT_RUNTIME;
#endif
}

/* ---- classify -------------------------------------------------------------------------------- */

/* The flow's decision from its blocks' probabilities: the library's running vote (majority of
 * the block votes, ties to the larger summed probability, or the largest mean probability), the
 * same the online classifier gives a flow. */
static uint32_t vote(const float *probs, size_t n, uint32_t classes, int mean, double *confidence)
{
    uint32_t votes[FLOWPIC_NN_MAX_CLASSES];
    double sums[FLOWPIC_NN_MAX_CLASSES];
    size_t i;
    memset(votes, 0, classes * sizeof *votes);
    memset(sums, 0, classes * sizeof *sums);
    for (i = 0; i < n; i++) flowpic_vote_add(votes, sums, probs + i * classes, classes);
    return flowpic_vote_result(votes, sums, classes, mean ? FLOWPIC_VOTE_MEAN : FLOWPIC_VOTE_MAJORITY, confidence);
}

static int cmd_classify(int argc, char **argv)
{
    flowpic_model m;
    flowpic_workspace ws;
    int first, mean = 0, per_block = 0, status = 0, f, follow = 0, stream = 0, streaming_options = 0;
    uint32_t c;
    flowpic_classifier_config online_config;
    flowpic_classifier_config_default(&online_config);
    for (first = 1; first < argc && argv[first][0] == '-' && argv[first][1]; first++) {
        int taken = online_option("classify", &online_config, argc, argv, &first);
        if (taken < 0) return EXIT_USAGE;
        if (taken) streaming_options = 1;
        else if (!strcmp(argv[first], "--per-block")) per_block = 1;
        else if (!strcmp(argv[first], "--follow")) follow = 1;
        else if (!strcmp(argv[first], "--stream")) stream = 1;
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
    if (follow || stream || !strcmp(argv[first + 1], "-")) { /* online: decisions as they come */
        if (argc - first != 2 || per_block) {
            fail_usage("classify", "online classification (--follow, --stream, '-') takes one capture and no --per-block", 0);
            return EXIT_USAGE;
        }
        online_config.vote = mean ? FLOWPIC_VOTE_MEAN : FLOWPIC_VOTE_MAJORITY;
        return classify_stream(argv[first], argv[first + 1], follow, &online_config);
    }
    if (streaming_options) {
        fail_usage("classify", "--early-*, --idle-timeout, --max-flows and --batch need --follow, --stream or '-'", 0);
        return EXIT_USAGE;
    }
    if (!load_model(argv[first], &m)) return EXIT_RUNTIME;
    if (flowpic_model_workspace_init(&ws, &m, 32, 0) != FLOWPIC_OK) {
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
    for (f = first + 1; f < argc && !interrupted(); f++) {
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
        if (!blocks || !probs || predict_blocks(&m, &ws, &ds, blocks, ds.n_blocks, probs) != FLOWPIC_OK) {
            fprintf(stderr, "flowpic: %s: %s\n", argv[f], interrupted() ? "interrupted while predicting" : "prediction failed");
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

/* ---- experiment ------------------------------------------------------------------------------ */

/* The paper's section VI as one command (docs/RESULTS.md): k folds grouped by capture file (or
 * a random block split), several seeds, and per run block accuracy, balanced accuracy, flow
 * accuracy (majority and mean-probability votes), short-flow accuracy and per-class recall. */

enum { TASK_MULTICLASS, TASK_ONE_VS_ALL, TASK_CONDITIONS, TASK_LEAVE_OUT };
#define EXP_MAX_SEEDS 16

typedef struct exp_options {
    int task, random_split, list_folds;
    unsigned long long k, min_packets, seeds[EXP_MAX_SEEDS];
    int n_seeds;
    double short_s, short_keep, val_share;
    const char *folds_path, *conditions_path, *json_path, *confusion_png;
} exp_options;

/* Everything the runs share: the data, the fold and group of each source, the first window of
 * each flow (for short flows), the model's classes. */
typedef struct exp_context {
    const recipe *r;
    const exp_options *o;
    const flowpic_dataset *ds;
    int *fold;            /* per block; -1: in no fold (its file is not in the fold table) */
    int *group;           /* per source: condition or capture group; -1: none */
    char **group_names;
    int n_groups;
    size_t *first_window; /* per flow: its block with index 0, or (size_t)-1 */
    char *is_block;       /* per block: at least min_packets packets */
    const char *const *classes;
    uint32_t n_classes;
    const int *model_class;
    FILE *json;
    int json_runs;
} exp_context;

/* Confusion matrices of one run (rows: truth, columns: decision), n_classes x n_classes each. */
enum { CM_BLOCK, CM_FLOW, CM_FLOW_MEAN, CM_SHORT, CM_FLOW_BOTH, CM_SHORT_BOTH, CM_COUNT };
typedef struct exp_run {
    size_t *cm[CM_COUNT];
    uint32_t n;
    size_t train, val, test;
    double seconds;
    fit_result fit;
} exp_run;

static double cm_accuracy(const size_t *cm, uint32_t n)
{
    size_t hit = 0, all = 0, i;
    for (i = 0; i < (size_t)n * n; i++) {
        all += cm[i];
        if (i / n == i % n) hit += cm[i];
    }
    return all ? (double)hit / (double)all : 0;
}

/* Recall of class c, -1 when it has no samples. */
static double cm_recall(const size_t *cm, uint32_t n, uint32_t c)
{
    size_t row = 0, k;
    for (k = 0; k < n; k++) row += cm[c * n + k];
    return row ? (double)cm[c * n + c] / (double)row : -1;
}

static double cm_balanced(const size_t *cm, uint32_t n)
{
    double sum = 0;
    uint32_t c, present = 0;
    for (c = 0; c < n; c++) {
        double r = cm_recall(cm, n, c);
        if (r >= 0) sum += r, present++;
    }
    return present ? sum / present : 0;
}

static int exp_run_init(exp_run *run, uint32_t n)
{
    int k, ok = 1;
    memset(run, 0, sizeof *run);
    run->n = n;
    for (k = 0; k < CM_COUNT; k++) ok = (run->cm[k] = (size_t *)calloc((size_t)n * n, sizeof(size_t))) != 0 && ok;
    return ok;
}

static void exp_run_free(exp_run *run)
{
    int k;
    for (k = 0; k < CM_COUNT; k++) free(run->cm[k]);
}

static void exp_run_add(exp_run *sum, const exp_run *run)
{
    int k;
    size_t i;
    for (k = 0; k < CM_COUNT; k++)
        for (i = 0; i < (size_t)run->n * run->n; i++) sum->cm[k][i] += run->cm[k][i];
}

static int exp_class(const exp_context *x, size_t block)
{
    return class_of(x->ds, block, x->model_class);
}

static uint32_t top_class(const float *p, uint32_t n)
{
    uint32_t c, best = 0;
    for (c = 1; c < n; c++)
        if (p[c] > p[best]) best = c;
    return best;
}

/* Validation blocks from the training blocks: val_share of each class's training files, rounded
 * half to even, at least one, none when the class has fewer than three, drawn among the files that hold at most a
 * third of the class's training blocks, as the plain pipeline does; a random share of blocks for
 * a random split. Moves them from train[] to val[]. */
static void exp_pick_validation(const exp_context *x, size_t *train, size_t *n_train, size_t *val, size_t *n_val,
                                flowpic_rng *rng)
{
    const flowpic_dataset *ds = x->ds;
    size_t i, m = 0, *per_source = (size_t *)calloc(ds->n_sources + 1, sizeof(size_t)), *files;
    char *is_val = (char *)calloc(ds->n_sources + 1, 1);
    int *source_class = (int *)malloc((ds->n_sources + 1) * sizeof(int));
    uint32_t c, s;
    *n_val = 0;
    if (!per_source || !is_val || !source_class || !(files = (size_t *)malloc((ds->n_sources + 1) * sizeof *files))) {
        free(per_source), free(is_val), free(source_class);
        return;
    }
    if (x->o->random_split) {
        shuffle(train, *n_train, rng);
        for (i = 0; i < *n_train; i++) {
            if ((double)*n_val < x->o->val_share * (double)*n_train) val[(*n_val)++] = train[i];
            else train[m++] = train[i];
        }
        *n_train = m;
    } else {
        for (s = 0; s < ds->n_sources; s++) source_class[s] = -1;
        for (i = 0; i < *n_train; i++) {
            uint32_t src = ds->flows[ds->blocks[train[i]].flow].source;
            per_source[src]++;
            source_class[src] = ds->blocks[train[i]].label;
        }
        for (c = 0; c < ds->n_classes; c++) {
            size_t n_files = 0, n_cand = 0, blocks = 0, want;
            for (s = 0; s < ds->n_sources; s++)
                if (source_class[s] == (int)c) n_files++, blocks += per_source[s];
            for (s = 0; s < ds->n_sources; s++)
                if (source_class[s] == (int)c && 3 * per_source[s] <= blocks) files[n_cand++] = s;
            want = n_files < 3 ? 0 : (size_t)nearbyint(x->o->val_share * (double)n_files); /* half to even */
            if (n_files >= 3 && !want && x->o->val_share > 0) want = 1;
            shuffle(files, n_cand, rng);
            for (i = 0; i < n_cand && i < want; i++) is_val[files[i]] = 1;
        }
        for (i = 0; i < *n_train; i++) {
            if (is_val[ds->flows[ds->blocks[train[i]].flow].source]) val[(*n_val)++] = train[i];
            else train[m++] = train[i];
        }
        *n_train = m;
    }
    free(per_source);
    free(is_val);
    free(source_class);
    free(files);
}

/* The short-flow version of flow f: its first window's packets in the first short_s seconds,
 * floor(n * (1 - keep)) of them dropped at random (seeded per flow), as one block of out. */
static int add_short_flow(const exp_context *x, size_t f, uint64_t seed, flowpic_dataset *out, uint32_t out_flow)
{
    const flowpic_dataset *ds = x->ds;
    size_t b = x->first_window[f], i, n = 0, drop;
    const flowpic_pkt *p;
    flowpic_pkt *kept;
    flowpic_rng rng;
    flowpic_block nb;
    int ok;
    if (b == (size_t)-1) return 1;
    p = flowpic_dataset_block_packets(ds, b);
    kept = (flowpic_pkt *)malloc((ds->blocks[b].n_packets + 1) * sizeof *kept);
    if (!kept) return 0;
    for (i = 0; i < ds->blocks[b].n_packets; i++)
        if ((double)FLOWPIC_PKT_OFFSET(p[i]) < x->o->short_s * 1e9) kept[n++] = p[i];
    flowpic_rng_seed(&rng, seed ^ mix64(f + 1));
    drop = (size_t)((double)n * (1 - x->o->short_keep));
    while (drop--) { /* remove a random one, order kept */
        size_t j = (size_t)(flowpic_rng_uniform(&rng) * (double)n);
        memmove(kept + j, kept + j + 1, (n - j - 1) * sizeof *kept);
        n--;
    }
    memset(&nb, 0, sizeof nb);
    nb.start_ns = ds->blocks[b].start_ns;
    nb.packets = kept;
    nb.n_packets = (uint32_t)n;
    ok = flowpic_dataset_add_block(out, out_flow, ds->blocks[b].label, &nb) == FLOWPIC_OK;
    free(kept);
    return ok;
}

/* 1 when flows a and b of ds are the two directions of one conversation in one capture. */
static int reverse_flows(const flowpic_dataset *ds, uint32_t a, uint32_t b)
{
    const flowpic_key *x = &ds->flows[a].key, *y = &ds->flows[b].key;
    return ds->flows[a].source == ds->flows[b].source && x->proto == y->proto && x->ip_version == y->ip_version &&
           x->sport == y->dport && x->dport == y->sport && !memcmp(x->src, y->dst, 16) && !memcmp(x->dst, y->src, 16);
}

/* One test flow: its blocks test[first .. end), class, short picture (or -1), other direction. */
typedef struct exp_flow {
    size_t first, end;
    uint32_t truth;
    long short_index, partner;
} exp_flow;

/* Flow-level decisions of the test blocks (test[] keeps a flow's blocks together): majority and
 * mean-probability votes, the short version of each flow, and both again with the blocks (or
 * the short picture) of the flow's other direction when it is a test flow too. */
static int exp_score_flows(const exp_context *x, const flowpic_model *m, flowpic_workspace *ws, const size_t *test,
                           size_t n_test, const float *probs, uint64_t seed, exp_run *run)
{
    const flowpic_dataset *ds = x->ds;
    flowpic_dataset shorts;
    size_t start, i, j, n_short = 0, n_flows = 0;
    uint32_t flow, C = m->n_classes, c;
    size_t *blocks = (size_t *)malloc((n_test + 1) * sizeof *blocks);
    exp_flow *fl = (exp_flow *)malloc((n_test + 1) * sizeof *fl);
    float *sp = (float *)malloc((n_test + 1) * C * sizeof *sp), *both = (float *)malloc((n_test + 1) * C * sizeof *both);
    int ok = blocks && fl && sp && both && scratch_dataset(ds, &shorts, &flow);
    if (!ok) {
        free(blocks), free(fl), free(sp), free(both);
        return 0;
    }
    for (start = 0; ok && start < n_test; start = i) {
        uint32_t f = ds->blocks[test[start]].flow;
        exp_flow *e = &fl[n_flows++];
        for (i = start; i < n_test && ds->blocks[test[i]].flow == f; i++) {}
        e->first = start;
        e->end = i;
        e->truth = (uint32_t)exp_class(x, test[start]);
        e->short_index = e->partner = -1;
        if (x->first_window[f] != (size_t)-1) {
            ok = add_short_flow(x, f, seed, &shorts, flow);
            e->short_index = (long)n_short++;
        }
    }
    for (i = 0; i < n_short; i++) blocks[i] = i;
    if (ok && n_short) ok = flowpic_predict_blocks(m, ws, &shorts, blocks, n_short, sp) == FLOWPIC_OK;
    for (i = 0; ok && i < n_flows; i++)
        for (j = 0; j < n_flows && fl[i].partner < 0; j++)
            if (j != i && reverse_flows(ds, ds->blocks[test[fl[i].first]].flow, ds->blocks[test[fl[j].first]].flow))
                fl[i].partner = (long)j;
    for (i = 0; ok && i < n_flows; i++) {
        const exp_flow *e = &fl[i], *o = e->partner >= 0 ? &fl[e->partner] : 0;
        size_t n = e->end - e->first, t = (size_t)e->truth * C;
        double confidence;
        run->cm[CM_FLOW][t + vote(probs + e->first * C, n, C, 0, &confidence)]++;
        run->cm[CM_FLOW_MEAN][t + vote(probs + e->first * C, n, C, 1, &confidence)]++;
        memcpy(both, probs + e->first * C, n * C * sizeof *both);
        if (o) memcpy(both + n * C, probs + o->first * C, (o->end - o->first) * C * sizeof *both);
        run->cm[CM_FLOW_BOTH][t + vote(both, n + (o ? o->end - o->first : 0), C, 0, &confidence)]++;
        if (e->short_index < 0) continue;
        run->cm[CM_SHORT][t + top_class(sp + (size_t)e->short_index * C, C)]++;
        for (c = 0; c < C; c++) both[c] = sp[(size_t)e->short_index * C + c];
        if (o && o->short_index >= 0)
            for (c = 0; c < C; c++) both[c] += sp[(size_t)o->short_index * C + c];
        run->cm[CM_SHORT_BOTH][t + top_class(both, C)]++;
    }
    flowpic_dataset_free(&shorts);
    free(blocks);
    free(fl);
    free(sp);
    free(both);
    return ok;
}

/* Trains on train[] (validation files taken out of it), tests on test[] (sorted by flow). */
static int exp_run_split(exp_context *x, size_t *train, size_t n_train, const size_t *test, size_t n_test, uint64_t seed,
                         exp_run *run)
{
    const flowpic_dataset *ds = x->ds;
    flowpic_model m;
    flowpic_workspace ws;
    flowpic_rng rng;
    size_t *val = (size_t *)malloc((n_train + 1) * sizeof *val), n_val = 0, i;
    float *probs = (float *)malloc((n_test + 1) * x->n_classes * sizeof *probs);
    double t0 = now_seconds();
    fit_setup fs = x->r->fit;
    int ok = val && probs;
    memset(&ws, 0, sizeof ws);
    memset(&m, 0, sizeof m);
    flowpic_rng_seed(&rng, seed);
    fs.model_class = x->model_class;
    fs.log = 0;
    fs.cmd = "experiment";
    fs.output = x->o->json_path;
    if (ok) exp_pick_validation(x, train, &n_train, val, &n_val, &rng);
    if (ok && x->r->undersample) balance_blocks(ds, train, &n_train, x->model_class, &rng);
    ok = ok && recipe_model(x->r, ds, x->classes, x->n_classes, &rng, &m, "experiment");
    ok = ok && fit(&m, ds, train, n_train, ds, val, n_val, &fs, &rng, &run->fit);
    ok = ok && flowpic_model_workspace_init(&ws, &m, 64, 0) == FLOWPIC_OK;
    ok = ok && flowpic_predict_blocks(&m, &ws, ds, test, n_test, probs) == FLOWPIC_OK;
    for (i = 0; ok && i < n_test; i++)
        run->cm[CM_BLOCK][(uint32_t)exp_class(x, test[i]) * x->n_classes + top_class(probs + i * x->n_classes, x->n_classes)]++;
    ok = ok && exp_score_flows(x, &m, &ws, test, n_test, probs, seed, run);
    run->train = n_train;
    run->val = n_val;
    run->test = n_test;
    run->seconds = now_seconds() - t0;
    flowpic_workspace_free(&ws);
    flowpic_model_free(&m);
    free(val);
    free(probs);
    return ok;
}

/* Which blocks a side of a split takes: predicates on a block (its fold or its source's group). */
typedef int (*exp_side_fn)(const exp_context *x, size_t block, int arg);

static int block_group(const exp_context *x, size_t block)
{
    return x->group[x->ds->flows[x->ds->blocks[block].flow].source];
}
static int side_fold(const exp_context *x, size_t block, int fold)
{
    return x->fold[block] == fold;
}
static int side_not_fold(const exp_context *x, size_t block, int fold)
{
    return x->fold[block] >= 0 && x->fold[block] != fold;
}
static int side_group(const exp_context *x, size_t block, int g)
{
    return block_group(x, block) == g;
}
static int side_not_group(const exp_context *x, size_t block, int g)
{
    return block_group(x, block) >= 0 && block_group(x, block) != g;
}

/* The blocks (in data-set order, so a flow's blocks stay together) that have a model class and
 * pass side(arg), and when g >= 0 belong to group g. */
static size_t exp_select(const exp_context *x, exp_side_fn side, int arg, int g, size_t *out)
{
    size_t i, n = 0;
    for (i = 0; i < x->ds->n_blocks; i++) {
        if (!x->is_block[i] || exp_class(x, i) < 0) continue;
        if (g >= 0 && block_group(x, i) != g) continue;
        if (side(x, i, arg)) out[n++] = i;
    }
    return n;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", (unsigned)(unsigned char)*s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

static void json_matrix(FILE *f, const size_t *cm, uint32_t n)
{
    uint32_t a, b;
    fputc('[', f);
    for (a = 0; a < n; a++) {
        fprintf(f, "%s[", a ? ", " : "");
        for (b = 0; b < n; b++) fprintf(f, "%s%llu", b ? ", " : "", (unsigned long long)cm[a * n + b]);
        fputc(']', f);
    }
    fputc(']', f);
}

static const char *const cm_names[CM_COUNT] = {"block", "flow", "flow_mean", "short", "flow_both", "short_both"};

/* One run into the JSON file and a line on stderr. */
static void exp_report_run(exp_context *x, const char *task, const char *train_on, const char *test_on, uint64_t seed,
                           const exp_run *run)
{
    int k;
    uint32_t c;
    fprintf(stderr, "%s  train %s  test %s  seed %llu: %llu train, %llu val, %llu test blocks: block %.3f  balanced %.3f  flow %.3f  short %.3f  (epochs %llu, best %llu, %.0f s)\n",
            task, train_on, test_on, (unsigned long long)seed, (unsigned long long)run->train, (unsigned long long)run->val,
            (unsigned long long)run->test, cm_accuracy(run->cm[CM_BLOCK], run->n), cm_balanced(run->cm[CM_BLOCK], run->n),
            cm_accuracy(run->cm[CM_FLOW], run->n), cm_accuracy(run->cm[CM_SHORT], run->n), run->fit.epochs,
            run->fit.best_epoch, run->seconds);
    if (!x->json) return;
    fprintf(x->json, "%s\n  {\"task\": ", x->json_runs++ ? "," : "");
    json_string(x->json, task);
    fprintf(x->json, ", \"train\": ");
    json_string(x->json, train_on);
    fprintf(x->json, ", \"test\": ");
    json_string(x->json, test_on);
    fprintf(x->json, ", \"seed\": %llu, \"train_blocks\": %llu, \"val_blocks\": %llu, \"test_blocks\": %llu, \"epochs\": %llu, \"best_epoch\": %llu, \"seconds\": %.1f, \"classes\": [",
            (unsigned long long)seed, (unsigned long long)run->train, (unsigned long long)run->val,
            (unsigned long long)run->test, run->fit.epochs, run->fit.best_epoch, run->seconds);
    for (c = 0; c < run->n; c++) {
        if (c) fprintf(x->json, ", ");
        json_string(x->json, x->classes[c]);
    }
    fprintf(x->json, "]");
    for (k = 0; k < CM_COUNT; k++) {
        fprintf(x->json, ", \"%s_accuracy\": %.4f, \"%s_balanced\": %.4f, \"%s_confusion\": ", cm_names[k],
                cm_accuracy(run->cm[k], run->n), cm_names[k], cm_balanced(run->cm[k], run->n), cm_names[k]);
        json_matrix(x->json, run->cm[k], run->n);
    }
    fprintf(x->json, "}");
}

/* Mean and sample sd of v[0 .. n). */
static void mean_sd(const double *v, int n, double *mean, double *sd)
{
    double s = 0, q = 0;
    int i;
    for (i = 0; i < n; i++) s += v[i];
    *mean = n ? s / n : 0;
    for (i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* The summary metrics: a confusion matrix and accuracy or balanced accuracy (mean recall). */
static const struct exp_metric {
    const char *name;
    int cm, balanced;
} exp_metrics[] = {
    {"block_accuracy", CM_BLOCK, 0},
    {"balanced_accuracy", CM_BLOCK, 1},
    {"flow_accuracy", CM_FLOW, 0},
    {"flow_balanced_accuracy", CM_FLOW, 1},
    {"flow_accuracy_mean_vote", CM_FLOW_MEAN, 0},
    {"flow_accuracy_both_directions", CM_FLOW_BOTH, 0},
    {"short_flow_accuracy", CM_SHORT, 0},
    {"short_flow_balanced_accuracy", CM_SHORT, 1},
    {"short_flow_accuracy_both_directions", CM_SHORT_BOTH, 0},
};

static double exp_metric_value(const struct exp_metric *m, const exp_run *r)
{
    return m->balanced ? cm_balanced(r->cm[m->cm], r->n) : cm_accuracy(r->cm[m->cm], r->n);
}

/* Row shares of one summed confusion matrix, with each class's recall. */
static void print_confusion(const exp_context *x, const size_t *cm, uint32_t n, const char *what)
{
    uint32_t c, d;
    printf("\n%s confusion, summed over folds and seeds, share of each row\nclass", what);
    for (c = 0; c < n; c++) printf("\t%s", x->classes[c]);
    printf("\trecall\n");
    for (c = 0; c < n; c++) {
        size_t row = 0;
        for (d = 0; d < n; d++) row += cm[c * n + d];
        printf("%s", x->classes[c]);
        for (d = 0; d < n; d++) printf("\t%.3f", row ? (double)cm[c * n + d] / (double)row : 0.0);
        printf("\t%.3f\n", row ? (double)cm[c * n + c] / (double)row : 0.0);
    }
}

/* The metrics of runs[seed][fold]: per seed the mean and sd over folds, then the mean of those
 * over seeds (the plain pipeline's table, averaged over seeds), one line each; the worst
 * block recall of any class in any run; the block, flow and short-flow confusion matrices. */
static void exp_print_summary(const exp_context *x, exp_run *runs, int n_seeds, int n_folds, const exp_run *sum)
{
    double v[64], mean, sd, worst = 1;
    size_t k;
    int s, f, used = n_folds < 64 ? n_folds : 64;
    uint32_t c;
    printf("metric\tmean\tsd\n");
    for (k = 0; k < sizeof exp_metrics / sizeof exp_metrics[0]; k++) {
        double means = 0, sds = 0;
        for (s = 0; s < n_seeds; s++) {
            for (f = 0; f < used; f++) v[f] = exp_metric_value(&exp_metrics[k], &runs[s * n_folds + f]);
            mean_sd(v, used, &mean, &sd);
            means += mean / n_seeds;
            sds += sd / n_seeds;
        }
        printf("%s\t%.4f\t%.4f\n", exp_metrics[k].name, means, sds);
    }
    for (s = 0; s < n_seeds * n_folds; s++)
        for (c = 0; c < runs[s].n; c++) {
            double r = cm_recall(runs[s].cm[CM_BLOCK], runs[s].n, c);
            if (r >= 0 && r < worst) worst = r;
        }
    printf("worst_class_recall_in_a_fold\t%.4f\t-\n", worst);
    print_confusion(x, sum->cm[CM_BLOCK], sum->n, "block");
    print_confusion(x, sum->cm[CM_FLOW], sum->n, "flow (majority vote)");
    print_confusion(x, sum->cm[CM_SHORT], sum->n, "short-flow");
}

/* A confusion matrix as a PNG: one 48 x 48 square a cell, gray 255 * (1 - row share), a
 * 2-pixel white gap between cells. */
static int write_confusion_png(const char *path, const size_t *cm, uint32_t n)
{
    enum { CELL = 48, GAP = 2 };
    uint32_t side = n * (CELL + GAP) + GAP, r, c, y, x;
    uint8_t *gray = (uint8_t *)malloc((size_t)side * side), *png = 0;
    size_t size = 0;
    int ok = gray != 0;
    if (ok) memset(gray, 255, (size_t)side * side);
    for (r = 0; ok && r < n; r++) {
        size_t row = 0;
        for (c = 0; c < n; c++) row += cm[r * n + c];
        for (c = 0; c < n; c++) {
            double share = row ? (double)cm[r * n + c] / (double)row : 0;
            uint8_t v = (uint8_t)(255.0 * (1.0 - share) + 0.5);
            for (y = 0; y < CELL; y++)
                for (x = 0; x < CELL; x++) gray[(size_t)(GAP + r * (CELL + GAP) + y) * side + GAP + c * (CELL + GAP) + x] = v;
        }
    }
    ok = ok && flowpic_gray_png(gray, side, side, &png, &size) == FLOWPIC_OK && write_output(path, png, size);
    free(gray);
    free(png);
    return ok;
}

/* The multiclass confusion matrices as PNG files (--confusion-png PREFIX). */
static int exp_confusion_pngs(const exp_context *x, const exp_run *sum)
{
    static const struct { const char *suffix; int cm; } which[] = {{"block", CM_BLOCK}, {"flow", CM_FLOW}, {"short", CM_SHORT}};
    char path[4096];
    size_t k;
    for (k = 0; k < sizeof which / sizeof which[0]; k++) {
        if ((size_t)snprintf(path, sizeof path, "%s-%s.png", x->o->confusion_png, which[k].suffix) >= sizeof path) return 0;
        if (!write_confusion_png(path, sum->cm[which[k].cm], sum->n)) return 0;
        printf("wrote %s\n", path);
    }
    return 1;
}

/* k folds over the test groups: the runs of every seed and fold of one task. side/not_side pick
 * the test and training sources of fold f; g >= 0 restricts both to group g. */
static int exp_folds(exp_context *x, const char *task, int g, exp_run *runs, exp_run *sum)
{
    size_t *train = (size_t *)malloc((x->ds->n_blocks + 1) * sizeof *train);
    size_t *test = (size_t *)malloc((x->ds->n_blocks + 1) * sizeof *test);
    int s, f, ok = train && test, k = (int)x->o->k;
    for (s = 0; ok && s < x->o->n_seeds; s++)
        for (f = 0; ok && f < k; f++) {
            exp_run *run = &runs[s * k + f];
            size_t n_test = exp_select(x, side_fold, f, g, test), n_train = exp_select(x, side_not_fold, f, g, train);
            char name[32];
            snprintf(name, sizeof name, "fold %d/%d", f + 1, k);
            if (!exp_run_init(run, x->n_classes)) ok = 0;
            else if (!n_test || !n_train) continue;
            else ok = exp_run_split(x, train, n_train, test, n_test, x->o->seeds[s], run);
            if (ok) {
                exp_report_run(x, task, "other folds", name, x->o->seeds[s], run);
                exp_run_add(sum, run);
            }
        }
    free(train);
    free(test);
    return ok;
}

static void exp_free_runs(exp_run *runs, int n)
{
    int i;
    for (i = 0; i < n; i++) exp_run_free(&runs[i]);
    free(runs);
}

/* Multiclass, or one class against all others (two model classes) for each class. */
static int exp_classes(exp_context *x, int one_vs_all)
{
    int n = x->o->n_seeds * (int)x->o->k, ok = 1, *map = (int *)malloc((x->ds->n_classes + 1) * sizeof *map);
    uint32_t c, target, end = one_vs_all ? x->ds->n_classes : 1;
    for (target = 0; ok && map && target < end; target++) {
        exp_run *runs = (exp_run *)calloc((size_t)n, sizeof *runs), sum;
        const char *pair[2];
        char task[FLOWPIC_MAX_NAME + 32];
        if (one_vs_all) {
            for (c = 0; c < x->ds->n_classes; c++) map[c] = c == target ? 0 : 1;
            pair[0] = x->ds->classes[target];
            pair[1] = "other";
            x->classes = pair;
            x->n_classes = 2;
            x->model_class = map;
            snprintf(task, sizeof task, "%s vs all", x->ds->classes[target]);
            printf("\n== %s ==\n", task);
        } else {
            snprintf(task, sizeof task, "multiclass");
        }
        ok = runs && exp_run_init(&sum, x->n_classes) && exp_folds(x, task, -1, runs, &sum);
        if (ok) exp_print_summary(x, runs, x->o->n_seeds, (int)x->o->k, &sum);
        if (ok && !one_vs_all && x->o->confusion_png) ok = exp_confusion_pngs(x, &sum);
        if (runs) exp_free_runs(runs, n);
        exp_run_free(&sum);
    }
    free(map);
    return ok;
}

/* Train on the sources of group a, test on those of group b (k folds inside a group). */
static int exp_conditions(exp_context *x, int leave_out)
{
    int a, b, s, ok = 1, G = x->n_groups, S = x->o->n_seeds;
    double *block = (double *)calloc((size_t)G * (size_t)G + 1, sizeof *block), *flow = (double *)calloc((size_t)G * (size_t)G + 1, sizeof *flow);
    size_t *train = (size_t *)malloc((x->ds->n_blocks + 1) * sizeof *train);
    size_t *test = (size_t *)malloc((x->ds->n_blocks + 1) * sizeof *test);
    ok = block && flow && train && test;
    for (a = 0; ok && a < G; a++)
        for (b = 0; ok && b < G; b++) {
            exp_run sum;
            if (leave_out && a != b) continue;
            if (!exp_run_init(&sum, x->n_classes)) {
                ok = 0;
                break;
            }
            if (a == b && !leave_out) { /* folds inside the condition */
                int n = S * (int)x->o->k;
                exp_run *runs = (exp_run *)calloc((size_t)n, sizeof *runs);
                char task[64];
                snprintf(task, sizeof task, "condition %s", x->group_names[a]);
                ok = runs && exp_folds(x, task, a, runs, &sum);
                if (runs) exp_free_runs(runs, n);
            } else {
                size_t n_test = exp_select(x, side_group, b, -1, test);
                for (s = 0; ok && s < S; s++) {
                    exp_run run;
                    size_t n_train = exp_select(x, leave_out ? side_not_group : side_group, a, -1, train);
                    if (!exp_run_init(&run, x->n_classes)) ok = 0;
                    else if (n_train && n_test) ok = exp_run_split(x, train, n_train, test, n_test, x->o->seeds[s], &run);
                    if (ok && n_train && n_test) {
                        exp_report_run(x, leave_out ? "leave one out" : "conditions", leave_out ? "the others" : x->group_names[a],
                                       x->group_names[b], x->o->seeds[s], &run);
                        exp_run_add(&sum, &run);
                    }
                    exp_run_free(&run);
                }
            }
            block[a * G + b] = cm_accuracy(sum.cm[CM_BLOCK], sum.n);
            flow[a * G + b] = cm_accuracy(sum.cm[CM_FLOW], sum.n);
            exp_run_free(&sum);
        }
    if (ok && leave_out) {
        printf("left out\tblock_accuracy\tflow_accuracy\n");
        for (a = 0; a < G; a++) printf("%s\t%.4f\t%.4f\n", x->group_names[a], block[a * G + a], flow[a * G + a]);
    } else if (ok) {
        int m;
        for (m = 0; m < 2; m++) {
            printf("%s%s accuracy (rows: trained on, columns: tested on; the diagonal: %llu folds inside)\ntrain\\test",
                   m ? "\n" : "", m ? "flow" : "block", x->o->k);
            for (b = 0; b < G; b++) printf("\t%s", x->group_names[b]);
            for (a = 0; a < G; a++) {
                printf("\n%s", x->group_names[a]);
                for (b = 0; b < G; b++) printf("\t%.4f", (m ? flow : block)[a * G + b]);
            }
            printf("\n");
        }
    }
    free(block);
    free(flow);
    free(train);
    free(test);
    return ok;
}

/* The plain pipeline's file-grouped folds: class after class, files largest first (by blocks;
 * ties by name) to the fold with the fewest blocks of that class (ties: fewest files of the
 * class, fewest blocks of all classes, lowest index). source_fold[] gets a fold per source. */
static int exp_compute_folds(const exp_context *x, int *source_fold)
{
    const flowpic_dataset *ds = x->ds;
    size_t k = x->o->k, *blocks = (size_t *)calloc(ds->n_sources + 1, sizeof *blocks);
    size_t *load = (size_t *)calloc(3 * k, sizeof *load), *files = load + k, *total = load + 2 * k;
    int *cls = (int *)malloc((ds->n_sources + 1) * sizeof *cls), ok = blocks && load && cls;
    uint32_t c, s;
    size_t i;
    for (s = 0; ok && s < ds->n_sources; s++) cls[s] = -1, source_fold[s] = -1;
    for (i = 0; ok && i < ds->n_blocks; i++) {
        uint32_t src = ds->flows[ds->blocks[i].flow].source;
        if (!x->is_block[i]) continue;
        blocks[src]++;
        cls[src] = ds->blocks[i].label;
    }
    for (c = 0; ok && c < ds->n_classes; c++) {
        memset(load, 0, 2 * k * sizeof *load);
        for (;;) {
            uint32_t best = UINT32_MAX;
            size_t f, j = 0;
            for (s = 0; s < ds->n_sources; s++)
                if (cls[s] == (int)c && source_fold[s] < 0 &&
                    (best == UINT32_MAX || blocks[s] > blocks[best] ||
                     (blocks[s] == blocks[best] && strcmp(ds->sources[s], ds->sources[best]) < 0)))
                    best = s;
            if (best == UINT32_MAX) break;
            for (f = 1; f < k; f++)
                if (load[f] < load[j] || (load[f] == load[j] && (files[f] < files[j] || (files[f] == files[j] && total[f] < total[j]))))
                    j = f;
            source_fold[best] = (int)j;
            load[j] += blocks[best];
            files[j]++;
            total[j] += blocks[best];
        }
    }
    free(blocks);
    free(load);
    free(cls);
    return ok;
}

/* Reads a TSV with a header line naming its columns; calls row(user, key column, value column)
 * for each data line. Lines starting with '#' and blank lines are skipped. */
typedef int (*tsv_row_fn)(void *user, const char *key, const char *value, int line);

static int read_tsv(const char *path, const char *key_col, const char *value_col, tsv_row_fn row, void *user)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    int n = 0, key = -1, value = -1, ok = 1;
    if (!f) {
        fprintf(stderr, "flowpic: %s: %s\n", path, strerror(errno));
        return 0;
    }
    while (ok && fgets(line, sizeof line, f)) {
        char *field[16], *p = line;
        int nf = 0;
        n++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#') continue;
        while (nf < 16) {
            field[nf++] = p;
            p = strchr(p, '\t');
            if (!p) break;
            *p++ = '\0';
        }
        if (key < 0) { /* the header: find the named columns */
            int i;
            for (i = 0; i < nf; i++) {
                if (!strcmp(field[i], key_col)) key = i;
                if (!strcmp(field[i], value_col)) value = i;
            }
            if (key < 0 || value < 0) {
                fprintf(stderr, "flowpic: %s: line %d: need columns '%s' and '%s'\n", path, n, key_col, value_col);
                ok = 0;
            }
            continue;
        }
        if (key >= nf || value >= nf) {
            fprintf(stderr, "flowpic: %s: line %d: expected at least %d tab-separated fields\n", path, n,
                    (key > value ? key : value) + 1);
            ok = 0;
        } else {
            ok = row(user, field[key], field[value], n);
        }
    }
    if (ok && ferror(f)) {
        fprintf(stderr, "flowpic: %s: read error\n", path);
        ok = 0;
    }
    fclose(f);
    return ok;
}

typedef struct fold_reader {
    const exp_context *x;
    const char *path;
    int *source_fold;
} fold_reader;

static int fold_row(void *user, const char *file, const char *fold, int line)
{
    fold_reader *fr = (fold_reader *)user;
    unsigned long long f;
    uint32_t s;
    if (!parse_ulong(fold, (unsigned long long)fr->x->o->k - 1, &f)) {
        fprintf(stderr, "flowpic: %s: line %d: fold '%s' is not in 0..%llu (--k)\n", fr->path, line, fold, fr->x->o->k - 1);
        return 0;
    }
    for (s = 0; s < fr->x->ds->n_sources; s++)
        if (path_matches(file, fr->x->ds->sources[s])) fr->source_fold[s] = (int)f;
    return 1;
}

/* Groups by name: the index of name in x->group_names, added when new. */
static int group_id(exp_context *x, const char *name)
{
    int g;
    char **names;
    for (g = 0; g < x->n_groups; g++)
        if (!strcmp(x->group_names[g], name)) return g;
    names = (char **)realloc(x->group_names, (size_t)(x->n_groups + 1) * sizeof *names);
    if (!names) return -1;
    x->group_names = names;
    if (!(names[x->n_groups] = copy_string(name, strlen(name)))) return -1;
    return x->n_groups++;
}

/* The group of each source: its rule's label in --conditions (a label map: GLOB<TAB>CONDITION,
 * first match wins), else (leave one out) the capture's directory. */
static int exp_groups(exp_context *x)
{
    label_map conditions;
    uint32_t s;
    int ok = 1;
    memset(&conditions, 0, sizeof conditions);
    if (x->o->conditions_path && !load_label_map(x->o->conditions_path, &conditions)) return 0;
    for (s = 0; ok && s < x->ds->n_sources; s++) {
        const char *src = x->ds->sources[s], *slash = strrchr(src, '/'), *dir;
        x->group[s] = -1;
        if (x->o->conditions_path) {
            const label_rule *rule = find_rule(&conditions, src);
            if (rule) ok = (x->group[s] = group_id(x, rule->label)) >= 0;
            continue;
        }
        if (!slash) {
            ok = (x->group[s] = group_id(x, ".")) >= 0;
            continue;
        }
        for (dir = slash; dir > src && dir[-1] != '/'; dir--) {}
        {
            char *name = copy_string(dir, (size_t)(slash - dir));
            ok = name && (x->group[s] = group_id(x, name)) >= 0;
            free(name);
        }
    }
    free_label_map(&conditions);
    return ok;
}

static int experiment_option(void *user, const char *name, const char *value)
{
    exp_options *o = (exp_options *)user;
    if (!strcmp(name, "--task")) {
        static const char *const tasks[] = {"multiclass", "one-vs-all", "conditions", "leave-one-out"};
        int t;
        for (t = 0; t < 4; t++)
            if (!strcmp(value, tasks[t])) return o->task = t, 1;
        return -1;
    }
    if (!strcmp(name, "--k")) return parse_ulong(value, 64, &o->k) && o->k >= 2 ? 1 : -1;
    if (!strcmp(name, "--split")) {
        if (!strcmp(value, "file") || !strcmp(value, "random")) return o->random_split = !strcmp(value, "random"), 1;
        return -1;
    }
    if (!strcmp(name, "--seeds")) {
        char *copy = copy_string(value, strlen(value)), *tok, *save = 0;
        int ok = copy != 0;
        o->n_seeds = 0;
        for (tok = copy ? strtok_r(copy, ",", &save) : 0; ok && tok; tok = strtok_r(0, ",", &save))
            ok = o->n_seeds < EXP_MAX_SEEDS && parse_ulong(tok, UINT64_MAX, &o->seeds[o->n_seeds++]);
        free(copy);
        return ok && o->n_seeds ? 1 : -1;
    }
    if (!strcmp(name, "--folds")) return (o->folds_path = value) != 0;
    if (!strcmp(name, "--conditions")) return (o->conditions_path = value) != 0;
    if (!strcmp(name, "--json")) return (o->json_path = value) != 0;
    if (!strcmp(name, "--confusion-png")) return (o->confusion_png = value) != 0;
    if (!strcmp(name, "--min-packets")) return parse_ulong(value, FLOWPIC_MAX_BLOCK_PACKETS, &o->min_packets) ? 1 : -1;
    if (!strcmp(name, "--short-seconds")) return parse_double(value, &o->short_s) && o->short_s > 0 ? 1 : -1;
    if (!strcmp(name, "--short-keep")) return parse_double(value, &o->short_keep) && o->short_keep >= 0 && o->short_keep <= 1 ? 1 : -1;
    if (!strcmp(name, "--val-share")) return parse_double(value, &o->val_share) && o->val_share >= 0 && o->val_share < 1 ? 1 : -1;
    return 0;
}

static int experiment_flag(void *user, const char *name)
{
    exp_options *o = (exp_options *)user;
    if (!strcmp(name, "--list-folds")) return o->list_folds = 1;
    return 0;
}

/* The fold of every block: the fold table (or the computed file-grouped folds) by source, or
 * for a random split a random permutation of the blocks dealt round robin. */
static int exp_assign_folds(exp_context *x)
{
    const flowpic_dataset *ds = x->ds;
    int *source_fold = (int *)malloc((ds->n_sources + 1) * sizeof *source_fold), ok = source_fold != 0;
    size_t i, missing = 0, *perm;
    uint32_t s;
    if (ok && x->o->random_split) {
        flowpic_rng rng;
        flowpic_rng_seed(&rng, x->o->seeds[0]);
        perm = (size_t *)malloc((ds->n_blocks + 1) * sizeof *perm);
        ok = perm != 0;
        for (i = 0; ok && i < ds->n_blocks; i++) perm[i] = i;
        if (ok) shuffle(perm, ds->n_blocks, &rng);
        for (i = 0; ok && i < ds->n_blocks; i++) x->fold[perm[i]] = (int)(i % x->o->k);
        free(perm);
        free(source_fold);
        return ok;
    }
    if (ok && x->o->folds_path) {
        fold_reader fr;
        fr.x = x;
        fr.path = x->o->folds_path;
        fr.source_fold = source_fold;
        for (s = 0; s < ds->n_sources; s++) source_fold[s] = -1;
        ok = read_tsv(x->o->folds_path, "file", "fold", fold_row, &fr);
    } else if (ok) {
        ok = exp_compute_folds(x, source_fold);
    }
    for (i = 0; ok && i < ds->n_blocks; i++) {
        x->fold[i] = source_fold[ds->flows[ds->blocks[i].flow].source];
        missing += x->fold[i] < 0 && x->is_block[i];
    }
    if (ok && missing)
        fprintf(stderr, "flowpic: experiment: %llu blocks are in files the fold table does not name; left out\n",
                (unsigned long long)missing);
    free(source_fold);
    return ok;
}

/* The fold table as --folds reads it: file, class, fold, blocks (of >= min packets). */
static void exp_list_folds(const exp_context *x)
{
    const flowpic_dataset *ds = x->ds;
    size_t *blocks = (size_t *)calloc(ds->n_sources + 1, sizeof *blocks), i;
    int *fold = (int *)malloc((ds->n_sources + 1) * sizeof *fold), *cls = (int *)malloc((ds->n_sources + 1) * sizeof *cls);
    uint32_t s;
    if (!blocks || !fold || !cls) {
        fprintf(stderr, "flowpic: experiment: out of memory\n");
    } else {
        for (s = 0; s < ds->n_sources; s++) fold[s] = cls[s] = -1;
        for (i = 0; i < ds->n_blocks; i++) {
            uint32_t src = ds->flows[ds->blocks[i].flow].source;
            if (!x->is_block[i]) continue;
            blocks[src]++;
            fold[src] = x->fold[i];
            cls[src] = ds->blocks[i].label;
        }
        printf("file\tclass\tfold\tblocks\n");
        for (s = 0; s < ds->n_sources; s++)
            if (blocks[s]) printf("%s\t%s\t%d\t%llu\n", ds->sources[s], ds->classes[cls[s]], fold[s], (unsigned long long)blocks[s]);
    }
    free(blocks);
    free(fold);
    free(cls);
}

/* Which blocks count (>= min packets) and each flow's first window. */
static int exp_index(exp_context *x)
{
    const flowpic_dataset *ds = x->ds;
    size_t i;
    x->is_block = (char *)malloc(ds->n_blocks + 1);
    x->first_window = (size_t *)malloc((ds->n_flows + 1) * sizeof *x->first_window);
    x->fold = (int *)malloc((ds->n_blocks + 1) * sizeof *x->fold);
    x->group = (int *)malloc((ds->n_sources + 1) * sizeof *x->group);
    if (!x->is_block || !x->first_window || !x->fold || !x->group) return 0;
    for (i = 0; i < ds->n_flows; i++) x->first_window[i] = (size_t)-1;
    for (i = 0; i < ds->n_blocks; i++) {
        x->is_block[i] = ds->blocks[i].n_packets >= x->o->min_packets;
        if (ds->blocks[i].index == 0) x->first_window[ds->blocks[i].flow] = i;
    }
    return 1;
}

static void exp_free(exp_context *x)
{
    int g;
    free(x->is_block);
    free(x->first_window);
    free(x->fold);
    free(x->group);
    for (g = 0; g < x->n_groups; g++) free(x->group_names[g]);
    free(x->group_names);
}

static int cmd_experiment(int argc, char **argv)
{
    recipe r;
    exp_options o;
    exp_context x;
    flowpic_dataset ds;
    atomic_file json;
    int first, ok;
    size_t i, blocks = 0;
    recipe_defaults(&r);
    memset(&o, 0, sizeof o);
    o.k = 5;
    o.seeds[0] = 1;
    o.n_seeds = 1;
    o.min_packets = 10;
    o.short_s = 20;
    o.short_keep = 0.5;
    if ((first = parse_recipe("experiment", &r, argc, argv, experiment_option, experiment_flag, &o)) < 0) return EXIT_USAGE;
    if (first == argc) {
        fail_usage("experiment", "no data set given", 0);
        return EXIT_USAGE;
    }
    if (o.task == TASK_CONDITIONS && !o.conditions_path) {
        fail_usage("experiment", "--task conditions needs --conditions FILE", 0);
        return EXIT_USAGE;
    }
    r.fit.balanced_loss = 1; /* with --val-share: the plain pipeline's stopping rule */
    if (!load_datasets(argc - first, (const char *const *)(argv + first), &ds)) return EXIT_RUNTIME;
    memset(&x, 0, sizeof x);
    x.r = &r;
    x.o = &o;
    x.ds = &ds;
    x.classes = (const char *const *)ds.classes;
    x.n_classes = ds.n_classes;
    ok = exp_index(&x) && exp_assign_folds(&x) && exp_groups(&x);
    for (i = 0; ok && i < ds.n_blocks; i++) blocks += (size_t)x.is_block[i];
    if (ok && (ds.n_classes < 2 || blocks < 2)) {
        fprintf(stderr, "flowpic: experiment: need at least two classes and two blocks of >= %llu packets\n", o.min_packets);
        ok = 0;
    }
    if (ok && o.list_folds) {
        exp_list_folds(&x);
        exp_free(&x);
        flowpic_dataset_free(&ds);
        return 0;
    }
    if (ok && o.json_path && !atomic_open(&json, o.json_path)) ok = 0;
    if (ok && o.json_path) {
        x.json = json.f;
        fprintf(x.json, "{\"net\": \"%s\", \"res\": %llu, \"transform\": \"%s\", \"split\": \"%s\", \"k\": %llu, \"runs\": [",
                flowpic_arch_name(r.arch), r.res, flowpic_transform_name(r.transform), o.random_split ? "random" : "file", o.k);
    }
    if (ok) {
        printf("%llu blocks of >= %llu packets, %u classes, %u files; %s net at %llu x %llu (%s), %s%s, %llu folds %s, %d seed(s)\n",
               (unsigned long long)blocks, o.min_packets, ds.n_classes, ds.n_sources, flowpic_arch_name(r.arch), r.res, r.res,
               flowpic_transform_name(r.transform), r.undersample ? "undersampling" : r.fit.oversample ? "oversampling" : "no balancing",
               flowpic_augment_active(&r.fit.aug) ? ", augmented" : "", o.k, o.random_split ? "of random blocks" : "grouped by file",
               o.n_seeds);
        if (o.task == TASK_MULTICLASS || o.task == TASK_ONE_VS_ALL) ok = exp_classes(&x, o.task == TASK_ONE_VS_ALL);
        else ok = exp_conditions(&x, o.task == TASK_LEAVE_OUT);
    }
    if (x.json) {
        fprintf(x.json, "\n]}\n");
        if (atomic_close(&json, ok)) printf("wrote %s\n", o.json_path);
        else ok = 0;
    }
    exp_free(&x);
    flowpic_dataset_free(&ds);
    return ok ? 0 : EXIT_RUNTIME;
}

/* ---- help ------------------------------------------------------------------------------------ */

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    const char *help;
    const char *options; /* more help text shared between commands, or NULL */
} command;

static void print_help(const command *c)
{
    fputs(c->help, stdout);
    if (c->options) fputs(c->options, stdout);
}

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
     "Exit status: 0 when every file reads to its end, 1 otherwise, 2 on a usage error.\n", 0},
    {"flows", cmd_flows, "one tab-separated line per flow of each capture",
     "usage: flowpic flows [--bidirectional] [--label L | --labels MAP] [FILTERS] FILE...\n"
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
     "  --bidirectional   merge both directions under the key of the flow's first packet\n"
     "  --label L, --labels MAP   label the flows (a last column, label); with MAP, files no rule\n"
     "                    matches are skipped and counted, and each rule's filter applies\n"
     "  --proto, --port, --net, --min-flow-packets, --min-duration, --min-rate, --max-rate\n"
     "                    list only the flows that pass (as in extract; see 'flowpic help extract')\n", 0},
    {"extract", cmd_extract, "cut captures into labelled blocks: a data set file",
     "usage: flowpic extract [OPTIONS] -o OUT FILE...\n"
     "\n"
     "Cuts every flow of every capture into blocks (FLOWPIC.md section 2) and writes them with\n"
     "their labels to the data set OUT (format: docs/DATASET.md; written to OUT.tmp, then\n"
     "renamed). Prints the blocks per class. Progress goes to stderr when it is a terminal.\n"
     "\n"
     SELECTION_HELP, 0},
    {"blocks", cmd_blocks, "one tab-separated line per block of each capture",
     "usage: flowpic blocks [OPTIONS] FILE...\n"
     "\n"
     "Prints a header line and one line per block, flow after flow (first-seen order):\n"
     "  proto  src  sport  dst  dport  block  start  packets\n"
     "block is the window number k, start the window start in seconds (9 decimals), packets\n"
     "the packets in its picture. The options are those of extract (labels only select files).\n"
     "\n"
     SELECTION_HELP, 0},
    {"stats", cmd_stats, "what a data set holds: classes, blocks, packets, sources",
     "usage: flowpic stats [--pixels R] DATASET...\n"
     "\n"
     "The block settings, then per class its blocks and packets, then per source capture its\n"
     "flows, blocks and packets. Several data sets are merged (they must share block settings;\n"
     "classes are matched by name).\n"
     "\n"
     "  --pixels R   instead: the non-zero pixels of all pictures at R x R and their checksum,\n"
     "               the sum of mix64(row << 40 | column << 20 | count) (as ../shared/bench)\n", 0},
    {"render", cmd_render, "draw one FlowPic as PNG or PGM",
     "usage: flowpic render [--index N] [--class C] [--res R] [--scale S] [--dot D] [OPTIONS]\n"
     "                      -o OUT.png DATASET|FILE\n"
     "\n"
     "Draws block N (default 0; with --class, the N-th block of class C; --index busiest: the\n"
     "block with the most packets, of class C with --class) of a data set, or of a capture cut\n"
     "with the options of extract,\n"
     "at R x R (default 1500), each pixel S x S (default: 512 / R rounded up, at least 1).\n"
     "Time runs left to right, size bottom to top; every non-zero pixel is black on white,\n"
     "grown by D image pixels on each side so single packets show (default: 3 when the image\n"
     "is 1000 pixels or more, else 0).\n"
     "OUT ending in .pgm gives PGM, anything else PNG.\n", 0},
    {"export", cmd_export, "pictures and labels as NumPy files",
     "usage: flowpic export --npy OUT.npy [--res R] [--dtype u8|f32] [--transform T] DATASET...\n"
     "\n"
     "Writes OUT.npy, an N x R x R array of every block's picture (default R = 32), with\n"
     "OUT.labels.npy (int32 class index per block) and OUT.classes.txt (one class name a line,\n"
     "in index order). u8 (default): counts clipped at 255. f32: the value transform T, one of\n"
     "raw, clip255, scale (count / 255 after clipping), binary, log1p; default scale for the\n"
     "tcbench preset, raw otherwise. In Python: x = numpy.load('OUT.npy').\n", 0},
    {"train", cmd_train, "train a CNN on data sets: a model file",
     "usage: flowpic train [OPTIONS] -o MODEL DATASET...\n"
     "\n"
     "Trains the network on the blocks of the data sets (merged) and writes MODEL (docs/MODEL.md):\n"
     "the weights, the class names and how pictures are built (block settings, resolution,\n"
     "transform), so the model is never applied to pictures built differently. One line per\n"
     "epoch on stdout (train and validation loss and accuracy), a progress bar on stderr.\n"
     "Same seed, data and options: the same model file, whatever the thread count.\n"
     "\n"
     "  -o MODEL               the model file (written to MODEL.tmp, then renamed)\n"
     "  --val-split F          share of blocks held out for validation [0: train on all]\n"
     "  --group-by file        hold out whole capture files instead of blocks\n"
     "  --val DATASET          validate on this data set instead\n",
     recipe_help},
    {"experiment", cmd_experiment, "the paper's experiments: k folds by file, seeds, block/flow/short-flow accuracy",
     "usage: flowpic experiment [OPTIONS] DATASET...\n"
     "\n"
     "Trains and tests a model per fold and seed and prints block accuracy, balanced accuracy,\n"
     "flow accuracy (majority and mean-probability votes over a flow's blocks), short-flow\n"
     "accuracy (each test flow cut to its first 20 s, half its packets dropped) and per-class\n"
     "recall: per seed the mean and sd over folds, averaged over seeds, then the confusion\n"
     "matrices summed over runs. A line per run on stderr. Blocks are those of >= --min-packets;\n"
     "extract with --min-packets 1 so that short flows are built from every flow's first window.\n"
     "Validation for early stopping: --val-share of each class's training files. docs/RESULTS.md.\n"
     "\n"
     "  --task T               multiclass, one-vs-all (each class against the rest, balanced),\n"
     "                         conditions (train on one condition, test on each; --conditions),\n"
     "                         leave-one-out (each condition or capture directory left out)  [multiclass]\n"
     "  --folds FILE           TSV with columns file and fold (torch_pipeline.py --list-folds);\n"
     "                         a file matches a data-set source when it equals the source or a\n"
     "                         trailing part of it after a '/'   [the same rule, computed here]\n"
     "  --k N                  folds                                  [5]\n"
     "  --split file|random    folds grouped by capture file, or random blocks [file]\n"
     "  --seeds A,B,...        one run per seed and fold              [1]\n"
     "  --conditions FILE      lines GLOB<TAB>CONDITION, first match wins\n"
     "  --min-packets N        a window is a block with >= N packets   [10]\n"
     "  --short-seconds S, --short-keep P   the short-flow test        [20, 0.5]\n"
     "  --val-share P          share of each class's training files for validation and early\n"
     "                         stopping (the plain pipeline: 0.1 with --patience 5 --epochs 30) [0]\n"
     "  --json OUT             every run, its metrics and confusion matrices\n"
     "  --confusion-png P      multiclass: P-block.png, P-flow.png, P-short.png, the summed\n"
     "                         confusion matrices as row shares (black = 1; rows: true class,\n"
     "                         columns: decision, both in the order of the printed tables)\n"
     "  --list-folds           print the fold of every file (file, class, fold, blocks) and stop\n"
     "and the training options of train (validation, when there is one, on the class-balanced\n"
     "loss):\n",
     recipe_help},
    {"eval", cmd_eval, "accuracy, confusion matrix, precision / recall / F1 of a model",
     "usage: flowpic eval [--json] MODEL DATASET...\n"
     "\n"
     "Classifies every block of the data sets (which must be cut as the model expects) and prints\n"
     "the confusion matrix in counts and as shares of each row, per-class precision, recall, F1\n"
     "and support, accuracy and balanced accuracy (the mean of the recalls). Blocks of classes\n"
     "the model does not know are skipped and counted. --json prints one JSON object.\n", 0},
    {"classify", cmd_classify, "the class of every flow of captures",
     "usage: flowpic classify [--vote majority|mean] [--per-block] MODEL FILE...\n"
     "       flowpic classify [--follow | --stream] [--vote V] [ONLINE OPTIONS] MODEL FILE|-\n"
     "\n"
     "Cuts each capture (pcap or pcapng) the way the model was trained, classifies every block\n"
     "and prints one line per flow that has a block:\n"
     "  proto  src  sport  dst  dport  blocks  label  confidence\n"
     "majority (default): the most frequent block label, ties to the larger summed probability,\n"
     "confidence = its share of the votes; mean: the largest mean probability, confidence = it.\n"
     "--per-block prints each block with its probabilities instead.\n"
     "\n"
     "Online (docs/ONLINE.md): with --follow (a capture still being written, pcap or pcapng, read\n"
     "like tail -f; a record cut at the end waits for the rest), with '-' (a pipe: tcpdump -w - |\n"
     "flowpic classify MODEL -) or with --stream (one file, read once), the output is that of live:\n"
     "one line per decision as it is made. --follow runs until SIGINT / SIGTERM, the others until\n"
     "the input ends; then open blocks are decided as final. The online options of live apply.\n"
     "The final and flow lines equal the offline --per-block and flow lines (same blocks, same\n"
     "network, same vote) when no flow is ended early by --idle-timeout or --max-flows.\n", 0},
    {"live", cmd_live, "classify the traffic of a network interface as it flows (Linux)",
     "usage: flowpic live [--interface IF] [--promisc] [ONLINE OPTIONS] MODEL\n"
     "\n"
     "Captures with an AF_PACKET socket and a TPACKET_V3 ring (no libpcap; needs root or\n"
     "CAP_NET_RAW) on IF (default: every interface) and prints one line per decision:\n"
     "  time  proto  src  sport  dst  dport  block  state  label  confidence\n"
     "time is the capture time of the decision (s, 9 decimals). state: final (the block's window\n"
     "closed; confidence = the label's probability), partial (early decision on the open block,\n"
     "see --early-*), flow (the flow ended: idle, evicted or at the end; block = its final blocks,\n"
     "label and confidence = the --vote over them). SIGINT / SIGTERM: open blocks become final\n"
     "decisions, then exit status 0. SIGUSR1: statistics on stderr (also printed at the end):\n"
     "packets, flows live / peak / total, ended idle, evicted, decisions, batches, kernel drops.\n"
     "\n"
     "  --interface IF        capture on IF only                         [all]\n"
     "  --promisc             promiscuous mode on IF\n"
     "  --early-packets N     a partial decision every N packets of a flow since its last decision [off]\n"
     "  --early-after S       a partial decision every S seconds while a block is open [off]\n"
     "  --idle-timeout S      a flow silent for S seconds ends (its flow line) [never; the model's if set]\n"
     "  --max-flows N         live flows; a new flow beyond ends the one idle longest [1048576]\n"
     "  --batch N             blocks classified together (waiting at most until the next\n"
     "                        100 ms tick)                              [32]\n"
     "  --vote majority|mean  the label of flow lines                    [majority]\n", 0},
    {"help", cmd_help, "this list, or the usage of one command", "usage: flowpic help [COMMAND]\n", 0},
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
    for (i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-11s%s\n", commands[i].name, commands[i].summary);
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
    print_help(c);
    return 0;
}

int main(int argc, char **argv)
{
    const command *c;
    int status;
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
        print_help(c);
        return 0;
    }
    catch_interrupts();
    status = c->run(argc - 1, argv + 1);
    end_if_interrupted();
    return status;
}
