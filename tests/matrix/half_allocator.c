/* Must not compile: only some of the allocator macros are given (build_matrix.sh expects the
 * header's #error). */
#include <stdlib.h>
#define FLOWPIC_MALLOC(sz) malloc(sz)
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"
