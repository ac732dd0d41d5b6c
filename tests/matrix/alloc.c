/* The build matrix's implementation unit with the caller's allocator (FLOWPIC_MALLOC / REALLOC /
 * FREE, passed on to pcap_lite): use.c checks that the library called it. */
#include <stdlib.h>

extern long matrix_allocations;
void *matrix_malloc(size_t n);
void *matrix_realloc(void *p, size_t n);
void matrix_free(void *p);

void *matrix_malloc(size_t n)
{
    matrix_allocations++;
    return malloc(n);
}

void *matrix_realloc(void *p, size_t n)
{
    matrix_allocations++;
    return realloc(p, n);
}

void matrix_free(void *p) { free(p); }

#define FLOWPIC_MALLOC(sz) matrix_malloc(sz)
#define FLOWPIC_REALLOC(p, sz) matrix_realloc(p, sz)
#define FLOWPIC_FREE(p) matrix_free(p)
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"
