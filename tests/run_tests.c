/* Runs every test of the table (or those whose name contains argv[1]).
 * Last line: "N passed, N failed"; exit status 1 when any failed. */
#define HARNESS_IMPLEMENTATION
#include "harness.h"

#include <stdlib.h>

#define TEST_LIST(X)                                                                           \
    X(pcap_classic_byte_orders_and_resolutions)                                                \
    X(pcap_classic_fields)                                                                     \
    X(pcapng_byte_orders)                                                                      \
    X(pcapng_tsresol_and_tsoffset)                                                             \
    X(pcapng_sections_and_interfaces)                                                          \
    X(pcapng_simple_and_obsolete_blocks)                                                       \
    X(pcapng_skips_other_blocks)                                                               \
    X(sources_give_identical_packets)                                                          \
    X(link_types)                                                                              \
    X(vlan_stacking)                                                                           \
    X(ipv4_options_and_fragments)                                                              \
    X(ipv6_extension_headers)                                                                  \
    X(ipv6_fragments)                                                                          \
    X(other_protocols_and_truncation)                                                          \
    X(ip_size_from_header)                                                                     \
    X(address_text)                                                                            \
    X(errors_file_header)                                                                      \
    X(errors_pcap_records)                                                                     \
    X(errors_pcapng_blocks)                                                                    \
    X(errors_pcapng_options)                                                                   \
    X(errors_pcapng_interfaces)                                                                \
    X(errors_read_callback)                                                                    \
    X(result_strings)                                                                          \
    X(flowtable_unidirectional)                                                                \
    X(flowtable_bidirectional)                                                                 \
    X(flowtable_limit)                                                                         \
    X(paper_windows_and_edges)                                                                 \
    X(paper_pixels)                                                                            \
    X(paper_sizes_drop_and_clip)                                                               \
    X(paper_small_flows)                                                                       \
    X(paper_time_backwards)                                                                    \
    X(paper_overlap_and_gaps)                                                                  \
    X(original_preset)                                                                         \
    X(tcbench_preset)                                                                          \
    X(partial_blocks)                                                                          \
    X(idle_timeout)                                                                            \
    X(picture_transforms)                                                                      \
    X(augmentations)                                                                           \
    X(block_config_errors)                                                                     \
    X(batch_same_as_single)                                                                    \
    X(picture_many_packets)                                                                    \
    X(dataset_round_trip)                                                                      \
    X(dataset_merge)                                                                           \
    X(dataset_bad_files)                                                                       \
    X(dataset_every_truncation)                                                                \
    X(dataset_save_is_atomic)                                                                  \
    X(dataset_save_streams)                                                                    \
    X(images)                                                                                  \
    X(dataset_add_capture)                                                                     \
    X(model_file)

#define DECLARE(name) void test_##name(void);
TEST_LIST(DECLARE)
#undef DECLARE

typedef struct test_entry {
    const char *name;
    void (*fn)(void);
} test_entry;

static const test_entry tests[] = {
#define ENTRY(name) {#name, test_##name},
    TEST_LIST(ENTRY)
#undef ENTRY
};

int main(int argc, char **argv)
{
    size_t i;
    int passed = 0, failed = 0;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1])) continue;
        harness_failed = harness_skipped = 0;
        tests[i].fn();
        printf("%s %s\n", harness_failed ? "FAIL" : harness_skipped ? "skip" : "ok  ", tests[i].name);
        if (harness_failed) failed++;
        else passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
