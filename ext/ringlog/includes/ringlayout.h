/* The ring's memory layout, identical in private and shared memory.
 *
 *  offset 0      rl_ring_header (this struct): identity, sizes, flags, then one 128-byte line
 *                each for the cursor, the multi-producer gating cache, every consumer
 *                sequence and the wake word (futex) - no two writers share a cache line
 *  avail_offset  int32 availability flag per slot (multi-producer only): the slot's round
 *  slots_offset  capacity x slot_size bytes, each slot an rl_header + payload
 *
 * The header is written once by the creator; everything after the identity fields is
 * accessed with the atomics of atomics.h. */
#ifndef RINGLOG_RINGLAYOUT_H
#define RINGLOG_RINGLAYOUT_H
#include <stdint.h>

#define RL_RING_MAGIC 0x31474e49524c5452ULL /* "RTLRING1" little-endian */
#define RL_RING_VERSION 1u
#define RL_MAX_CONSUMERS 16
#define RL_LINE 128
/* results of claims and waits that are not a sequence (sequences are >= -1) */
#define RL_TIMEOUT (INT64_MIN + 1)
#define RL_CLOSED INT64_MIN

typedef struct { _Alignas(RL_LINE) int64_t value; } rl_line_seq;
typedef struct { _Alignas(RL_LINE) int32_t signal; int32_t waiters; } rl_line_wake;

/* A single producer's own state (last claimed sequence, cached consumer minimum), allocated on
 * a cache line of its own: the producer writes it on every claim, and a consumer thread reading
 * the Ring object's other fields (slots, mask) must not lose its cache line each time. */
typedef struct { _Alignas(RL_LINE) int64_t next_value; int64_t cached_gating; } rl_producer_local;

typedef struct rl_ring_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    int64_t capacity;
    uint32_t slot_size;
    uint32_t multi_producer;
    uint64_t total_size;
    int64_t avail_offset;
    int64_t slots_offset;
    int32_t closed;                              /* 1 once closed: waits return, claims fail */
    int32_t n_consumers;                         /* registered consumer slots (grow only) */
    int32_t consumer_active[RL_MAX_CONSUMERS];   /* 1 = gates the producers */
    int32_t consumer_deps[RL_MAX_CONSUMERS];     /* bitmask of upstream consumers */
    rl_line_seq cursor;       /* SP: highest published; MP: highest claimed */
    rl_line_seq gating_cache; /* MP: last seen minimum of the consumer sequences */
    rl_line_seq consumers[RL_MAX_CONSUMERS];
    rl_line_wake wake;        /* blocking strategy: futex word and sleeper count */
} rl_ring_header;
#endif
