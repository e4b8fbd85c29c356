# Declarations of includes/atomics.h: every helper names its memory ordering.
from libc.stdint cimport int32_t, int64_t, uint32_t


cdef extern from "atomics.h" nogil:
    int RL_CACHE_LINE
    int64_t rl_load_acquire(const int64_t *p) noexcept
    int64_t rl_load_relaxed(const int64_t *p) noexcept
    void rl_store_release(int64_t *p, int64_t v) noexcept
    void rl_store_relaxed(int64_t *p, int64_t v) noexcept
    void rl_store_seq_cst(int64_t *p, int64_t v) noexcept
    int rl_cas(int64_t *p, int64_t expected, int64_t desired) noexcept
    int64_t rl_fetch_add(int64_t *p, int64_t d) noexcept
    int32_t rl_load_acquire32(const int32_t *p) noexcept
    void rl_store_release32(int32_t *p, int32_t v) noexcept
    int32_t rl_fetch_add32(int32_t *p, int32_t d) noexcept
    uint32_t rl_load_acquire_u32(const uint32_t *p) noexcept
    void rl_store_release_u32(uint32_t *p, uint32_t v) noexcept
    void rl_fence() noexcept
    void rl_cpu_relax() noexcept
