/* The checks the C tests share: a failed check prints where and why, and is counted in
 * `failures` (each test's main returns non-zero if any failed). */
#ifndef EMBER_TEST_CHECK_H
#define EMBER_TEST_CHECK_H

#include <stdio.h>

#include "ember.h"

static int failures;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                          \
        }                                                                        \
    } while (0)

#define CHECK_CODE(expr, want)                                                            \
    do {                                                                                  \
        int got_ = (expr);                                                                \
        if (got_ != (want)) {                                                             \
            fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d (%s)\n", __FILE__,      \
                    __LINE__, #expr, got_, ember_strerror(got_), (want), ember_strerror(want)); \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

#endif
