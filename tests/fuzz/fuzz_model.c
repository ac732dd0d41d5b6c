/* libFuzzer target: the model reader (network layout, weights, class names, preprocessing).
 * Any bytes give a model or a specific error; a model that loads must save to the same bytes. */
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    flowpic_model m;
    flowpic_error err;
    uint8_t *again;
    size_t again_size;
    if (flowpic_model_from_memory(&m, data, size, &err) != FLOWPIC_OK) {
        if (err.code == FLOWPIC_OK || !err.reason[0]) abort(); /* every failure says why */
        return 0;
    }
    if (flowpic_model_to_memory(&m, &again, &again_size) == FLOWPIC_OK) {
        if (again_size != size || memcmp(again, data, size)) abort();
        free(again);
    }
    flowpic_model_free(&m);
    return 0;
}
