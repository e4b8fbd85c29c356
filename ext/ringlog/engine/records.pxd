# The engine's records as C structs, declared once for every compiled module that reads or
# writes them (the matching engine, the gateway's framing): one C definition, records.h beside
# this file (on the include path of the build and of ringlog.get_include()).
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "records.h" nogil:
    ctypedef struct rl_command:
        uint64_t order_id
        int64_t price
        int64_t qty
        uint32_t account
        uint32_t symbol
        uint8_t side
        uint8_t order_type
        uint8_t tif
        uint8_t flags
        uint8_t stp
        uint64_t client_tag
    ctypedef struct rl_report:
        uint64_t order_id
        uint32_t account
        uint32_t symbol
        int64_t price
        int64_t qty
        int64_t leaves
        uint8_t side
        uint8_t reason
        uint8_t command
    ctypedef struct rl_trade:
        uint64_t taker_id
        uint64_t maker_id
        uint32_t taker_account
        uint32_t maker_account
        uint32_t symbol
        uint8_t taker_side
        int64_t price
        int64_t qty
        int64_t taker_leaves
        int64_t maker_leaves
    ctypedef struct rl_l1:
        uint32_t symbol
        int64_t bid_price
        int64_t bid_qty
        int64_t ask_price
        int64_t ask_qty
    ctypedef struct rl_l2_head:
        uint32_t symbol
        uint16_t depth
        uint16_t bids
        uint16_t asks
    ctypedef struct rl_l2_level:
        int64_t price
        int64_t qty
    int RL_FLAG_POST_ONLY
