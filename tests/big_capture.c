/* Writes a capture of more than 4 GiB to standard output, for a pipe (tests/big_test.sh): it is
 * never stored. `big_capture pcap` writes 16400 classic pcap records of 262144 bytes (the
 * largest PCAPL_MAX_CAPLEN allows), then a record header whose capture length is one byte over
 * the limit. `big_capture pcapng` writes a section header, an interface and 4100 enhanced packet
 * blocks of 1 MiB, then a block whose length is not a multiple of 4. Either way the error comes
 * after byte 2^32, so its offset and the byte counters only come out right in 64 bits.
 * Every packet is Ethernet + IPv4 + UDP, one second after the one before. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCAP_RECORDS 16400u
#define PCAP_CAPLEN 262144u
#define NG_BLOCKS 4100u
#define NG_BLOCK (1u << 20)

static uint8_t frame[NG_BLOCK];

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static int out(const void *p, size_t n) { return fwrite(p, 1, n, stdout) == n; }

/* Ethernet, IPv4 (total length 65535, the most it holds), UDP 10.0.0.1:1234 -> 10.0.0.2:443. */
static void build_frame(void)
{
    static const uint8_t head[] = {
        0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00,                  /* Ethernet, IPv4 */
        0x45, 0, 0xff, 0xff, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, /* IPv4 */
        0x04, 0xd2, 0x01, 0xbb, 0xff, 0xeb, 0, 0};                       /* UDP */
    memcpy(frame, head, sizeof head);
}

static int write_pcap(void)
{
    uint8_t h[24] = {0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0}, rec[16];
    uint32_t i;
    put_le32(h + 16, PCAP_CAPLEN); /* snaplen */
    put_le32(h + 20, 1);           /* Ethernet */
    if (!out(h, sizeof h)) return 0;
    for (i = 0; i <= PCAP_RECORDS; i++) {
        uint32_t caplen = i < PCAP_RECORDS ? PCAP_CAPLEN : PCAP_CAPLEN + 1; /* the last: too large */
        put_le32(rec, 1000000000u + i);
        put_le32(rec + 4, 0);
        put_le32(rec + 8, caplen);
        put_le32(rec + 12, caplen);
        if (!out(rec, sizeof rec) || (i < PCAP_RECORDS && !out(frame, PCAP_CAPLEN))) return 0;
    }
    return 1;
}

static int write_pcapng(void)
{
    uint8_t shb[28] = {0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0,
                       0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0};
    uint8_t idb[20] = {1, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0};
    uint8_t epb[28], trailer[4], bad[12] = {0xad, 0xde, 0, 0, 13, 0, 0, 0};
    uint32_t i, caplen = NG_BLOCK - 32;
    if (!out(shb, sizeof shb) || !out(idb, sizeof idb)) return 0;
    put_le32(trailer, NG_BLOCK);
    for (i = 0; i < NG_BLOCKS; i++) {
        uint64_t ticks = (1000000000ull + i) * 1000000u; /* microseconds, the default resolution */
        put_le32(epb, 6);
        put_le32(epb + 4, NG_BLOCK);
        put_le32(epb + 8, 0);
        put_le32(epb + 12, (uint32_t)(ticks >> 32));
        put_le32(epb + 16, (uint32_t)ticks);
        put_le32(epb + 20, caplen);
        put_le32(epb + 24, caplen);
        if (!out(epb, sizeof epb) || !out(frame, caplen) || !out(trailer, 4)) return 0;
    }
    return out(bad, sizeof bad); /* block length 13: not a multiple of 4 */
}

int main(int argc, char **argv)
{
    int ok;
    build_frame();
    if (argc != 2 || (strcmp(argv[1], "pcap") && strcmp(argv[1], "pcapng"))) {
        fprintf(stderr, "usage: big_capture pcap|pcapng > PIPE\n");
        return 2;
    }
    ok = !strcmp(argv[1], "pcap") ? write_pcap() : write_pcapng();
    ok = fflush(stdout) == 0 && ok;
    return !ok;
}
