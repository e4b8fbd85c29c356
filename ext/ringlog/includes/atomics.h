/* Memory-ordered loads and stores on 64-bit counters, for sequences shared across
 * threads and processes. Each helper names its ordering; GCC/Clang __atomic builtins. */
#ifndef RINGLOG_ATOMICS_H
#define RINGLOG_ATOMICS_H
#include <stdint.h>

#define RL_CACHE_LINE 64

/* acquire: later loads/stores cannot move before it */
static inline int64_t rl_load_acquire(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
/* relaxed: no ordering, only atomicity (single-writer reads of its own counter) */
static inline int64_t rl_load_relaxed(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
/* release: earlier loads/stores cannot move after it (publishes slot contents) */
static inline void rl_store_release(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
/* relaxed store */
static inline void rl_store_relaxed(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
/* seq_cst store: a full fence after, the Disruptor's setVolatile (used before a blocking wait) */
static inline void rl_store_seq_cst(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
/* acq_rel CAS: claim in the multi-producer sequencer; returns 1 on success */
static inline int rl_cas(int64_t *p, int64_t expected, int64_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
/* acq_rel fetch-add: returns the value before the add */
static inline int64_t rl_fetch_add(int64_t *p, int64_t d) { return __atomic_fetch_add(p, d, __ATOMIC_ACQ_REL); }
/* 32-bit variants for availability flags and futex words */
static inline int32_t rl_load_acquire32(const int32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void rl_store_release32(int32_t *p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline int32_t rl_fetch_add32(int32_t *p, int32_t d) { return __atomic_fetch_add(p, d, __ATOMIC_ACQ_REL); }
/* 32-bit length word of a journal record: committed last, with release */
static inline uint32_t rl_load_acquire_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void rl_store_release_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
/* full fence (store-load ordering for the Dekker handshakes). On x86 a locked add to the
 * stack, as Linux's smp_mb(): the same ordering as mfence at a fraction of its cost. */
static inline void rl_fence(void) {
#if defined(__x86_64__)
    __asm__ __volatile__("lock; addl $0,-4(%%rsp)" ::: "memory", "cc");
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}
/* spin-loop hint: yields the pipeline to the sibling hyper-thread */
static inline void rl_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
#endif
