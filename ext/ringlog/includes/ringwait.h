/* Wait primitives for the ring: futex sleep/wake on a 32-bit word shared across processes,
 * yields, nanosleeps and a monotonic clock. Every function is GIL-free C. */
#ifndef RINGLOG_RINGWAIT_H
#define RINGLOG_RINGWAIT_H
#include <stdint.h>
#include <time.h>
#include <sched.h>
#include <errno.h>
#include <limits.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

static inline int64_t rl_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void rl_sleep_ns(int64_t ns) {
    struct timespec ts = { (time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL) };
    nanosleep(&ts, NULL);
}

static inline void rl_yield(void) { sched_yield(); }

/* Sleeps while *word == expected, at most timeout_ns (< 0: no limit). Not FUTEX_PRIVATE:
 * the word may live in a shared mapping watched by other processes. */
static inline void rl_futex_wait(int32_t *word, int32_t expected, int64_t timeout_ns) {
#ifdef __linux__
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
        ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
        tp = &ts;
    }
    syscall(SYS_futex, word, FUTEX_WAIT, expected, tp, NULL, 0);
#else
    (void)word; (void)expected;
    rl_sleep_ns(timeout_ns >= 0 && timeout_ns < 50000 ? timeout_ns : 50000);
#endif
}

static inline void rl_futex_wake_all(int32_t *word) {
#ifdef __linux__
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}
#endif
