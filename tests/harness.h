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

/* The definitions, in the one file that has main() (#define HARNESS_IMPLEMENTATION first): its
 * runner clears harness_failed / harness_skipped before each test and reads them after. */
#ifdef HARNESS_IMPLEMENTATION
static int harness_failed, harness_skipped;
static char harness_values_buf[512];

void harness_fail(const char *file, int line, const char *expr, const char *values)
{
    printf("  FAIL %s:%d: %s", file, line, expr);
    if (values) printf("  (%s)", values);
    printf("\n");
    harness_failed = 1;
}

void harness_skip(const char *why)
{
    printf("  skipped: %s\n", why);
    harness_skipped = 1;
}

char *harness_values_u(unsigned long long a, unsigned long long b)
{
    snprintf(harness_values_buf, sizeof harness_values_buf, "%llu vs %llu", a, b);
    return harness_values_buf;
}

char *harness_values_s(const char *a, const char *b)
{
    snprintf(harness_values_buf, sizeof harness_values_buf, "\"%s\" vs \"%s\"", a, b);
    return harness_values_buf;
}
#endif

#endif
