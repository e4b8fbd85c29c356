/* The fixed event header that starts every ring slot and every journal record body.
 *
 *  0               8               16              24              32
 *  +---------------+---------------+---------------+---------------+
 *  | sequence i64  | timestamp_ns  | correlation_id| producer_seq  |
 *  +-------+-------+-------+-------+---------------+---------------+
 *  |type_id| flags |length |prod_id|  payload (length bytes) ...
 *  +-------+-------+-------+-------+
 *  32      36      40      44      48
 *
 * producer_id + producer_seq form the optional dedup key (producer_id 0 = none).
 * Little-endian, naturally aligned; RL_HEADER_SIZE is part of the on-disk format. */
#ifndef RINGLOG_EVENT_H
#define RINGLOG_EVENT_H
#include <stdint.h>

typedef struct rl_header {
    int64_t  sequence;
    int64_t  timestamp_ns;
    int64_t  correlation_id;
    int64_t  producer_seq;
    uint32_t type_id;
    uint32_t flags;
    uint32_t length;
    uint32_t producer_id;
} rl_header;

#define RL_HEADER_SIZE 48
_Static_assert(sizeof(rl_header) == RL_HEADER_SIZE, "rl_header must be 48 bytes");

/* Every field of a header without a dedup key (producer_id 0): one writer for ring slots
 * and journal records, inlined where it is called. */
static inline void rl_header_set(rl_header *h, int64_t sequence, int64_t timestamp_ns,
                                 int64_t correlation_id, int64_t producer_seq,
                                 uint32_t type_id, uint32_t flags, uint32_t length) {
    h->sequence = sequence;
    h->timestamp_ns = timestamp_ns;
    h->correlation_id = correlation_id;
    h->producer_seq = producer_seq;
    h->type_id = type_id;
    h->flags = flags;
    h->length = length;
    h->producer_id = 0;
}

/* flags */
#define RL_FLAG_MSGPACK   0x1u   /* payload is a msgspec/msgpack-encoded Struct */
#define RL_FLAG_CONTROL   0x2u   /* operator/control event (breaker reset, timers ...) */
#define RL_FLAG_REPLAY    0x4u   /* produced while replaying */
#define RL_FLAG_BATCH_END 0x8u   /* set by the journaller on the last slot of each batch it
                                    journals, so replay sees the live batch boundaries */
#endif
