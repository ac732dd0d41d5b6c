/* The test harness: a table of test functions (run_tests.c), CHECK macros that print file:line,
 * the expression and both values on failure and return from the test. The run ends with the
 * line "N passed, N failed"; the exit status is non-zero when any test failed. */
#ifndef FLOWPIC_TEST_HARNESS_H
#define FLOWPIC_TEST_HARNESS_H

#include <stdio.h>
#include <string.h>

void harness_fail(const char *file, int line, const char *expr, const char *values);
void harness_skip(const char *why);
char *harness_values_u(unsigned long long a, unsigned long long b);
char *harness_values_s(const char *a, const char *b);

#define CHECK(expr)                                                                            \
    do {                                                                                       \
        if (!(expr)) {                                                                         \
            harness_fail(__FILE__, __LINE__, #expr, 0);                                        \
            return;                                                                            \
        }                                                                                      \
    } while (0)

/* Integers of any kind, compared and printed as unsigned long long. */
#define CHECK_EQ(a, b)                                                                         \
    do {                                                                                       \
        unsigned long long check_a_ = (unsigned long long)(a), check_b_ = (unsigned long long)(b); \
        if (check_a_ != check_b_) {                                                            \
            harness_fail(__FILE__, __LINE__, #a " == " #b, harness_values_u(check_a_, check_b_)); \
            return;                                                                            \
        }                                                                                      \
    } while (0)

#define CHECK_STR(a, b)                                                                        \
    do {                                                                                       \
        const char *check_a_ = (a), *check_b_ = (b);                                           \
        if (strcmp(check_a_, check_b_) != 0) {                                                 \
            harness_fail(__FILE__, __LINE__, #a " == " #b, harness_values_s(check_a_, check_b_)); \
            return;                                                                            \
        }                                                                                      \
    } while (0)

#endif
