/* C mirrors of the matching engine's records (src/ringlog/engine/records.py; the numpy dtypes
 * there are the contract). Little-endian, naturally aligned, fixed size; a test compares each
 * struct's size and field offsets with its dtype. The L2 record is a head followed by `depth`
 * bid levels (best first) then `depth` ask levels; unused levels are zero. */
#ifndef RINGLOG_ENGINE_RECORDS_H
#define RINGLOG_ENGINE_RECORDS_H
#include <stdint.h>

typedef struct {            /* COMMAND_DTYPE, 48 bytes: payload of every Command */
    uint64_t order_id;
    int64_t price;          /* ticks; 0 for market orders */
    int64_t qty;            /* lots */
    uint32_t account;
    uint32_t symbol;
    uint8_t side;
    uint8_t order_type;
    uint8_t tif;
    uint8_t flags;          /* RL_FLAG_POST_ONLY */
    uint8_t stp;
    uint8_t _pad[3];
    uint64_t client_tag;
} rl_command;

typedef struct {            /* REPORT_DTYPE, 48 bytes */
    uint64_t order_id;
    uint32_t account;
    uint32_t symbol;
    int64_t price;
    int64_t qty;
    int64_t leaves;
    uint8_t side;
    uint8_t reason;         /* RejectReason or CancelReason */
    uint8_t command;        /* Command - 100 */
    uint8_t _pad[5];
} rl_report;

typedef struct {            /* TRADE_DTYPE, 64 bytes */
    uint64_t taker_id;
    uint64_t maker_id;
    uint32_t taker_account;
    uint32_t maker_account;
    uint32_t symbol;
    uint8_t taker_side;
    uint8_t _pad[3];
    int64_t price;          /* the maker's price */
    int64_t qty;
    int64_t taker_leaves;
    int64_t maker_leaves;
} rl_trade;

typedef struct {            /* L1_DTYPE, 40 bytes */
    uint32_t symbol;
    uint32_t _pad;
    int64_t bid_price;      /* 0 with bid_qty 0: no bid */
    int64_t bid_qty;
    int64_t ask_price;
    int64_t ask_qty;
} rl_l1;

typedef struct {            /* L2 head, 16 bytes (l2_dtype(depth) in records.py) */
    uint32_t symbol;
    uint16_t depth;         /* levels per side in this record */
    uint16_t bids;          /* bid levels present (<= depth) */
    uint16_t asks;          /* ask levels present (<= depth) */
    uint16_t _pad[3];
} rl_l2_head;

typedef struct {            /* one L2 level, 16 bytes */
    int64_t price;
    int64_t qty;
} rl_l2_level;

#define RL_FLAG_POST_ONLY 0x1

_Static_assert(sizeof(rl_command) == 48, "rl_command is 48 bytes");
_Static_assert(sizeof(rl_report) == 48, "rl_report is 48 bytes");
_Static_assert(sizeof(rl_trade) == 64, "rl_trade is 64 bytes");
_Static_assert(sizeof(rl_l1) == 40, "rl_l1 is 40 bytes");
_Static_assert(sizeof(rl_l2_head) == 16, "rl_l2_head is 16 bytes");
_Static_assert(sizeof(rl_l2_level) == 16, "rl_l2_level is 16 bytes");

#endif
