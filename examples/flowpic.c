/* flowpic - the command-line tool: one binary, subcommands over the calls flowpic.h offers.
 *
 *   flowpic info FILE...                      what a capture holds
 *   flowpic flows [--bidirectional] FILE...   one TSV line per flow
 *   flowpic help [COMMAND]                    usage
 *
 * Build: cc -O2 -o flowpic examples/flowpic.c -lm   (from the top of the repository)
 * Exit status: 0 success, 1 runtime error (bad input, I/O), 2 usage error.
 */
#define FLOWPIC_IMPLEMENTATION
#include "../flowpic.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Opens path ("-" = standard input), decodes every packet and hands it to fn. Returns 0, or 1
 * after printing the error; the packets before a bad record have been handed over. */
static int scan_capture(const char *path, pcapl_reader *r, packet_fn fn, void *user)
{
    pcapl_packet pkt;
    pcapl_decoded d;
    pcapl_result res;
    if (!strcmp(path, "-"))
        res = pcapl_open_file(r, stdin);
    else
        res = pcapl_open_path(r, path);
    if (res != PCAPL_OK) {
        if (res == PCAPL_ERR_OPEN) {
            fprintf(stderr, "flowpic: %s: cannot open: %s\n", path, strerror(errno));
        } else {
            report_reader_error(path, r);
        }
        return 1;
    }
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

/* ---- help ------------------------------------------------------------------------------------ */

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    const char *help;
} command;

static int cmd_help(int argc, char **argv);

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
    for (i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
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
