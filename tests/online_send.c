/* online_send.c - test traffic for tests/online_test.sh: UDP to DST:PORT for a bounded time.
 *
 *   online_send DST PORT voip|bulk SECONDS
 *
 * voip: a 160-byte IP packet every 20 ms (RTP-like). bulk: bursts of 20 1500-byte IP packets every
 * 10 ms (a saturated transfer). Loops are bounded by SECONDS; send errors (an ICMP unreachable
 * from the other end) are ignored. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static char payload[1472];
    struct sockaddr_in to;
    struct timespec gap;
    int fd, voip, seconds, rounds, burst, i, k;
    size_t size;
    if (argc != 5 || (strcmp(argv[3], "voip") && strcmp(argv[3], "bulk"))) {
        fprintf(stderr, "usage: online_send DST PORT voip|bulk SECONDS\n");
        return 2;
    }
    voip = !strcmp(argv[3], "voip");
    seconds = atoi(argv[4]);
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1 || seconds <= 0 || seconds > 60) return 2;
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return 1;
    gap.tv_sec = 0;
    gap.tv_nsec = voip ? 20000000L : 10000000L;
    rounds = seconds * (voip ? 50 : 100);
    burst = voip ? 1 : 20;
    size = voip ? 160 - 28 : sizeof payload; /* IP size minus the IPv4 and UDP headers */
    for (i = 0; i < rounds; i++) {
        for (k = 0; k < burst; k++) (void)sendto(fd, payload, size, 0, (struct sockaddr *)&to, sizeof to);
        nanosleep(&gap, 0);
    }
    close(fd);
    return 0;
}
