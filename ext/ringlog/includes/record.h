/* Building a journal record's body (docs/journal-format.md, "Record") for an output: the
 * 48-byte event header from its fields, then the payload, and the CRC32C of the two.
 *
 *   rl_output_body_pick()(d, seq, ts, corr, cause, type, flags, payload, length)
 *        d ─► | seq | ts | corr | cause | type,flags | length,0 | payload (length bytes) |
 *        returns crc32c(all of it)
 *
 * Where the CPU has the crc32 instruction the header's six words are stored and folded into
 * the checksum from registers (never read back), and the payload is copied and checksummed
 * in the same pass; one call per output record. Same bytes as rl_header_set + rl_crc32c. */
#ifndef RINGLOG_RECORD_H
#define RINGLOG_RECORD_H
#include <stdint.h>
#include <string.h>
#include "event.h"
#include "crc32c.h"

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t rl_output_body_hw(rl_header *d, int64_t seq, int64_t ts, int64_t corr,
                                  int64_t cause, uint32_t type_id, uint32_t flags,
                                  const void *payload, uint32_t length) {
    /* little-endian (x86-64): type_id then flags, length then producer_id 0; each word
     * stored where it goes (an array built first went through the stack) */
    uint64_t tf = (uint64_t)type_id | ((uint64_t)flags << 32), ln = (uint64_t)length;
    uint8_t *b = (uint8_t *)d;
    uint64_t c = 0xFFFFFFFFu;
    memcpy(b, &seq, 8);
    memcpy(b + 8, &ts, 8);
    memcpy(b + 16, &corr, 8);
    memcpy(b + 24, &cause, 8);
    memcpy(b + 32, &tf, 8);
    memcpy(b + 40, &ln, 8);
    c = __builtin_ia32_crc32di(c, (uint64_t)seq);
    c = __builtin_ia32_crc32di(c, (uint64_t)ts);
    c = __builtin_ia32_crc32di(c, (uint64_t)corr);
    c = __builtin_ia32_crc32di(c, (uint64_t)cause);
    c = __builtin_ia32_crc32di(c, tf);
    c = __builtin_ia32_crc32di(c, ln);
    if (length == 0) return ~(uint32_t)c;
    return rl_crc32c_copy_hw(~(uint32_t)c, (uint8_t *)d + RL_HEADER_SIZE, payload, length);
}
#endif

/* the portable build: the header by fields, then the table CRC over what was written */
static uint32_t rl_output_body_sw(rl_header *d, int64_t seq, int64_t ts, int64_t corr,
                                  int64_t cause, uint32_t type_id, uint32_t flags,
                                  const void *payload, uint32_t length) {
    rl_header_set(d, seq, ts, corr, cause, type_id, flags, length);
    if (length) memcpy((uint8_t *)d + RL_HEADER_SIZE, payload, length);
    return rl_crc32c_sw(0, d, RL_HEADER_SIZE + (size_t)length);
}

typedef uint32_t (*rl_output_body_fn)(rl_header *d, int64_t seq, int64_t ts, int64_t corr,
                                      int64_t cause, uint32_t type_id, uint32_t flags,
                                      const void *payload, uint32_t length);

/* The build for the implementation in force in the calling module. rl_crc32c_mode is a
 * static of each module that includes crc32c.h, so code inlined into another module (the
 * loop) calls through the pointer its appender picked, never its own unset mode. */
static inline rl_output_body_fn rl_output_body_pick(void) {
    rl_crc32c_setup();
#if defined(__x86_64__)
    if (rl_crc32c_mode == 1) return rl_output_body_hw;
#endif
    return rl_output_body_sw;
}
#endif
