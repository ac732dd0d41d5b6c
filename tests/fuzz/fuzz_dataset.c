/* libFuzzer target: the data-set reader. Any bytes give a data set or a specific error; a data
 * set that loads must save to the same bytes and give pictures at any resolution. */
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"

#include <stdlib.h>

#include "../restamp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Half of the inputs get a valid CRC-32, so that mutations reach the parser behind the check. */
static const uint8_t *with_crc(const uint8_t *data, size_t size, uint8_t **copy)
{
    *copy = 0;
    if (size < 8 || size % 2) return data;
    *copy = (uint8_t *)malloc(size);
    memcpy(*copy, data, size);
    restamp_crc(*copy, size);
    return *copy;
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
    uint8_t *copy;
    const uint8_t *data = with_crc(input, size, &copy);
    flowpic_dataset ds;
    flowpic_error err;
    uint8_t *again;
    size_t again_size, i;
    flowpic_picture pic;
    if (flowpic_dataset_from_memory(&ds, data, size, &err) != FLOWPIC_OK) {
        if (err.code == FLOWPIC_OK || !err.reason[0]) abort(); /* every failure says why */
        free(copy);
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
    free(copy);
    return 0;
}
