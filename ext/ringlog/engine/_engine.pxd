# The matching engine as a ringlog handler: decodes command records in place, applies the rules
# (validation, account limits, price bands, self-trade prevention defaults) and drives the
# books of ringlog.engine._book; reports go out through emit_c with key = the account.
cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t

from ringlog._handler cimport CyEventHandler
from ringlog._hashmap cimport rl_map
from ringlog.engine._book cimport Books, rl_book, rl_command, rl_taker
from ringlog.includes.event cimport rl_header


@cython.final    # methods called directly (no vtable), so the C compiler can inline them
cdef class Engine(CyEventHandler):
    cdef readonly Books books
    cdef readonly object config
    cdef uint8_t default_stp
    cdef bint md                    # market data on
    cdef rl_map limit_index         # account -> index into the override arrays
    cdef int64_t* max_qty           # [0] = default, [1 + i] = override i
    cdef int64_t* max_open
    cdef int64_t* band_ticks        # per book
    cdef int64_t* band_ppm
    cdef int64_t* ref_price
    cdef int64_t n_commands         # counters, part of the state
    cdef int64_t n_rejected
    cdef int64_t n_cancelled
    cdef bint any_disabled          # the kill switch: some account (or all) refused new orders
    cdef bint all_disabled
    cdef set disabled               # killed accounts, until re-enabled

    cdef int command(self, uint32_t type_id, const char* payload, uint32_t length) except -1 nogil
    cdef int flush(self, int64_t key) except -1 nogil
    cdef int reject(self, const rl_command* c, uint8_t reason, uint8_t command) except -1 nogil
    cdef uint8_t check_price(self, rl_book* b, int64_t price) noexcept nogil
    cdef int new_order(self, const rl_command* c) except -1 nogil
    cdef int cancel(self, const rl_command* c) except -1 nogil
    cdef int modify(self, const rl_command* c) except -1 nogil
    cdef int mass_cancel(self, const rl_command* c) except -1 nogil
    cdef int cancel_resting(self, bint every, uint32_t account, int32_t lo, int32_t hi,
                            uint8_t reason, list ids) except -1
    cdef int64_t limits_of(self, uint32_t account) noexcept nogil
    cdef bint is_disabled(self, uint32_t account) noexcept nogil
    cdef int order_status(self, const rl_command* c) except -1 nogil
    cdef int open_orders(self, const rl_command* c) except -1 nogil
    cdef int execute(self, rl_book* b, rl_taker* t, bint gtc, int64_t price) except -1 nogil
    cdef int taker_report(self, uint32_t type_id, rl_book* b, const rl_taker* t, int64_t price,
                          int64_t qty, uint8_t reason) except -1 nogil
