/* Wait primitives for the ring: futex sleep/wake on a 32-bit word shared across processes,
 * yields, nanosleeps and a monotonic clock. Every function is GIL-free C. */
#ifndef RINGLOG_RINGWAIT_H
#define RINGLOG_RINGWAIT_H
#include <stdint.h>
#include <time.h>
#include <sched.h>
#include <errno.h>
#include <limits.h>
#include "atomics.h"
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

/* The futex handshake on a signal word and a count of its sleepers (the ring's wake words,
 * the journal's sync, write-behind and durable waits). The sleeper counts itself in, fences
 * and takes the signal's token (rl_sleeper_in), re-checks its condition, sleeps with
 * rl_futex_wait(signal, token, ...) only if it still holds, and counts itself out. The waker
 * changes the condition, then rl_wake_sleepers: it fences and makes the syscall only when a
 * sleeper is counted. Either the sleeper's re-check sees the change, or the waker sees the
 * count and bumps the token, so the wait returns at once (Dekker, through the two fences). */
static inline int32_t rl_sleeper_in(int32_t *signal, int32_t *waiters) {
    rl_fetch_add32(waiters, 1);
    rl_fence();
    return rl_load_acquire32(signal);
}

static inline void rl_sleeper_out(int32_t *waiters) { rl_fetch_add32(waiters, -1); }

static inline void rl_wake_sleepers(int32_t *signal, int32_t *waiters) {
    rl_fence();
    if (rl_load_acquire32(waiters) > 0) {
        rl_fetch_add32(signal, 1);
        rl_futex_wake_all(signal);
    }
}
#endif
