/* The counters file (layout version 1): one process's live counters, readable from any
 * process without a lock, in the manner of Aeron's counters (CnC) file.
 *
 *  0                 rl_counters_header: identity and sizes, written once before the file is
 *                    renamed into place; then the writer's heartbeat and the id high-water
 *                    mark, each on a 128-byte line of its own
 *  metadata_offset   max_counters x rl_counter_meta   (128 B each: state, type, label)
 *  values_offset     max_counters x rl_counter_value  (128 B each: one int64 and padding)
 *
 *   metadata record (128 B)                      value record (128 B)
 *   +--------+---------+------------------+      +---------+----------------------------+
 *   | state  | type_id | registration_id  |      | value   | padding: no other value    |
 *   | i32    | i32     | i64              |      | i64     | shares its pair of lines   |
 *   +--------+---------+------------------+      +---------+----------------------------+
 *   | label_length i32 | label (108 B ASCII)|
 *   +------------------+--------------------+
 *
 * A counter's value is stored only by its owner thread, with a release store; readers load it
 * with acquire. Values sit on 128 bytes (two cache lines: the adjacent-line prefetcher moves
 * lines in pairs) so no two owners ever share a line. A record is published by storing its
 * state ALLOCATED last (release); a reader re-checks state and registration id after copying
 * the label, so a record freed and reused under it is read again. All integers little-endian,
 * native alignment. */
#ifndef RINGLOG_COUNTERSLAYOUT_H
#define RINGLOG_COUNTERSLAYOUT_H
#include <stdint.h>

#define RL_COUNTERS_MAGIC 0x31535254434c5452ULL /* "RTLCTRS1" little-endian */
#define RL_COUNTERS_VERSION 1u
#define RL_COUNTERS_LINE 128
#define RL_COUNTERS_HEADER_SIZE 4096
#define RL_COUNTER_LABEL_MAX 108

/* metadata record states */
#define RL_COUNTER_UNUSED 0
#define RL_COUNTER_ALLOCATED 1
#define RL_COUNTER_RECLAIMED -1

/* writer states */
#define RL_WRITER_RUNNING 1
#define RL_WRITER_CLOSED 2

typedef struct { _Alignas(RL_COUNTERS_LINE) int64_t value; } rl_counters_line;

typedef struct rl_counters_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint32_t max_counters;
    uint32_t meta_size;        /* sizeof(rl_counter_meta) */
    uint32_t value_size;       /* sizeof(rl_counter_value) */
    uint32_t reserved;
    int64_t metadata_offset;
    int64_t values_offset;
    int64_t total_size;
    int64_t writer_pid;
    int64_t writer_start_ticks; /* /proc/<pid>/stat starttime: tells a reused pid */
    int64_t created_ns;         /* CLOCK_REALTIME when the file was made */
    rl_counters_line heartbeat_ns;  /* CLOCK_REALTIME, stored by the heartbeat thread */
    rl_counters_line writer_state;  /* RL_WRITER_RUNNING, then RL_WRITER_CLOSED */
    rl_counters_line high_water;    /* ids below it have been allocated at least once */
} rl_counters_header;

typedef struct rl_counter_meta {
    int32_t state;
    int32_t type_id;
    int64_t registration_id;   /* unique per allocation: a reused id gets a new one */
    int32_t label_length;
    char label[RL_COUNTER_LABEL_MAX];
} rl_counter_meta;

typedef struct { _Alignas(RL_COUNTERS_LINE) int64_t value; } rl_counter_value;

_Static_assert(sizeof(rl_counter_meta) == 128, "metadata record is 128 bytes");
_Static_assert(sizeof(rl_counter_value) == 128, "value record is 128 bytes");
_Static_assert(sizeof(rl_counters_header) <= RL_COUNTERS_HEADER_SIZE, "header fits its page");
#endif
