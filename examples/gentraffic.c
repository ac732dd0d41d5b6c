/*
 * gentraffic.c - synthetic, labelled network traffic for the flowpic demo.
 *
 * Writes a classic pcap file (little-endian, microsecond timestamps,
 * version 2.4, LINKTYPE_ETHERNET) holding synthetic flows of the five
 * categories of the FlowPic paper:
 *
 *   voip      RTP-like UDP, one packet every 10/20/30 ms in both directions,
 *             talk spurts and silence suppression, jitter and loss
 *   video     segment bursts of near-MTU packets every 2-10 s (TCP or
 *             QUIC-like UDP) after a start-up buffer fill, ACKs upstream
 *   file      saturated near-MTU TCP transfers (slow start, AIMD, rate
 *             limits, uploads), ACK flow in the other direction
 *   chat      long-lived connections with keepalives, presence pushes,
 *             conversations of small messages, the odd picture
 *   browsing  page loads over several parallel connections: small
 *             requests, mixed-size responses, think time between pages
 *
 * Every category has several "applications" with different parameters, so
 * a class is not a single pattern.  Flows start at different times (some
 * before the capture starts, some end before it stops), every flow has its
 * own 5-tuple, and packets are written in global time order.  The output
 * depends only on the options: the same options give the same bytes.
 *
 * Build:  cc -O2 -std=c99 gentraffic.c -o gentraffic -lm
 *
 * Usage:  gentraffic [options] -o OUT.pcap
 *   -o FILE               output pcap ("-" = standard output), required
 *   --seed N              random seed (default 1)
 *   --duration S          capture span in seconds (default 180)
 *   --flows-per-class N   flows of each class (default 6)
 *   --classes LIST        comma list out of voip,video,file,chat,browsing
 *   --labels FILE         write one line per flow:
 *                         proto src sport dst dport class app (TSV with that
 *                         header line; src is the client, proto tcp/udp)
 *   --prefix-per-class    clients of class k live in 10.0.k.0/24
 *                         (k = 1 voip .. 5 browsing; IPv6: fd00:0:0:k::/64)
 *   --ipv6-share F        fraction of flows carried over IPv6 (default 0.1)
 *   --full-payload        write whole frames (default: first 128 bytes of
 *                         each frame, original length kept, like a
 *                         header-only capture)
 *   --verbose             per-class summary on standard error
 *   --help                this text
 *
 * Example: ./gentraffic --seed 7 --labels demo.tsv -o demo.pcap
 *
 * Exit status: 0 success, 1 runtime error, 2 usage error.  Output files are
 * written to a temporary name and renamed at the end, so an existing file is
 * only replaced by a complete one.
 *
 * The capture point is the client: server replies are seen one RTT after the
 * request, TCP ACKs acknowledge only data that had time to arrive.  TCP
 * has 20-byte headers (no options, so windows are at most 64 KB and limit
 * the data in flight); lost TCP segments shrink the congestion window but
 * are not retransmitted; lost UDP datagrams are simply missing.
 *
 * Payload bytes are zero.  Client addresses are private (192.168.1.0/24 or
 * 10.0.k.0/24, fd00::/8), server addresses come from the benchmarking
 * range 198.18.0.0/15 and the documentation prefix 2001:db8::/32.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "gentraffic"

/* ------------------------------------------------------------------------ */
/* Constants                                                                */
/* ------------------------------------------------------------------------ */

enum { DIR_C2S = 0, DIR_S2C = 1 };
enum { PROTO_TCP = 6, PROTO_UDP = 17 };

#define TCP_FIN 0x01u
#define TCP_SYN 0x02u
#define TCP_PSH 0x08u
#define TCP_ACK 0x10u

#define IP_MTU 1500u
#define ETH_HEADER_LEN 14u
#define MIN_FRAME_LEN 60u
#define HEADER_SNAPLEN 128u
#define PCAP_SNAPLEN 65535u
#define LINKTYPE_ETHERNET 1u
#define FRAME_BUF_LEN 1600u
#define CAPTURE_EPOCH 1704067200LL /* 2024-01-01T00:00:00Z */

#define DEFAULT_DURATION 180.0
#define DEFAULT_FLOWS_PER_CLASS 6u
#define DEFAULT_IPV6_SHARE 0.1
#define MAX_FLOWS_PER_CLASS 10000u
#define MAX_DURATION 86400.0

enum { CLS_VOIP, CLS_VIDEO, CLS_FILE, CLS_CHAT, CLS_BROWSING, NUM_CLASSES };

static const char *const class_names[NUM_CLASSES] = {
    "voip", "video", "file", "chat", "browsing"
};

/* ------------------------------------------------------------------------ */
/* Random numbers: xoshiro256** seeded through splitmix64                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint64_t s[4];
} Rng;

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static void rng_seed(Rng *r, uint64_t seed)
{
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&sm);
}

static uint64_t rng_next(Rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform in [0, 1). */
static double rng_unit(Rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_uniform(Rng *r, double lo, double hi)
{
    return lo + (hi - lo) * rng_unit(r);
}

/* Uniform in [0, n), n > 0, without modulo bias. */
static uint32_t rng_below(Rng *r, uint32_t n)
{
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = rng_next(r);
    while (x >= limit);
    return (uint32_t)(x % n);
}

/* Uniform integer in [lo, hi]. */
static int rng_int(Rng *r, int lo, int hi)
{
    return lo + (int)rng_below(r, (uint32_t)(hi - lo + 1));
}

static unsigned rng_uint(Rng *r, unsigned lo, unsigned hi)
{
    return lo + rng_below(r, hi - lo + 1u);
}

static int rng_chance(Rng *r, double p)
{
    return rng_unit(r) < p;
}

static double rng_exp(Rng *r, double mean)
{
    return -mean * log(1.0 - rng_unit(r));
}

static double rng_normal(Rng *r)
{
    const double u1 = 1.0 - rng_unit(r); /* (0, 1] */
    const double u2 = rng_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static double rng_lognormal(Rng *r, double median, double sigma)
{
    return median * exp(sigma * rng_normal(r));
}

static double clamp_double(double v, double lo, double hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* ------------------------------------------------------------------------ */
/* Flows and packets                                                        */
/* ------------------------------------------------------------------------ */

typedef struct {
    int64_t t_us;     /* microseconds since capture start */
    uint32_t order;   /* emission order, breaks timestamp ties */
    uint16_t payload; /* transport payload bytes */
    uint8_t dir;      /* DIR_C2S or DIR_S2C */
    uint8_t flags;    /* TCP flags, 0 for UDP */
} Packet;

typedef struct {
    int cls;
    const char *app;
    int proto;
    int ipv6;
    uint8_t client_ip[16];
    uint8_t server_ip[16];
    uint16_t client_port;
    uint16_t server_port;
    uint8_t tos;        /* IPv4 TOS / IPv6 traffic class */
    uint8_t server_ttl; /* as seen at the client-side capture point */
    uint16_t window[2];
    uint32_t isn[2];
    uint16_t ip_id[2];
    uint32_t flow_label;
    double rtt;         /* s; lets server ACKs lag behind client data */
    Packet *pkts;
    size_t npkts;
    size_t cap;
    /* writer state */
    size_t next;
    uint32_t seq_next[2];
    size_t lag_next;         /* first packet not yet seen by the server */
    uint32_t server_ack;     /* client sequence the server has received */
} Flow;

typedef struct {
    Flow *flows;
    size_t count;
    size_t cap;
} FlowSet;

typedef struct {
    Rng rng;
    double duration;
    int prefix_per_class;
    double ipv6_share;
    int out_of_memory;
} Sim;

static unsigned ip_header_len(const Flow *f)
{
    return f->ipv6 ? 40u : 20u;
}

static unsigned l4_header_len(const Flow *f)
{
    return f->proto == PROTO_TCP ? 20u : 8u;
}

/* Largest transport payload that keeps the IP packet within the MTU. */
static unsigned max_payload(const Flow *f)
{
    return IP_MTU - ip_header_len(f) - l4_header_len(f);
}

static int flow_is_tcp(const Flow *f)
{
    return f->proto == PROTO_TCP;
}

/* Appends one packet if it falls inside the capture window. */
static void emit(Sim *sim, Flow *f, double t, int dir, unsigned payload,
                 unsigned flags)
{
    Packet *p;
    if (!(t >= 0.0) || t >= sim->duration)
        return;
    if (payload > max_payload(f))
        payload = max_payload(f);
    if (f->npkts == f->cap) {
        const size_t cap = f->cap ? f->cap * 2 : 256;
        Packet *grown = realloc(f->pkts, cap * sizeof *grown);
        if (!grown) {
            sim->out_of_memory = 1;
            return;
        }
        f->pkts = grown;
        f->cap = cap;
    }
    p = &f->pkts[f->npkts];
    p->t_us = (int64_t)floor(t * 1e6);
    p->order = (uint32_t)f->npkts;
    p->payload = (uint16_t)payload;
    p->dir = (uint8_t)dir;
    p->flags = (uint8_t)flags;
    f->npkts++;
}

/* Application data: TCP segment with ACK|PSH, or a UDP datagram. */
static void emit_data(Sim *sim, Flow *f, double t, int dir, unsigned payload)
{
    emit(sim, f, t, dir, payload, flow_is_tcp(f) ? (TCP_ACK | TCP_PSH) : 0u);
}

/* Acknowledgement: TCP pure ACK, or a small QUIC-like ACK datagram. */
static void emit_ack(Sim *sim, Flow *f, double t, int dir)
{
    if (flow_is_tcp(f))
        emit(sim, f, t, dir, 0, TCP_ACK);
    else
        emit(sim, f, t, dir, rng_uint(&sim->rng, 28, 46), 0);
}

/* Delay before the capture point sees the reply to a packet sent at t in
 * direction dir: the capture sits at the client, so a reply from the server
 * comes one RTT later, a reply from the client almost at once. */
static double reply_delay(Sim *sim, int dir_of_request, double rtt)
{
    if (dir_of_request == DIR_C2S)
        return rtt * rng_uniform(&sim->rng, 1.0, 1.15);
    return rng_uniform(&sim->rng, 0.00005, 0.0004);
}

/* Delayed ACK by the receiver of a packet seen at t. */
static void emit_delayed_ack(Sim *sim, Flow *f, double t, int data_dir,
                             double rtt)
{
    double d = reply_delay(sim, data_dir, rtt);
    if (data_dir == DIR_S2C)
        d += rng_uniform(&sim->rng, 0.0, 0.04);
    emit_ack(sim, f, t + d, 1 - data_dir);
}

/* ------------------------------------------------------------------------ */
/* Transport building blocks                                                */
/* ------------------------------------------------------------------------ */

typedef struct {
    unsigned seg;       /* payload of a full data packet */
    unsigned ack_every; /* receiver acknowledges every n-th data packet */
    double rtt;         /* round-trip time, s */
    double max_pps;     /* bottleneck or rate limit, data packets per s */
    double loss;        /* per-packet congestion loss probability */
} Path;

typedef struct {
    double cwnd;      /* packets */
    double ssthresh;  /* packets */
    double last_send; /* time of the latest data packet, s */
} Cwnd;

#define INITIAL_CWND 10.0
#define IDLE_RESTART_S 1.0 /* idle time after which the window restarts */

static void cwnd_init(Cwnd *cc, double cwnd)
{
    cc->cwnd = cwnd;
    cc->ssthresh = 1e9;
    cc->last_send = -1e9;
}

/* Slow-start restart when the sender was idle before t (RFC 5681 4.1). */
static void cwnd_restart_if_idle(Cwnd *cc, double t)
{
    if (t - cc->last_send > IDLE_RESTART_S && cc->cwnd > INITIAL_CWND)
        cc->cwnd = INITIAL_CWND;
}

/* Bulk transfer of `bytes` in direction dir starting at t: window rounds
 * paced at the bottleneck rate, slow start then additive increase, a
 * halved window on loss, at most a receive window (no window scaling) in
 * flight over TCP, and the receiver's ACKs.  Lost UDP packets are
 * missing from the capture; lost TCP packets only shrink the window.
 * Returns the time of the last data packet. */
static double send_bulk(Sim *sim, Flow *f, double t, int dir, double bytes,
                        const Path *p, Cwnd *cc)
{
    Rng *r = &sim->rng;
    const double gap = 1.0 / p->max_pps;
    const double rwnd = floor((double)f->window[1 - dir] / (double)p->seg) - 1.0;
    const double pace_cap = p->max_pps * p->rtt * 2.0 + 4.0;
    const double cwnd_cap = flow_is_tcp(f) && rwnd < pace_cap ? rwnd : pace_cap;
    unsigned unacked = 0;
    double last = t;

    while (bytes > 0.0 && t < sim->duration) {
        const double round_start = t;
        long n = (long)cc->cwnd;
        if (n < 1)
            n = 1;
        for (long i = 0; i < n && bytes > 0.0; i++) {
            const int final = bytes <= (double)p->seg;
            const unsigned len = final ? (unsigned)ceil(bytes) : p->seg;
            const int lost = rng_chance(r, p->loss);
            bytes -= (double)len;
            if (lost) {
                cc->ssthresh = cc->cwnd / 2.0 < 2.0 ? 2.0 : cc->cwnd / 2.0;
                cc->cwnd = cc->ssthresh;
            }
            if (flow_is_tcp(f))
                emit(sim, f, t, dir, len, TCP_ACK | (final ? TCP_PSH : 0u));
            else if (!lost)
                emit(sim, f, t, dir, len, 0);
            if (++unacked >= p->ack_every || final) {
                /* steady path delay for the ACK clock: ACKs stay in order */
                const double d = dir == DIR_C2S ? p->rtt + rng_uniform(r, 0.0, 0.0002)
                                                : reply_delay(sim, dir, p->rtt);
                emit_ack(sim, f, t + d, 1 - dir);
                unacked = 0;
            }
            last = t;
            t += gap * rng_uniform(r, 0.8, 1.2);
        }
        if (t - round_start < p->rtt)
            t = round_start + p->rtt; /* wait for the ACK clock */
        cc->cwnd = cc->cwnd < cc->ssthresh ? cc->cwnd * 2.0 : cc->cwnd + 1.0;
        if (cc->cwnd > cwnd_cap)
            cc->cwnd = cwnd_cap;
    }
    cc->last_send = last;
    return last;
}

/* TCP three-way handshake at t; returns the time of the final ACK. */
static double tcp_open(Sim *sim, Flow *f, double t, double rtt)
{
    const double synack = t + reply_delay(sim, DIR_C2S, rtt);
    const double ack = synack + reply_delay(sim, DIR_S2C, rtt);
    emit(sim, f, t, DIR_C2S, 0, TCP_SYN);
    emit(sim, f, synack, DIR_S2C, 0, TCP_SYN | TCP_ACK);
    emit(sim, f, ack, DIR_C2S, 0, TCP_ACK);
    return ack;
}

/* Client-initiated close at t. */
static void tcp_close(Sim *sim, Flow *f, double t, double rtt)
{
    const double fin2 = t + reply_delay(sim, DIR_C2S, rtt);
    emit(sim, f, t, DIR_C2S, 0, TCP_FIN | TCP_ACK);
    emit(sim, f, fin2, DIR_S2C, 0, TCP_FIN | TCP_ACK);
    emit(sim, f, fin2 + reply_delay(sim, DIR_S2C, rtt), DIR_C2S, 0, TCP_ACK);
}

/* A burst of `bytes` from dir sent back to back (no window rounds). */
static double send_flight(Sim *sim, Flow *f, double t, int dir, unsigned bytes,
                          double rtt)
{
    const unsigned mss = max_payload(f);
    unsigned count = 0;
    while (bytes > 0) {
        const unsigned len = bytes > mss ? mss : bytes;
        bytes -= len;
        emit_data(sim, f, t, dir, len);
        if (++count % 2 == 0 || bytes == 0)
            emit_ack(sim, f, t + reply_delay(sim, dir, rtt), 1 - dir);
        t += rng_uniform(&sim->rng, 0.00008, 0.0003);
    }
    return t;
}

/* TLS 1.2/1.3-like handshake over an open TCP connection. */
static double tls_handshake(Sim *sim, Flow *f, double t, double rtt)
{
    Rng *r = &sim->rng;
    double ts;
    emit_data(sim, f, t, DIR_C2S, rng_uint(r, 512, 620)); /* ClientHello */
    ts = t + reply_delay(sim, DIR_C2S, rtt) + rng_uniform(r, 0.001, 0.01);
    ts = send_flight(sim, f, ts, DIR_S2C, rng_uint(r, 2600, 5200), rtt);
    ts += rng_uniform(r, 0.001, 0.005);
    emit_data(sim, f, ts, DIR_C2S, rng_uint(r, 64, 140)); /* Finished */
    ts += reply_delay(sim, DIR_C2S, rtt);
    emit_data(sim, f, ts, DIR_S2C, rng_uint(r, 180, 320)); /* tickets */
    emit_delayed_ack(sim, f, ts, DIR_S2C, rtt);
    return ts + 0.001;
}

/* QUIC-like handshake: padded Initials, server flight, short ACKs. */
static double quic_handshake(Sim *sim, Flow *f, double t, double rtt)
{
    Rng *r = &sim->rng;
    const unsigned initial = 1252u - (f->ipv6 ? 20u : 0u);
    double ts;
    int n;
    emit_data(sim, f, t, DIR_C2S, initial);
    ts = t + reply_delay(sim, DIR_C2S, rtt) + rng_uniform(r, 0.001, 0.006);
    n = rng_int(r, 2, 4);
    for (int i = 0; i < n; i++) {
        emit_data(sim, f, ts, DIR_S2C, i + 1 < n ? initial : rng_uint(r, 200, 900));
        ts += rng_uniform(r, 0.0001, 0.0004);
    }
    emit_data(sim, f, ts + 0.0005, DIR_C2S, rng_uint(r, 80, 160));
    emit_ack(sim, f, ts + 0.0008, DIR_C2S);
    ts += 0.001 + reply_delay(sim, DIR_C2S, rtt);
    emit_data(sim, f, ts, DIR_S2C, rng_uint(r, 200, 400)); /* HANDSHAKE_DONE */
    return ts + 0.001;
}

/* SSH banner and key exchange over an open TCP connection. */
static double ssh_handshake(Sim *sim, Flow *f, double t, double rtt)
{
    Rng *r = &sim->rng;
    double ts = t;
    emit_data(sim, f, ts, DIR_C2S, rng_uint(r, 21, 42)); /* banner */
    ts += reply_delay(sim, DIR_C2S, rtt);
    emit_data(sim, f, ts, DIR_S2C, rng_uint(r, 21, 42));
    ts += 0.0005;
    emit_data(sim, f, ts, DIR_C2S, rng_uint(r, 1300, 1460)); /* KEXINIT */
    ts += reply_delay(sim, DIR_C2S, rtt);
    emit_data(sim, f, ts, DIR_S2C, rng_uint(r, 900, 1100));
    ts += 0.001;
    emit_data(sim, f, ts, DIR_C2S, rng_uint(r, 44, 52)); /* ECDH init */
    ts += reply_delay(sim, DIR_C2S, rtt) + rng_uniform(r, 0.002, 0.01);
    emit_data(sim, f, ts, DIR_S2C, rng_uint(r, 500, 1100)); /* reply+NEWKEYS */
    for (int i = 0; i < 4; i++) { /* NEWKEYS, service request, auth */
        ts += rng_uniform(r, 0.0005, 0.003);
        emit_data(sim, f, ts, DIR_C2S, rng_uint(r, 16, 120));
        ts += reply_delay(sim, DIR_C2S, rtt);
        emit_data(sim, f, ts, DIR_S2C, rng_uint(r, 28, 120));
    }
    emit_delayed_ack(sim, f, ts, DIR_S2C, rtt);
    return ts + 0.001;
}

/* Connection set-up appropriate for the flow's protocol and port. */
static double open_connection(Sim *sim, Flow *f, double t, double rtt)
{
    if (!flow_is_tcp(f))
        return f->server_port == 443 ? quic_handshake(sim, f, t, rtt) : t;
    t = tcp_open(sim, f, t, rtt);
    if (f->server_port == 443)
        return tls_handshake(sim, f, t, rtt);
    if (f->server_port == 22)
        return ssh_handshake(sim, f, t, rtt);
    return t;
}

/* Capture start offset for a flow of nominal length `length`: flows may
 * have started before the capture, and at least half of the part that fits
 * lies inside it. */
static double place_start(Sim *sim, double length)
{
    const double inside = length < sim->duration ? length : sim->duration;
    return rng_uniform(&sim->rng, -0.25 * length, sim->duration - 0.5 * inside);
}

static double capture_end(const Sim *sim, double end)
{
    return end < sim->duration ? end : sim->duration;
}

/* ------------------------------------------------------------------------ */
/* VoIP                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    double ptime;           /* packet interval, s */
    unsigned voice_min;     /* UDP payload while talking (RTP header incl.) */
    unsigned voice_max;
    int dtx;                /* silence suppression */
    double cn_interval;     /* comfort-noise packet interval in silence, s */
    unsigned cn_payload;
    double jitter;          /* std dev of network delay noise, s */
    double loss;
    unsigned port_lo, port_hi; /* server-side port range */
} VoipApp;

/* Sizes are UDP payloads; over IPv4 add 28 for the IP packet size. */
static const VoipApp voip_apps[] = {
    /* G.711 20 ms: 160 B voice + 12 B RTP = 200 B IP packets, no VAD */
    { "g711-20ms", 0.020, 172, 172, 0, 0.0, 0, 0.002, 0.003, 16384, 32766 },
    /* Opus 20 ms VBR: 60-160 B IP packets, DTX every 400 ms */
    { "opus-20ms", 0.020, 32, 132, 1, 0.400, 15, 0.004, 0.010, 3478, 3497 },
    /* G.729 30 ms: 30 B voice, VAD with SID frames */
    { "g729-30ms", 0.030, 42, 42, 1, 0.160, 14, 0.003, 0.005, 16384, 32766 },
    /* low-latency 10 ms frames, DTX */
    { "opus-10ms", 0.010, 50, 110, 1, 0.400, 15, 0.002, 0.004, 50000, 50019 },
};

#define VOIP_TALK_MEAN 1.1     /* s, talk spurt (Brady-like on/off) */
#define VOIP_SILENCE_MEAN 1.5  /* s */

static unsigned voip_voice_payload(Sim *sim, const VoipApp *a, double level)
{
    const double v = level + 10.0 * rng_normal(&sim->rng);
    return (unsigned)clamp_double(v, (double)a->voice_min, (double)a->voice_max);
}

/* One RTP stream: sender clock ticks every ptime, talk spurts and silence,
 * delay jitter (mostly on the far side), occasional delay spikes, loss. */
static void voip_stream(Sim *sim, Flow *f, const VoipApp *a, double t0,
                        double t1, int dir)
{
    Rng *r = &sim->rng;
    const double jitter = dir == DIR_S2C ? a->jitter : a->jitter * 0.1;
    int talking = rng_chance(r, 0.5);
    double state_end = t0 + rng_exp(r, talking ? VOIP_TALK_MEAN : VOIP_SILENCE_MEAN);
    double level = rng_uniform(r, (double)a->voice_min, (double)a->voice_max);
    double next_cn = t0;
    t1 = capture_end(sim, t1);

    for (long k = 0;; k++) {
        const double t = t0 + (double)k * a->ptime;
        unsigned payload;
        double delay;
        if (t >= t1)
            break;
        while (t >= state_end) {
            talking = !talking;
            state_end += rng_exp(r, talking ? VOIP_TALK_MEAN : VOIP_SILENCE_MEAN);
            if (talking)
                level = rng_uniform(r, (double)a->voice_min, (double)a->voice_max);
            else
                next_cn = t;
        }
        if (talking || !a->dtx) {
            payload = voip_voice_payload(sim, a, level);
        } else if (t >= next_cn) {
            payload = a->cn_payload;
            next_cn = t + a->cn_interval;
        } else {
            continue;
        }
        if (rng_chance(r, a->loss))
            continue;
        delay = jitter * fabs(rng_normal(r));
        if (dir == DIR_S2C && rng_chance(r, 0.002))
            delay += rng_uniform(r, 0.02, 0.12);
        emit(sim, f, t + delay, dir, payload, 0);
    }
}

static void gen_voip(Sim *sim, Flow *f, const VoipApp *a)
{
    Rng *r = &sim->rng;
    const double length = clamp_double(rng_lognormal(r, 75.0, 0.6), 20.0, 600.0);
    const double t0 = place_start(sim, length);
    const double answer = rng_uniform(r, 0.05, 1.5);
    voip_stream(sim, f, a, t0, t0 + length, DIR_C2S);
    voip_stream(sim, f, a, t0 + answer, t0 + length, DIR_S2C);
}

/* ------------------------------------------------------------------------ */
/* Video streaming                                                          */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    int quic;                       /* UDP/443 instead of TCP/443 */
    unsigned seg_payload;           /* QUIC packet payload (TCP uses MSS) */
    double period_min, period_max;  /* s of media per segment */
    double kbps_min, kbps_max;      /* media bitrate */
    double startup_s;               /* media prefetched at start, s */
    double pps_min, pps_max;        /* delivery rate inside a burst */
    unsigned ack_every;
    double rtt_min, rtt_max;
} VideoApp;

static const VideoApp video_apps[] = {
    { "dash-tcp", 0, 0, 4.5, 5.5, 220, 550, 20, 900, 1800, 2, 0.015, 0.05 },
    { "quic-abr", 1, 1350, 2.0, 4.0, 180, 500, 16, 700, 1500, 2, 0.010, 0.04 },
    { "long-segment", 0, 0, 8.0, 10.0, 250, 600, 30, 1200, 2500, 2, 0.020, 0.07 },
    { "quic-live", 1, 1452, 2.0, 2.4, 200, 450, 6, 500, 1000, 4, 0.020, 0.06 },
};

static void gen_video(Sim *sim, Flow *f, const VideoApp *a)
{
    Rng *r = &sim->rng;
    const double length = clamp_double(rng_lognormal(r, 150.0, 0.5), 45.0, 1200.0);
    const double t0 = place_start(sim, length);
    const double t_end = capture_end(sim, t0 + length);
    double kbps = rng_uniform(r, a->kbps_min, a->kbps_max);
    double fetched = 0.0; /* s of media downloaded */
    double busy_until = t0; /* last data packet so far */
    double t;
    Path path;
    Cwnd cc;

    path.seg = a->quic ? a->seg_payload : max_payload(f);
    path.ack_every = a->ack_every;
    path.rtt = rng_uniform(r, a->rtt_min, a->rtt_max);
    path.max_pps = rng_uniform(r, a->pps_min, a->pps_max);
    path.loss = a->quic ? 0.002 : 0.0005;
    cwnd_init(&cc, INITIAL_CWND);
    f->rtt = path.rtt;

    t = open_connection(sim, f, t0, path.rtt);
    while (t < t_end) {
        const double seg_s = rng_uniform(r, a->period_min, a->period_max);
        const double bytes = kbps * 125.0 * seg_s * rng_uniform(r, 0.7, 1.3);
        const double request_t = t;
        double done, next;
        const double data_t = request_t + reply_delay(sim, DIR_C2S, path.rtt)
                              + rng_uniform(r, 0.002, 0.03);
        emit_data(sim, f, request_t, DIR_C2S, rng_uint(r, 300, 700));
        cwnd_restart_if_idle(&cc, data_t);
        done = send_bulk(sim, f, data_t, DIR_S2C, bytes, &path, &cc);
        fetched += seg_s;
        busy_until = done;
        if (fetched < a->startup_s)
            next = done + rng_uniform(r, 0.005, 0.05); /* filling the buffer */
        else
            next = request_t + seg_s * rng_uniform(r, 0.95, 1.05);
        if (next < done)
            next = done + rng_uniform(r, 0.005, 0.05); /* fell behind */
        if (rng_chance(r, 0.08)) /* adaptive bitrate switch */
            kbps = clamp_double(kbps * (rng_chance(r, 0.5) ? 0.6 : 1.6),
                                a->kbps_min * 0.5, a->kbps_max * 1.25);
        t = next;
    }
    if (flow_is_tcp(f) && t0 + length < sim->duration)
        tcp_close(sim, f, (busy_until > t_end ? busy_until : t_end) + 0.05, path.rtt);
}

/* ------------------------------------------------------------------------ */
/* File transfer                                                            */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    unsigned port;
    int upload;                 /* data flows client -> server */
    double pps_min, pps_max;    /* bottleneck or rate limit */
    double mb_min, mb_max;      /* size of one transfer, MB */
    int chunks_min, chunks_max; /* transfers separated by short gaps */
    double gap_min, gap_max;    /* s */
    int slow_start;             /* 0: token-bucket limiter, full rate at once */
    unsigned ack_every;
    double loss;
    double rtt_min, rtt_max;
} FileApp;

static const FileApp file_apps[] = {
    { "scp", 22, 0, 400, 1200, 1.0, 4.0, 1, 3, 0.5, 3.0, 1, 2, 0.0003, 0.010, 0.040 },
    { "ftp-ratelimited", 20, 0, 40, 110, 2.5, 6.0, 1, 1, 0, 0, 0, 3, 0.0, 0.030, 0.120 },
    { "cloud-upload", 443, 1, 150, 500, 0.4, 1.5, 2, 6, 0.3, 2.0, 1, 2, 0.001, 0.020, 0.080 },
    { "http-bulk", 80, 0, 1000, 2500, 3.0, 8.0, 1, 1, 0, 0, 1, 4, 0.002, 0.020, 0.090 },
    { "backup-throttled", 22, 1, 30, 80, 2.0, 5.0, 1, 1, 0, 0, 0, 2, 0.0, 0.020, 0.100 },
};

static void gen_file(Sim *sim, Flow *f, const FileApp *a)
{
    Rng *r = &sim->rng;
    const int dir = a->upload ? DIR_C2S : DIR_S2C;
    const int chunks = rng_int(r, a->chunks_min, a->chunks_max);
    double t = rng_uniform(r, -0.1 * sim->duration, 0.8 * sim->duration);
    Path path;
    Cwnd cc;

    path.seg = max_payload(f);
    path.ack_every = a->ack_every;
    path.rtt = rng_uniform(r, a->rtt_min, a->rtt_max);
    path.max_pps = rng_uniform(r, a->pps_min, a->pps_max);
    path.loss = a->loss;
    cwnd_init(&cc, a->slow_start ? INITIAL_CWND : path.max_pps * path.rtt * 2.0 + 4.0);
    f->rtt = path.rtt;

    t = open_connection(sim, f, t, path.rtt);
    for (int c = 0; c < chunks && t < sim->duration; c++) {
        const double bytes = rng_uniform(r, a->mb_min, a->mb_max) * 1e6;
        if (!a->upload) { /* request, e.g. RETR / GET / sftp read */
            emit_data(sim, f, t, DIR_C2S, rng_uint(r, 60, 400));
            t += reply_delay(sim, DIR_C2S, path.rtt) + rng_uniform(r, 0.001, 0.02);
        } else if (a->slow_start) {
            cwnd_restart_if_idle(&cc, t);
        }
        t = send_bulk(sim, f, t, dir, bytes, &path, &cc);
        t += a->upload ? 1.2 * path.rtt : 0.001; /* last ACK is in */
        if (a->upload) /* server confirms the chunk */
            emit_data(sim, f, t + 0.002, DIR_S2C, rng_uint(r, 150, 500));
        t += rng_uniform(r, a->gap_min, a->gap_max) + 0.003;
    }
    if (flow_is_tcp(f))
        tcp_close(sim, f, t, path.rtt);
}

/* ------------------------------------------------------------------------ */
/* Chat                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    unsigned port;
    double keepalive;               /* s between client pings */
    unsigned ping_payload;
    double presence_mean;           /* mean s between server pushes */
    double active_mean, idle_mean;  /* conversation on/off periods, s */
    double msg_gap_mean;            /* mean s between messages when active */
    unsigned msg_min, msg_max;      /* message payload */
    int burst_max;                  /* messages sent in one go */
    double picture_prob;            /* chance a message is a picture */
    double picture_kb_min, picture_kb_max;
    double rtt_min, rtt_max;
} ChatApp;

static const ChatApp chat_apps[] = {
    { "xmpp", 5222, 60, 40, 25, 60, 30, 7, 80, 560, 3, 0.03, 40, 200, 0.030, 0.090 },
    { "mobile-im", 5228, 25, 20, 30, 45, 40, 6, 100, 420, 2, 0.05, 60, 300, 0.040, 0.150 },
    { "group-chat", 443, 45, 35, 18, 90, 30, 4, 60, 600, 4, 0.04, 50, 250, 0.020, 0.080 },
    { "irc", 6697, 10, 30, 40, 60, 40, 8, 50, 300, 3, 0.0, 0, 0, 0.030, 0.120 },
};

/* Message of `payload` bytes seen at t, with the receiver's ACK. */
static void chat_message(Sim *sim, Flow *f, double t, int dir, unsigned payload,
                         double rtt)
{
    emit_data(sim, f, t, dir, payload);
    emit_delayed_ack(sim, f, t, dir, rtt);
}

/* A burst of messages from dir, typing notice, delivery receipt.  Returns
 * the time of the receipt. */
static double chat_conversation_turn(Sim *sim, Flow *f, const ChatApp *a,
                                   double t, double rtt, Cwnd *cc)
{
    Rng *r = &sim->rng;
    const int dir = rng_chance(r, 0.5) ? DIR_C2S : DIR_S2C;
    const int n = rng_int(r, 1, a->burst_max);
    double receipt;
    chat_message(sim, f, t, dir, rng_uint(r, 40, 90), rtt); /* typing... */
    t += rng_uniform(r, 1.0, 4.0);
    for (int i = 0; i < n; i++) {
        if (rng_chance(r, a->picture_prob)) {
            const double bytes = rng_uniform(r, a->picture_kb_min, a->picture_kb_max) * 1000.0;
            Path p;
            p.seg = max_payload(f);
            p.ack_every = 2;
            p.rtt = rtt;
            p.max_pps = rng_uniform(r, 200.0, 800.0);
            p.loss = 0.0;
            chat_message(sim, f, t, dir, rng_uint(r, 150, 400), rtt);
            cwnd_restart_if_idle(cc, t + 0.002);
            t = send_bulk(sim, f, t + 0.002, dir, bytes, &p, cc);
        } else {
            chat_message(sim, f, t, dir, rng_uint(r, a->msg_min, a->msg_max), rtt);
        }
        t += rng_uniform(r, 0.3, 2.5);
    }
    receipt = t + rng_uniform(r, 0.2, 3.0);
    chat_message(sim, f, receipt, 1 - dir, rng_uint(r, 50, 110), rtt);
    return receipt;
}

static void gen_chat(Sim *sim, Flow *f, const ChatApp *a)
{
    Rng *r = &sim->rng;
    const double length = sim->duration * rng_uniform(r, 1.2, 3.0);
    const double t0 = place_start(sim, length);
    const double t_end = capture_end(sim, t0 + length);
    const double rtt = rng_uniform(r, a->rtt_min, a->rtt_max);
    int active = rng_chance(r, 0.5);
    double busy_until = t0; /* end of the latest conversation turn */
    double state_end, next_ping, next_push, next_msg, t;
    Cwnd cc;

    cwnd_init(&cc, INITIAL_CWND);
    f->rtt = rtt;
    t = open_connection(sim, f, t0, rtt);
    state_end = t + rng_exp(r, active ? a->active_mean : a->idle_mean);
    next_ping = t + rng_uniform(r, 0.0, a->keepalive);
    next_push = t + rng_exp(r, a->presence_mean);
    next_msg = t + rng_exp(r, a->msg_gap_mean);

    for (;;) {
        t = next_ping;
        if (next_push < t)
            t = next_push;
        if (active && next_msg < t)
            t = next_msg;
        if (state_end < t)
            t = state_end;
        if (t >= t_end)
            break;
        if (t == state_end) {
            active = !active;
            state_end = t + rng_exp(r, active ? a->active_mean : a->idle_mean);
            next_msg = t + rng_exp(r, a->msg_gap_mean * 0.5);
        } else if (t == next_ping) { /* ping, pong, ACK */
            const double pong = t + reply_delay(sim, DIR_C2S, rtt);
            emit_data(sim, f, t, DIR_C2S, a->ping_payload);
            chat_message(sim, f, pong, DIR_S2C, a->ping_payload + rng_uint(r, 0, 8), rtt);
            next_ping = t + a->keepalive * rng_uniform(r, 0.95, 1.05);
        } else if (t == next_push) { /* presence / notification */
            chat_message(sim, f, t, DIR_S2C, rng_uint(r, 60, 240), rtt);
            next_push = t + rng_exp(r, a->presence_mean);
        } else {
            const double end = chat_conversation_turn(sim, f, a, t, rtt, &cc);
            if (end > busy_until)
                busy_until = end;
            next_msg = t + rng_exp(r, a->msg_gap_mean);
        }
    }
    if (flow_is_tcp(f) && t0 + length < sim->duration)
        tcp_close(sim, f, (busy_until > t_end ? busy_until : t_end) + 0.5, rtt);
}

/* ------------------------------------------------------------------------ */
/* Web browsing                                                             */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    unsigned port;
    int conns_min, conns_max; /* parallel connections of a session */
    double html_kb;           /* median main document size */
    int objs_min, objs_max;   /* objects per connection per page */
    double obj_kb;            /* median object size */
    double think_median;      /* s between page loads */
    double pps_min, pps_max;  /* access-link rate */
    double rtt_min, rtt_max;
} WebApp;

static const WebApp web_apps[] = {
    { "news", 443, 3, 4, 70, 3, 8, 10, 10, 800, 2500, 0.020, 0.080 },
    { "search", 443, 1, 2, 30, 1, 4, 4, 6, 800, 2000, 0.010, 0.040 },
    { "social-feed", 443, 2, 3, 20, 2, 6, 25, 4, 500, 1500, 0.030, 0.100 },
    { "plain-http", 80, 2, 4, 25, 2, 6, 8, 12, 400, 1200, 0.040, 0.150 },
};

#define MAX_SESSION_CONNS 4

/* One HTTP request/response on an idle connection; returns the time the
 * response is complete. */
static double web_fetch(Sim *sim, Flow *f, double t, double bytes,
                        const Path *p, Cwnd *cc)
{
    Rng *r = &sim->rng;
    emit_data(sim, f, t, DIR_C2S, rng_uint(r, 220, 720));
    t += reply_delay(sim, DIR_C2S, p->rtt) + rng_uniform(r, 0.003, 0.08);
    if (bytes < 600.0) { /* 304 / tiny JSON */
        emit_data(sim, f, t, DIR_S2C, (unsigned)bytes);
        emit_delayed_ack(sim, f, t, DIR_S2C, p->rtt);
        return t;
    }
    cwnd_restart_if_idle(cc, t);
    return send_bulk(sim, f, t, DIR_S2C, bytes, p, cc);
}

static double web_object_size(Sim *sim, const WebApp *a)
{
    Rng *r = &sim->rng;
    if (rng_chance(r, 0.2))
        return rng_uniform(r, 150.0, 550.0);
    return clamp_double(rng_lognormal(r, a->obj_kb * 1000.0, 1.2), 300.0, 800e3);
}

/* A browsing session: `n` connections of one client share a timeline of
 * page loads; connection 0 carries the main document. */
static void gen_browsing_session(Sim *sim, Flow *conns, int n, const WebApp *a)
{
    Rng *r = &sim->rng;
    const double length = clamp_double(rng_lognormal(r, 120.0, 0.6), 40.0, 900.0);
    const double t0 = place_start(sim, length);
    const double t_end = capture_end(sim, t0 + length);
    Path path[MAX_SESSION_CONNS];
    Cwnd cc[MAX_SESSION_CONNS];
    double ready[MAX_SESSION_CONNS]; /* connection idle from this time */
    int opened[MAX_SESSION_CONNS];
    double t = t0;
    double busy_until = t0; /* end of the latest response */
    int page = 0;

    for (int c = 0; c < n; c++) {
        path[c].seg = max_payload(&conns[c]);
        path[c].ack_every = 2;
        path[c].rtt = rng_uniform(r, a->rtt_min, a->rtt_max);
        path[c].max_pps = rng_uniform(r, a->pps_min, a->pps_max);
        path[c].loss = 0.001;
        cwnd_init(&cc[c], INITIAL_CWND);
        conns[c].rtt = path[c].rtt;
        ready[c] = t0;
        opened[c] = 0;
    }
    while (t < t_end) {
        double html_done, page_done;
        if (!opened[0]) {
            ready[0] = open_connection(sim, &conns[0], t, path[0].rtt);
            opened[0] = 1;
        }
        html_done = web_fetch(sim, &conns[0], ready[0],
                              rng_lognormal(r, a->html_kb * 1000.0, 0.6), &path[0], &cc[0]);
        html_done += rng_uniform(r, 0.03, 0.3); /* parse */
        page_done = html_done;
        for (int c = 0; c < n; c++) {
            const int objs = rng_int(r, page == 0 || c > 0 ? a->objs_min : 0, a->objs_max);
            double tc = html_done + rng_uniform(r, 0.0, 0.05);
            if (!opened[c]) {
                tc = open_connection(sim, &conns[c], tc, path[c].rtt);
                opened[c] = 1;
            }
            for (int k = 0; k < objs; k++)
                tc = web_fetch(sim, &conns[c], tc, web_object_size(sim, a),
                               &path[c], &cc[c]) + rng_uniform(r, 0.001, 0.02);
            ready[c] = tc;
            if (tc > page_done)
                page_done = tc;
        }
        t = page_done + clamp_double(rng_lognormal(r, a->think_median, 0.8), 0.5, 45.0);
        busy_until = page_done;
        if (rng_chance(r, 0.4)) { /* beacon / XHR while the user reads */
            const double beacon = rng_uniform(r, page_done, t);
            busy_until = web_fetch(sim, &conns[0], beacon, rng_uniform(r, 100.0, 2000.0),
                                   &path[0], &cc[0]);
        }
        for (int c = 0; c < n; c++)
            if (ready[c] < t)
                ready[c] = t;
        page++;
    }
    if (t0 + length < sim->duration)
        for (int c = 0; c < n; c++)
            if (opened[c] && flow_is_tcp(&conns[c]))
                tcp_close(sim, &conns[c], (busy_until > t_end ? busy_until : t_end)
                          + rng_uniform(r, 0.1, 0.5), path[c].rtt);
}

/* ------------------------------------------------------------------------ */
/* Flow identities                                                          */
/* ------------------------------------------------------------------------ */

static void put16be(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put16le(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Client address: one LAN by default, or one prefix per class. */
static void pick_client_ip(Sim *sim, int cls, int ipv6, uint8_t ip[16])
{
    Rng *r = &sim->rng;
    memset(ip, 0, 16);
    if (!ipv6) {
        ip[0] = sim->prefix_per_class ? 10 : 192;
        ip[1] = sim->prefix_per_class ? 0 : 168;
        ip[2] = (uint8_t)(sim->prefix_per_class ? cls + 1 : 1);
        ip[3] = (uint8_t)rng_uint(r, 10, sim->prefix_per_class ? 250 : 40);
        return;
    }
    ip[0] = 0xfd;
    ip[7] = (uint8_t)(sim->prefix_per_class ? cls + 1 : 0xff);
    put32be(ip + 8, (uint32_t)rng_next(r) & 0xfdffffffu); /* local IID */
    put32be(ip + 12, sim->prefix_per_class ? (uint32_t)rng_next(r)
                                           : 0x100u + rng_below(r, 30));
}

static void pick_server_ip(Sim *sim, int ipv6, uint8_t ip[16])
{
    Rng *r = &sim->rng;
    memset(ip, 0, 16);
    if (!ipv6) { /* 198.18.0.0/15 */
        ip[0] = 198;
        ip[1] = (uint8_t)(18 + rng_below(r, 2));
        ip[2] = (uint8_t)rng_below(r, 256);
        ip[3] = (uint8_t)rng_uint(r, 1, 254);
        return;
    }
    put32be(ip, 0x20010db8u); /* 2001:db8::/32 */
    put32be(ip + 4, (uint32_t)rng_next(r));
    ip[15] = (uint8_t)rng_uint(r, 1, 254);
}

static int same_tuple(const Flow *a, const Flow *b)
{
    return a->proto == b->proto && a->ipv6 == b->ipv6
        && a->client_port == b->client_port && a->server_port == b->server_port
        && memcmp(a->client_ip, b->client_ip, 16) == 0
        && memcmp(a->server_ip, b->server_ip, 16) == 0;
}

static int tuple_taken(const FlowSet *fs, const Flow *f)
{
    for (size_t i = 0; i < fs->count; i++)
        if (same_tuple(&fs->flows[i], f))
            return 1;
    return 0;
}

static uint16_t pick_client_port(Sim *sim, int rtp)
{
    if (rtp)
        return (uint16_t)(rng_uint(&sim->rng, 8192, 16383) * 2u);
    return (uint16_t)rng_uint(&sim->rng, 32768, 60999);
}

/* Appends a new flow with a fresh 5-tuple.  A non-NULL client_ip (and
 * ipv6 flag) reuses the client of an earlier flow of the same session. */
static Flow *add_flow(Sim *sim, FlowSet *fs, int cls, const char *app,
                      int proto, unsigned server_port, int ipv6,
                      const uint8_t *client_ip)
{
    Rng *r = &sim->rng;
    Flow *f = &fs->flows[fs->count];
    const int rtp = cls == CLS_VOIP;
    memset(f, 0, sizeof *f);
    f->cls = cls;
    f->app = app;
    f->proto = proto;
    f->ipv6 = ipv6;
    if (client_ip)
        memcpy(f->client_ip, client_ip, 16);
    else
        pick_client_ip(sim, cls, ipv6, f->client_ip);
    pick_server_ip(sim, ipv6, f->server_ip);
    f->server_port = (uint16_t)server_port;
    do
        f->client_port = pick_client_port(sim, rtp);
    while (tuple_taken(fs, f));
    f->tos = cls == CLS_VOIP ? 0xb8 : 0; /* DSCP EF for voice */
    f->server_ttl = (uint8_t)((rng_chance(r, 0.7) ? 64u : 128u) - rng_uint(r, 6, 22));
    f->window[DIR_C2S] = (uint16_t)rng_uint(r, 60000, 65535); /* no scaling */
    f->window[DIR_S2C] = (uint16_t)rng_uint(r, 60000, 65535);
    f->isn[DIR_C2S] = (uint32_t)rng_next(r);
    f->isn[DIR_S2C] = (uint32_t)rng_next(r);
    f->ip_id[DIR_C2S] = (uint16_t)rng_next(r);
    f->ip_id[DIR_S2C] = (uint16_t)rng_next(r);
    f->flow_label = (uint32_t)rng_next(r) & 0xfffffu;
    fs->count++;
    return f;
}

/* ------------------------------------------------------------------------ */
/* Generating the classes                                                   */
/* ------------------------------------------------------------------------ */

#define NUM_APPS(table) ((int)(sizeof(table) / sizeof((table)[0])))

#define MAX_PLACEMENT_TRIES 20

/* When one of the n flows has no packet inside the capture (it ended
 * before or started after it), clears them all and asks for another try
 * with a new placement. */
static int retry_if_empty(Sim *sim, Flow *flows, int n, int *tries)
{
    int empty = 0;
    for (int i = 0; i < n; i++)
        if (flows[i].npkts == 0)
            empty = 1;
    if (!empty || sim->out_of_memory || ++*tries >= MAX_PLACEMENT_TRIES)
        return 0;
    for (int i = 0; i < n; i++)
        flows[i].npkts = 0;
    return 1;
}

static int pick_ipv6(Sim *sim)
{
    return rng_chance(&sim->rng, sim->ipv6_share);
}

static void gen_class_voip(Sim *sim, FlowSet *fs, unsigned n)
{
    int tries;
    const int rot = rng_int(&sim->rng, 0, NUM_APPS(voip_apps) - 1);
    for (unsigned j = 0; j < n && !sim->out_of_memory; j++) {
        const VoipApp *a = &voip_apps[((unsigned)rot + j) % (unsigned)NUM_APPS(voip_apps)];
        const unsigned port = rng_uint(&sim->rng, a->port_lo, a->port_hi) & ~1u;
        Flow *f = add_flow(sim, fs, CLS_VOIP, a->name, PROTO_UDP,
                           port < a->port_lo ? port + 2 : port, pick_ipv6(sim), NULL);
        tries = 0;
        do
            gen_voip(sim, f, a);
        while (retry_if_empty(sim, f, 1, &tries));
    }
}

static void gen_class_video(Sim *sim, FlowSet *fs, unsigned n)
{
    int tries;
    const int rot = rng_int(&sim->rng, 0, NUM_APPS(video_apps) - 1);
    for (unsigned j = 0; j < n && !sim->out_of_memory; j++) {
        const VideoApp *a = &video_apps[((unsigned)rot + j) % (unsigned)NUM_APPS(video_apps)];
        Flow *f = add_flow(sim, fs, CLS_VIDEO, a->name,
                           a->quic ? PROTO_UDP : PROTO_TCP, 443, pick_ipv6(sim), NULL);
        tries = 0;
        do
            gen_video(sim, f, a);
        while (retry_if_empty(sim, f, 1, &tries));
    }
}

static void gen_class_file(Sim *sim, FlowSet *fs, unsigned n)
{
    int tries;
    const int rot = rng_int(&sim->rng, 0, NUM_APPS(file_apps) - 1);
    for (unsigned j = 0; j < n && !sim->out_of_memory; j++) {
        const FileApp *a = &file_apps[((unsigned)rot + j) % (unsigned)NUM_APPS(file_apps)];
        Flow *f = add_flow(sim, fs, CLS_FILE, a->name, PROTO_TCP, a->port,
                           pick_ipv6(sim), NULL);
        tries = 0;
        do
            gen_file(sim, f, a);
        while (retry_if_empty(sim, f, 1, &tries));
    }
}

static void gen_class_chat(Sim *sim, FlowSet *fs, unsigned n)
{
    int tries;
    const int rot = rng_int(&sim->rng, 0, NUM_APPS(chat_apps) - 1);
    for (unsigned j = 0; j < n && !sim->out_of_memory; j++) {
        const ChatApp *a = &chat_apps[((unsigned)rot + j) % (unsigned)NUM_APPS(chat_apps)];
        Flow *f = add_flow(sim, fs, CLS_CHAT, a->name, PROTO_TCP, a->port,
                           pick_ipv6(sim), NULL);
        tries = 0;
        do
            gen_chat(sim, f, a);
        while (retry_if_empty(sim, f, 1, &tries));
    }
}

static void gen_class_browsing(Sim *sim, FlowSet *fs, unsigned n)
{
    int tries;
    const int rot = rng_int(&sim->rng, 0, NUM_APPS(web_apps) - 1);
    unsigned j = 0;
    for (unsigned session = 0; j < n && !sim->out_of_memory; session++) {
        const WebApp *a = &web_apps[((unsigned)rot + session) % (unsigned)NUM_APPS(web_apps)];
        const int ipv6 = pick_ipv6(sim);
        int k = rng_int(&sim->rng, a->conns_min, a->conns_max);
        Flow *first = NULL;
        if ((unsigned)k > n - j)
            k = (int)(n - j);
        for (int c = 0; c < k; c++) {
            Flow *f = add_flow(sim, fs, CLS_BROWSING, a->name, PROTO_TCP, a->port,
                               ipv6, first ? first->client_ip : NULL);
            if (!first)
                first = f;
        }
        tries = 0;
        do
            gen_browsing_session(sim, first, k, a);
        while (retry_if_empty(sim, first, k, &tries));
        j += (unsigned)k;
    }
}

static int packet_cmp(const void *pa, const void *pb)
{
    const Packet *a = pa, *b = pb;
    if (a->t_us != b->t_us)
        return a->t_us < b->t_us ? -1 : 1;
    return a->order < b->order ? -1 : (a->order > b->order);
}

/* Builds every flow of the enabled classes; 0 on success. */
static int generate_flows(Sim *sim, FlowSet *fs, const int enabled[NUM_CLASSES],
                          unsigned flows_per_class)
{
    fs->cap = (size_t)flows_per_class * NUM_CLASSES;
    fs->count = 0;
    fs->flows = calloc(fs->cap, sizeof *fs->flows);
    if (!fs->flows)
        return -1;
    for (int c = 0; c < NUM_CLASSES && !sim->out_of_memory; c++) {
        if (!enabled[c])
            continue;
        switch (c) {
        case CLS_VOIP: gen_class_voip(sim, fs, flows_per_class); break;
        case CLS_VIDEO: gen_class_video(sim, fs, flows_per_class); break;
        case CLS_FILE: gen_class_file(sim, fs, flows_per_class); break;
        case CLS_CHAT: gen_class_chat(sim, fs, flows_per_class); break;
        default: gen_class_browsing(sim, fs, flows_per_class); break;
        }
    }
    if (sim->out_of_memory)
        return -1;
    for (size_t i = 0; i < fs->count; i++)
        if (fs->flows[i].npkts > 1)
            qsort(fs->flows[i].pkts, fs->flows[i].npkts, sizeof(Packet), packet_cmp);
    return 0;
}

static void free_flows(FlowSet *fs)
{
    for (size_t i = 0; i < fs->count; i++)
        free(fs->flows[i].pkts);
    free(fs->flows);
    fs->flows = NULL;
    fs->count = fs->cap = 0;
}

/* ------------------------------------------------------------------------ */
/* Frames                                                                   */
/* ------------------------------------------------------------------------ */

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (uint32_t)p[i] << 8 | p[i + 1];
    if (len & 1u)
        sum += (uint32_t)p[len - 1] << 8;
    return sum;
}

static uint16_t fold_checksum(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffffu) + (sum >> 16);
    return (uint16_t)~sum;
}

static void mac_for(const uint8_t ip[16], int ipv6, uint8_t mac[6])
{
    const uint8_t *tail = ipv6 ? ip + 12 : ip;
    mac[0] = 0x02;
    mac[1] = 0x00;
    memcpy(mac + 2, tail, 4);
}

/* Writes Ethernet, IP and transport headers of packet p of flow f into buf
 * (headers only; the caller zeroes the payload) and advances the flow's
 * TCP sequence numbers and IP IDs.  Returns the header length. */
static size_t build_headers(Flow *f, const Packet *p, uint8_t *buf)
{
    static const uint8_t gateway_mac[6] = { 0x02, 0x42, 0xac, 0x11, 0x00, 0x01 };
    const int dir = p->dir;
    const int c2s = dir == DIR_C2S;
    const unsigned iphl = ip_header_len(f);
    const unsigned l4hl = l4_header_len(f);
    const unsigned l4len = l4hl + p->payload;
    const uint8_t *src = c2s ? f->client_ip : f->server_ip;
    const uint8_t *dst = c2s ? f->server_ip : f->client_ip;
    const unsigned addr_len = f->ipv6 ? 16u : 4u;
    uint8_t client_mac[6];
    uint8_t *ip = buf + ETH_HEADER_LEN;
    uint8_t *l4 = ip + iphl;
    uint8_t pseudo[40];
    uint32_t sum;
    uint16_t csum;

    mac_for(f->client_ip, f->ipv6, client_mac);
    memcpy(buf, c2s ? gateway_mac : client_mac, 6);
    memcpy(buf + 6, c2s ? client_mac : gateway_mac, 6);
    put16be(buf + 12, f->ipv6 ? 0x86ddu : 0x0800u);

    if (!f->ipv6) {
        ip[0] = 0x45;
        ip[1] = f->tos;
        put16be(ip + 2, iphl + l4len);
        put16be(ip + 4, f->ip_id[dir]);
        f->ip_id[dir] = (uint16_t)(f->ip_id[dir] + 1u);
        put16be(ip + 6, 0x4000u); /* DF */
        ip[8] = c2s ? 64 : f->server_ttl;
        ip[9] = (uint8_t)f->proto;
        put16be(ip + 10, 0);
        memcpy(ip + 12, src, 4);
        memcpy(ip + 16, dst, 4);
        put16be(ip + 10, fold_checksum(sum16(ip, 20, 0)));
    } else {
        put32be(ip, 0x60000000u | (uint32_t)f->tos << 20 | f->flow_label);
        put16be(ip + 4, l4len);
        ip[6] = (uint8_t)f->proto;
        ip[7] = c2s ? 64 : f->server_ttl;
        memcpy(ip + 8, src, 16);
        memcpy(ip + 24, dst, 16);
    }

    put16be(l4, c2s ? f->client_port : f->server_port);
    put16be(l4 + 2, c2s ? f->server_port : f->client_port);
    if (flow_is_tcp(f)) {
        const uint32_t seq = f->seq_next[dir];
        const int ack = (p->flags & TCP_ACK) != 0;
        put32be(l4 + 4, seq);
        put32be(l4 + 8, !ack ? 0u : c2s ? f->seq_next[DIR_S2C] : f->server_ack);
        l4[12] = 0x50; /* 20-byte header */
        l4[13] = p->flags;
        put16be(l4 + 14, f->window[dir]);
        put16be(l4 + 16, 0);
        put16be(l4 + 18, 0);
        f->seq_next[dir] = seq + p->payload + ((p->flags & TCP_SYN) ? 1u : 0u)
                         + ((p->flags & TCP_FIN) ? 1u : 0u);
    } else {
        put16be(l4 + 4, l4len);
        put16be(l4 + 6, 0);
    }

    /* transport checksum: pseudo-header + header (payload is zero) */
    memset(pseudo, 0, sizeof pseudo);
    memcpy(pseudo, src, addr_len);
    memcpy(pseudo + addr_len, dst, addr_len);
    sum = sum16(pseudo, 2u * addr_len, 0);
    sum += (uint32_t)f->proto + l4len;
    csum = fold_checksum(sum16(l4, l4hl, sum));
    if (!flow_is_tcp(f) && csum == 0)
        csum = 0xffffu;
    put16be(l4 + (flow_is_tcp(f) ? 16 : 6), csum);

    return ETH_HEADER_LEN + iphl + l4hl;
}

/* ------------------------------------------------------------------------ */
/* pcap output                                                              */
/* ------------------------------------------------------------------------ */

static int write_pcap_header(FILE *fp)
{
    uint8_t h[24];
    put32le(h, 0xa1b2c3d4u);
    put16le(h + 4, 2);
    put16le(h + 6, 4);
    put32le(h + 8, 0);  /* thiszone */
    put32le(h + 12, 0); /* sigfigs */
    put32le(h + 16, PCAP_SNAPLEN);
    put32le(h + 20, LINKTYPE_ETHERNET);
    return fwrite(h, sizeof h, 1, fp) == 1 ? 0 : -1;
}

/* Moves the server's view of the client's byte stream up to what the
 * client sent at least one RTT before t_us (the capture sits at the
 * client), so server ACKs acknowledge data that has had time to arrive.
 * Server replies are generated no earlier than one RTT after the packet
 * they answer (reply_delay). */
static void advance_server_ack(Flow *f, int64_t t_us)
{
    const int64_t cutoff = t_us - (int64_t)(f->rtt * 1e6);
    while (f->lag_next < f->npkts && f->pkts[f->lag_next].t_us <= cutoff) {
        const Packet *q = &f->pkts[f->lag_next++];
        if (q->dir == DIR_C2S)
            f->server_ack += q->payload + ((q->flags & (TCP_SYN | TCP_FIN)) ? 1u : 0u);
    }
}

static int write_packet(FILE *fp, Flow *f, const Packet *p, int full_payload)
{
    uint8_t frame[FRAME_BUF_LEN];
    uint8_t rec[16];
    const int64_t sec = CAPTURE_EPOCH + p->t_us / 1000000;
    size_t hdr, frame_len, caplen;

    if (flow_is_tcp(f) && p->dir == DIR_S2C)
        advance_server_ack(f, p->t_us);
    hdr = build_headers(f, p, frame);
    frame_len = hdr + p->payload;
    if (frame_len < MIN_FRAME_LEN)
        frame_len = MIN_FRAME_LEN;
    caplen = full_payload || frame_len < HEADER_SNAPLEN ? frame_len : HEADER_SNAPLEN;
    if (caplen > hdr)
        memset(frame + hdr, 0, caplen - hdr);
    put32le(rec, (uint32_t)sec);
    put32le(rec + 4, (uint32_t)(p->t_us % 1000000));
    put32le(rec + 8, (uint32_t)caplen);
    put32le(rec + 12, (uint32_t)frame_len);
    if (fwrite(rec, sizeof rec, 1, fp) != 1 || fwrite(frame, caplen, 1, fp) != 1)
        return -1;
    return 0;
}

/* Min-heap of flow indices ordered by the time of each flow's next packet. */
static int flow_before(const FlowSet *fs, size_t a, size_t b)
{
    const Flow *fa = &fs->flows[a], *fb = &fs->flows[b];
    const int64_t ta = fa->pkts[fa->next].t_us, tb = fb->pkts[fb->next].t_us;
    return ta < tb || (ta == tb && a < b);
}

static void heap_sift_down(const FlowSet *fs, size_t *heap, size_t n, size_t i)
{
    for (;;) {
        const size_t l = 2 * i + 1, rgt = l + 1;
        size_t m = i;
        size_t tmp;
        if (l < n && flow_before(fs, heap[l], heap[m]))
            m = l;
        if (rgt < n && flow_before(fs, heap[rgt], heap[m]))
            m = rgt;
        if (m == i)
            return;
        tmp = heap[i];
        heap[i] = heap[m];
        heap[m] = tmp;
        i = m;
    }
}

/* Merges the per-flow packet lists into fp in time order.  Returns 0, -1 on
 * a write error, -2 when out of memory. */
static int write_pcap(FILE *fp, FlowSet *fs, int full_payload)
{
    size_t *heap = malloc((fs->count ? fs->count : 1) * sizeof *heap);
    size_t n = 0;
    int rc = 0;
    if (!heap)
        return -2;
    for (size_t i = 0; i < fs->count; i++) {
        Flow *f = &fs->flows[i];
        f->next = 0;
        f->seq_next[DIR_C2S] = f->isn[DIR_C2S];
        f->seq_next[DIR_S2C] = f->isn[DIR_S2C];
        f->lag_next = 0;
        f->server_ack = f->isn[DIR_C2S];
        if (f->npkts)
            heap[n++] = i;
    }
    for (size_t i = n; i-- > 0;)
        heap_sift_down(fs, heap, n, i);
    if (write_pcap_header(fp) != 0)
        rc = -1;
    while (rc == 0 && n > 0) {
        Flow *f = &fs->flows[heap[0]];
        if (write_packet(fp, f, &f->pkts[f->next], full_payload) != 0) {
            rc = -1;
            break;
        }
        if (++f->next == f->npkts)
            heap[0] = heap[--n];
        heap_sift_down(fs, heap, n, 0);
    }
    free(heap);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Labels                                                                   */
/* ------------------------------------------------------------------------ */

/* Text form of an address; IPv6 compressed as in RFC 5952. */
static void format_ip(const uint8_t ip[16], int ipv6, char *out, size_t outlen)
{
    unsigned g[8];
    int best = -1, best_len = 0;
    size_t pos = 0;
    if (!ipv6) {
        snprintf(out, outlen, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
        return;
    }
    for (int i = 0; i < 8; i++)
        g[i] = (unsigned)ip[2 * i] << 8 | ip[2 * i + 1];
    for (int i = 0; i < 8;) {
        int j = i;
        while (j < 8 && g[j] == 0)
            j++;
        if (j - i > best_len && j - i >= 2) {
            best = i;
            best_len = j - i;
        }
        i = j > i ? j : i + 1;
    }
    out[0] = '\0';
    for (int i = 0; i < 8 && pos < outlen; i++) {
        int w;
        if (i == best) {
            w = snprintf(out + pos, outlen - pos, "::");
            i += best_len - 1;
        } else {
            w = snprintf(out + pos, outlen - pos, "%s%x",
                         (i > 0 && i != best + best_len) ? ":" : "", g[i]);
        }
        if (w < 0)
            return;
        pos += (size_t)w;
    }
}

static int write_labels(FILE *fp, const FlowSet *fs)
{
    if (fputs("proto\tsrc\tsport\tdst\tdport\tclass\tapp\n", fp) == EOF)
        return -1;
    for (size_t i = 0; i < fs->count; i++) {
        const Flow *f = &fs->flows[i];
        char src[48], dst[48];
        if (f->npkts == 0)
            continue; /* nothing of it fell inside the capture */
        format_ip(f->client_ip, f->ipv6, src, sizeof src);
        format_ip(f->server_ip, f->ipv6, dst, sizeof dst);
        if (fprintf(fp, "%s\t%s\t%u\t%s\t%u\t%s\t%s\n",
                    flow_is_tcp(f) ? "tcp" : "udp", src, (unsigned)f->client_port,
                    dst, (unsigned)f->server_port, class_names[f->cls], f->app) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Output files: temporary name, rename when complete                       */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *path; /* final name, "-" for standard output */
    char *tmp_path;
    FILE *fp;
} OutFile;

/* Name for messages: the final path, or "standard output". */
static const char *display_name(const char *path)
{
    return strcmp(path, "-") == 0 ? "standard output" : path;
}

static int outfile_open(OutFile *o, const char *path)
{
    const size_t len = strlen(path) + 32;
    o->path = path;
    o->tmp_path = NULL;
    o->fp = NULL;
    if (strcmp(path, "-") == 0) {
        o->fp = stdout;
        return 0;
    }
    o->tmp_path = malloc(len);
    if (!o->tmp_path) {
        fprintf(stderr, PROG ": %s: out of memory\n", path);
        return -1;
    }
    snprintf(o->tmp_path, len, "%s.tmp.%ld", path, (long)getpid());
    o->fp = fopen(o->tmp_path, "wb");
    if (!o->fp) {
        fprintf(stderr, PROG ": %s: cannot create %s: %s\n", path, o->tmp_path,
                strerror(errno));
        free(o->tmp_path);
        o->tmp_path = NULL;
        return -1;
    }
    return 0;
}

/* Flushes and closes; 0 on success. */
static int outfile_close(OutFile *o)
{
    int rc = 0;
    if (!o->fp)
        return 0;
    if (fflush(o->fp) != 0 || ferror(o->fp))
        rc = -1;
    if (o->fp != stdout && fclose(o->fp) != 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, PROG ": %s: write failed: %s\n", display_name(o->path),
                strerror(errno));
    o->fp = NULL;
    return rc;
}

static int outfile_commit(OutFile *o)
{
    if (!o->tmp_path)
        return 0;
    if (rename(o->tmp_path, o->path) != 0) {
        fprintf(stderr, PROG ": %s: cannot rename to %s: %s\n",
                o->tmp_path, o->path, strerror(errno));
        return -1;
    }
    free(o->tmp_path);
    o->tmp_path = NULL;
    return 0;
}

/* Closes and deletes the temporary file, leaving the target untouched. */
static void outfile_discard(OutFile *o)
{
    if (o->fp && o->fp != stdout)
        fclose(o->fp);
    o->fp = NULL;
    if (o->tmp_path) {
        remove(o->tmp_path);
        free(o->tmp_path);
        o->tmp_path = NULL;
    }
}

/* ------------------------------------------------------------------------ */
/* Command line                                                             */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *out_path;
    const char *labels_path;
    uint64_t seed;
    double duration;
    unsigned flows_per_class;
    int class_enabled[NUM_CLASSES];
    int prefix_per_class;
    double ipv6_share;
    int full_payload;
    int verbose;
} Options;

static void print_usage(FILE *fp)
{
    fputs("usage: " PROG " [options] -o OUT.pcap\n"
          "Write a pcap of synthetic voip/video/file/chat/browsing flows.\n"
          "\n"
          "  -o FILE               output pcap file, '-' for standard output (required)\n"
          "  --seed N              random seed (default 1)\n"
          "  --duration S          capture span in seconds (default 180)\n"
          "  --flows-per-class N   flows of each class (default 6)\n"
          "  --classes LIST        comma list of voip,video,file,chat,browsing\n"
          "                        (default all)\n"
          "  --labels FILE         write per-flow labels as TSV (src = client):\n"
          "                        proto src sport dst dport class app\n"
          "  --prefix-per-class    class k (1=voip .. 5=browsing) uses clients in\n"
          "                        10.0.k.0/24 and fd00:0:0:k::/64\n"
          "  --ipv6-share F        fraction of flows over IPv6 (default 0.1)\n"
          "  --full-payload        write whole frames (default: first 128 bytes,\n"
          "                        original length kept)\n"
          "  --verbose             per-class summary on standard error\n"
          "  --help                show this help\n"
          "\n"
          "Same options, same output bytes.  Exit status: 0 ok, 1 error, 2 usage.\n",
          fp);
}

static int usage_error(void)
{
    fputs("Try '" PROG " --help' for more information.\n", stderr);
    return 2;
}

static int bad_value(const char *opt, const char *value, const char *expected)
{
    fprintf(stderr, PROG ": %s: invalid value '%s': expected %s\n", opt, value, expected);
    return usage_error();
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int parse_real(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;
    if (*s == '\0')
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static int class_index(const char *name, size_t len)
{
    for (int c = 0; c < NUM_CLASSES; c++)
        if (strlen(class_names[c]) == len && strncmp(class_names[c], name, len) == 0)
            return c;
    return -1;
}

static int parse_classes(const char *list, int enabled[NUM_CLASSES])
{
    const char *p = list;
    memset(enabled, 0, NUM_CLASSES * sizeof enabled[0]);
    for (;;) {
        const char *comma = strchr(p, ',');
        const size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const int c = class_index(p, len);
        if (c < 0) {
            fprintf(stderr, PROG ": --classes: unknown class '%.*s' in '%s'"
                    " (known: voip,video,file,chat,browsing)\n", (int)len, p, list);
            return -1;
        }
        if (enabled[c]) {
            fprintf(stderr, PROG ": --classes: class '%s' given twice\n", class_names[c]);
            return -1;
        }
        enabled[c] = 1;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

/* Returns -1 to continue, otherwise the exit status. */
static int parse_args(int argc, char **argv, Options *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->duration = DEFAULT_DURATION;
    o->flows_per_class = DEFAULT_FLOWS_PER_CLASS;
    o->ipv6_share = DEFAULT_IPV6_SHARE;
    for (int c = 0; c < NUM_CLASSES; c++)
        o->class_enabled[c] = 1;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        const size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        char name[32];
        const char *value = eq ? eq + 1 : NULL;
        int takes_value;

        if (name_len >= sizeof name) {
            fprintf(stderr, PROG ": %s: unknown option\n", arg);
            return usage_error();
        }
        memcpy(name, arg, name_len);
        name[name_len] = '\0';

        if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
            print_usage(stdout);
            return 0;
        }
        takes_value = strcmp(name, "-o") == 0 || strcmp(name, "--seed") == 0
            || strcmp(name, "--duration") == 0 || strcmp(name, "--flows-per-class") == 0
            || strcmp(name, "--classes") == 0 || strcmp(name, "--labels") == 0
            || strcmp(name, "--ipv6-share") == 0;
        if (takes_value && !value) {
            if (i + 1 >= argc) {
                fprintf(stderr, PROG ": %s: missing value\n", name);
                return usage_error();
            }
            value = argv[++i];
        } else if (!takes_value && value) {
            fprintf(stderr, PROG ": %s: takes no value\n", name);
            return usage_error();
        }

        if (strcmp(name, "-o") == 0) {
            if (*value == '\0')
                return bad_value(name, value, "a file name or '-'");
            o->out_path = value;
        } else if (strcmp(name, "--labels") == 0) {
            if (*value == '\0')
                return bad_value(name, value, "a file name or '-'");
            o->labels_path = value;
        } else if (strcmp(name, "--seed") == 0) {
            if (parse_u64(value, &o->seed) != 0)
                return bad_value(name, value, "an integer 0..18446744073709551615");
        } else if (strcmp(name, "--duration") == 0) {
            if (parse_real(value, 1.0, MAX_DURATION, &o->duration) != 0)
                return bad_value(name, value, "seconds between 1 and 86400");
        } else if (strcmp(name, "--flows-per-class") == 0) {
            uint64_t n;
            if (parse_u64(value, &n) != 0 || n < 1 || n > MAX_FLOWS_PER_CLASS)
                return bad_value(name, value, "an integer 1..10000");
            o->flows_per_class = (unsigned)n;
        } else if (strcmp(name, "--classes") == 0) {
            if (parse_classes(value, o->class_enabled) != 0)
                return usage_error();
        } else if (strcmp(name, "--ipv6-share") == 0) {
            if (parse_real(value, 0.0, 1.0, &o->ipv6_share) != 0)
                return bad_value(name, value, "a fraction between 0 and 1");
        } else if (strcmp(name, "--prefix-per-class") == 0) {
            o->prefix_per_class = 1;
        } else if (strcmp(name, "--full-payload") == 0) {
            o->full_payload = 1;
        } else if (strcmp(name, "--verbose") == 0) {
            o->verbose = 1;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            fprintf(stderr, PROG ": %s: unknown option\n", name);
            return usage_error();
        } else {
            fprintf(stderr, PROG ": %s: unexpected argument\n", arg);
            return usage_error();
        }
    }
    if (!o->out_path) {
        fputs(PROG ": -o: output file is required\n", stderr);
        return usage_error();
    }
    if (o->labels_path && strcmp(o->labels_path, "-") == 0 && strcmp(o->out_path, "-") == 0) {
        fputs(PROG ": --labels: cannot share standard output with the pcap\n", stderr);
        return usage_error();
    }
    if (o->labels_path && strcmp(o->labels_path, "-") != 0
        && strcmp(o->labels_path, o->out_path) == 0) {
        fputs(PROG ": --labels: must differ from the -o file\n", stderr);
        return usage_error();
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Main                                                                     */
/* ------------------------------------------------------------------------ */

static void print_summary(const FlowSet *fs, double duration)
{
    fprintf(stderr, "%-9s %6s %9s %12s %9s\n", "class", "flows", "packets", "bytes",
            "avg-span");
    for (int c = 0; c < NUM_CLASSES; c++) {
        size_t flows = 0, pkts = 0;
        double bytes = 0.0, span = 0.0;
        for (size_t i = 0; i < fs->count; i++) {
            const Flow *f = &fs->flows[i];
            if (f->cls != c || f->npkts == 0)
                continue;
            flows++;
            pkts += f->npkts;
            for (size_t k = 0; k < f->npkts; k++)
                bytes += (double)(ip_header_len(f) + l4_header_len(f) + f->pkts[k].payload);
            span += (double)(f->pkts[f->npkts - 1].t_us - f->pkts[0].t_us) / 1e6;
        }
        if (flows)
            fprintf(stderr, "%-9s %6zu %9zu %12.0f %8.1fs\n", class_names[c], flows,
                    pkts, bytes, span / (double)flows);
    }
    fprintf(stderr, "capture span %.0f s\n", duration);
}

int main(int argc, char **argv)
{
    Options opt;
    Sim sim;
    FlowSet fs;
    OutFile pcap_out, labels_out;
    int status = parse_args(argc, argv, &opt);
    int have_labels;

    if (status >= 0)
        return status;

    memset(&sim, 0, sizeof sim);
    memset(&fs, 0, sizeof fs);
    rng_seed(&sim.rng, opt.seed);
    sim.duration = opt.duration;
    sim.prefix_per_class = opt.prefix_per_class;
    sim.ipv6_share = opt.ipv6_share;

    if (generate_flows(&sim, &fs, opt.class_enabled, opt.flows_per_class) != 0) {
        fputs(PROG ": generating flows: out of memory\n", stderr);
        free_flows(&fs);
        return 1;
    }
    if (opt.verbose)
        print_summary(&fs, opt.duration);

    have_labels = opt.labels_path != NULL;
    memset(&labels_out, 0, sizeof labels_out);
    if (outfile_open(&pcap_out, opt.out_path) != 0) {
        free_flows(&fs);
        return 1;
    }
    if (have_labels && outfile_open(&labels_out, opt.labels_path) != 0) {
        outfile_discard(&pcap_out);
        free_flows(&fs);
        return 1;
    }

    status = write_pcap(pcap_out.fp, &fs, opt.full_payload);
    if (status == -2)
        fprintf(stderr, PROG ": %s: out of memory\n", display_name(opt.out_path));
    if (status == -1)
        fprintf(stderr, PROG ": %s: write failed: %s\n", display_name(opt.out_path),
                strerror(errno));
    if (status == 0 && have_labels && write_labels(labels_out.fp, &fs) != 0) {
        fprintf(stderr, PROG ": %s: write failed: %s\n", display_name(opt.labels_path),
                strerror(errno));
        status = -1;
    }
    if (status == 0 && outfile_close(&pcap_out) != 0)
        status = -1;
    if (status == 0 && have_labels && outfile_close(&labels_out) != 0)
        status = -1;
    if (status == 0 && outfile_commit(&pcap_out) != 0)
        status = -1;
    if (status == 0 && have_labels && outfile_commit(&labels_out) != 0)
        status = -1;
    if (status != 0) {
        outfile_discard(&pcap_out);
        outfile_discard(&labels_out);
    }
    free_flows(&fs);
    return status == 0 ? 0 : 1;
}
