/* check.h — the unit-test protocol shared by every C test program.
 *
 * A test program prints one line per test case on stdout:
 *     PASS name
 *     FAIL name: file:line: what failed
 *     SKIP name: why
 * and exits 0 when nothing failed, 1 otherwise. tests/run counts the lines.
 *
 *     static void t_roundtrip(void) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-6); }
 *     int main(void) { RUN(t_roundtrip); return check_done(); }
 *
 * SKIP_TEST("reason") inside a test marks it skipped and returns.
 */
#ifndef DH_CHECK_H
#define DH_CHECK_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#pragma GCC diagnostic ignored "-Wformat-truncation"

static int check_failed_ = 0;  /* failures in the current test */
static int check_skipped_ = 0; /* current test asked to be skipped */
static int check_nfail_ = 0;   /* failed tests in this program */
static char check_msg_[512];

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            if (!check_failed_) snprintf(check_msg_, sizeof check_msg_, "%s:%d: %s", __FILE__, __LINE__, #cond);       \
            check_failed_ = 1;                                                                                         \
        }                                                                                                              \
    } while (0)
#define CHECKF(cond, ...)                                                                                              \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            if (!check_failed_) {                                                                                      \
                int o_ = snprintf(check_msg_, sizeof check_msg_, "%s:%d: ", __FILE__, __LINE__);                       \
                snprintf(check_msg_ + o_, sizeof check_msg_ - o_, __VA_ARGS__);                                        \
            }                                                                                                          \
            check_failed_ = 1;                                                                                         \
        }                                                                                                              \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                                          \
    do {                                                                                                               \
        double a_ = (a), b_ = (b);                                                                                     \
        CHECKF(fabs(a_ - b_) <= (tol), "%s = %g, %s = %g, |diff| %g > %g", #a, a_, #b, b_, fabs(a_ - b_),              \
               (double)(tol));                                                                                         \
    } while (0)
#define REQUIRE(cond)                                                                                                  \
    do {                                                                                                               \
        CHECK(cond);                                                                                                   \
        if (check_failed_) return;                                                                                     \
    } while (0)
#define SKIP_TEST(...)                                                                                                 \
    do {                                                                                                               \
        check_skipped_ = 1;                                                                                            \
        snprintf(check_msg_, sizeof check_msg_, __VA_ARGS__);                                                          \
        return;                                                                                                        \
    } while (0)

#define RUN(fn) check_run_(#fn, fn)
static void check_run_(const char *name, void (*fn)(void)) {
    if (strncmp(name, "t_", 2) == 0) name += 2;
    check_failed_ = 0;
    check_skipped_ = 0;
    check_msg_[0] = 0;
    fn();
    if (check_failed_) {
        printf("FAIL %s: %s\n", name, check_msg_);
        check_nfail_++;
    } else if (check_skipped_)
        printf("SKIP %s: %s\n", name, check_msg_);
    else
        printf("PASS %s\n", name);
    fflush(stdout);
}
static int check_done(void) { return check_nfail_ ? 1 : 0; }
#endif
