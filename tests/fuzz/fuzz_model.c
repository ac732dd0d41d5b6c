/* libFuzzer target: the model reader (network layout, weights, class names, preprocessing).
 * Any bytes give a model or a specific error; a model that loads must save to the same bytes. */
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"

#include <stdlib.h>

#include "../restamp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Half of the inputs get a valid length field (offset 16) and CRC-32, so that mutations reach
 * the parser behind those checks. */
static const uint8_t *with_crc(const uint8_t *data, size_t size, uint8_t **copy)
{
    int i;
    *copy = 0;
    if (size < 28 || size % 2) return data;
    *copy = (uint8_t *)malloc(size);
    memcpy(*copy, data, size);
    for (i = 0; i < 8; i++) (*copy)[16 + i] = (uint8_t)((uint64_t)size >> (8 * i));
    restamp_crc(*copy, size);
    return *copy;
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
    uint8_t *copy;
    const uint8_t *data = with_crc(input, size, &copy);
    flowpic_model m;
    flowpic_error err;
    uint8_t *again;
    size_t again_size;
    if (flowpic_model_from_memory(&m, data, size, &err) != FLOWPIC_OK) {
        if (err.code == FLOWPIC_OK || !err.reason[0]) abort(); /* every failure says why */
        free(copy);
        return 0;
    }
    if (flowpic_model_to_memory(&m, &again, &again_size) == FLOWPIC_OK) {
        if (again_size != size || memcmp(again, data, size)) abort();
        free(again);
    }
    flowpic_model_free(&m);
    free(copy);
    return 0;
}
