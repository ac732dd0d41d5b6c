/* The one translation unit that compiles the library for the tests. */
#define FLOWPIC_IMPLEMENTATION
#include "flowpic.h"
