/* libFuzzer target: the data-set reader. Any bytes give a data set or a specific error; a data
 * set that loads must save to the same bytes and give pictures at any resolution. */
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    flowpic_dataset ds;
    flowpic_error err;
    uint8_t *again;
    size_t again_size, i;
    flowpic_picture pic;
    if (flowpic_dataset_from_memory(&ds, data, size, &err) != FLOWPIC_OK) {
        if (err.code == FLOWPIC_OK || !err.reason[0]) abort(); /* every failure says why */
        return 0;
    }
    if (flowpic_dataset_to_memory(&ds, &again, &again_size) == FLOWPIC_OK) {
        if (again_size != size || memcmp(again, data, size)) abort(); /* one encoding per data set */
        free(again);
    }
    memset(&pic, 0, sizeof pic);
    for (i = 0; i < ds.n_blocks && i < 64; i++)
        flowpic_picture_build(&pic, ds.config.preset, ds.config.block_ns, flowpic_dataset_block_packets(&ds, i),
                              ds.blocks[i].n_packets, 32);
    flowpic_picture_free(&pic);
    flowpic_dataset_free(&ds);
    return 0;
}
