/* Writes the seed corpus of the pcap fuzz target: small captures of every format, byte order,
 * resolution and link type, built byte by byte (tests/capbuild.c). Run from the top:
 *   cc -I. -Itests -o build/make_seeds tests/fuzz/make_seeds.c tests/capbuild.c && build/make_seeds DIR */
#include <stdio.h>
#include <string.h>

#include "capbuild.h"

static void save(const char *dir, const char *name, const cb *b)
{
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f || fwrite(b->data, 1, b->len, f) != b->len) perror(path);
    if (f) fclose(f);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/fuzz/corpus/pcap";
    static uint8_t frame[2048], ip[2048];
    frame_spec s;
    cb b;
    uint32_t n, k;
    int big;
    cb_init(&b, 0);
    for (big = 0; big < 2; big++) {
        b.big = big;
        b.len = 0;
        cb_pcap_header(&b, big, 1, 65535);
        for (k = 0; k < 6; k++) {
            spec_default(&s, k % 2 ? 6 : 4, k % 3 ? 17 : 6);
            s.vlan_tags = (int)(k % 3);
            s.ipv6_ext = (int)(k % 2);
            s.frag_field = k == 4 ? 0x2000 : 0;
            n = build_eth(frame, &s);
            cb_pcap_record(&b, 1000 + k, k * 1000, frame, n, n);
        }
        save(dir, big ? "pcap_be_ns" : "pcap_le_us", &b);

        b.len = 0;
        cb_ng_shb(&b);
        cb_ng_idb(&b, 1, 0, -1, 0, 0);
        cb_ng_idb(&b, 101, 128, 9, 1, -5);
        cb_ng_idb(&b, 0, 0, 0x80 | 20, 0, 0);
        spec_default(&s, 4, 17);
        n = build_eth(frame, &s);
        cb_ng_epb(&b, 0, 12345678, frame, n, n);
        n = build_ip(ip, &s);
        cb_ng_epb(&b, 1, 987654321, ip, n, n);
        memset(frame, 0, 4);
        frame[0] = 2;
        memcpy(frame + 4, ip, n);
        cb_ng_pb(&b, 2, 1u << 20, frame, n + 4, n + 4);
        cb_ng_spb(&b, frame, 40, n + 4);
        cb_ng_block(&b, 5, frame, 12);
        save(dir, big ? "pcapng_be" : "pcapng_le", &b);
    }
    /* Linux SLL and SLL2 */
    b.big = 0;
    b.len = 0;
    cb_pcap_header(&b, 0, 113, 65535);
    spec_default(&s, 6, 6);
    n = build_ip(ip, &s);
    memset(frame, 0, 16);
    frame[14] = 0x86;
    frame[15] = 0xDD;
    memcpy(frame + 16, ip, n);
    cb_pcap_record(&b, 1, 2, frame, n + 16, n + 16);
    save(dir, "pcap_sll", &b);
    b.len = 0;
    cb_pcap_header(&b, 0, 276, 65535);
    memset(frame, 0, 20);
    frame[0] = 0x86;
    frame[1] = 0xDD;
    memcpy(frame + 20, ip, n);
    cb_pcap_record(&b, 1, 2, frame, n + 20, n + 20);
    save(dir, "pcap_sll2", &b);
    cb_free(&b);
    return 0;
}
