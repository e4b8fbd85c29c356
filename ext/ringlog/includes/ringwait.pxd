# Declarations of includes/ringwait.h: GIL-free waits (clock, sleeps, yields, futexes) and
# the futex handshake between a sleeper and its wakers.
from libc.stdint cimport int32_t, int64_t


cdef extern from "ringwait.h" nogil:
    int64_t rl_now_ns() noexcept
    void rl_sleep_ns(int64_t ns) noexcept
    void rl_yield() noexcept
    void rl_futex_wait(int32_t *word, int32_t expected, int64_t timeout_ns) noexcept
    void rl_futex_wake_all(int32_t *word) noexcept
    int32_t rl_sleeper_in(int32_t *signal, int32_t *waiters) noexcept
    void rl_sleeper_out(int32_t *waiters) noexcept
    void rl_wake_sleepers(int32_t *signal, int32_t *waiters) noexcept
