/* CRC32C (Castagnoli): the SSE4.2 crc32 instruction where the CPU has it (checked once at
 * run time), else a slicing-by-1 table. Same polynomial as iSCSI, ext4 and Chronicle's
 * optional checksum; rl_crc32c(0, "123456789", 9) == 0xE3069283. */
#ifndef RINGLOG_CRC32C_H
#define RINGLOG_CRC32C_H
#include <stdint.h>
#include <stddef.h>
#include <string.h>

static uint32_t rl_crc32c_table[256];
static int rl_crc32c_mode = -1; /* -1 unknown, 0 table, 1 sse4.2 */

static void rl_crc32c_init_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        rl_crc32c_table[i] = c;
    }
}

static uint32_t rl_crc32c_sw(uint32_t crc, const void *buf, size_t len) {
    const uint8_t *p = (const uint8_t *)buf;
    crc = ~crc;
    while (len--) crc = rl_crc32c_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t rl_crc32c_hw(uint32_t crc, const void *buf, size_t len) {
    const uint8_t *p = (const uint8_t *)buf;
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
/* copies n bytes src -> dst and continues crc over them, in one pass (the hot append path:
 * each payload word is loaded once, stored once and folded into the checksum). Four words
 * a step (a 32-byte step costs 15 instructions, two 16-byte ones 18), then words; the tail
 * below a word is one test for the usual whole-word lengths. */
__attribute__((target("sse4.2")))
static uint32_t rl_crc32c_copy_hw(uint32_t crc, void *dst, const void *src, size_t n) {
    const uint8_t *s = (const uint8_t *)src;
    uint8_t *d = (uint8_t *)dst;
    uint64_t c = ~crc;
    size_t i = 0, quads = n & ~(size_t)31, words = n & ~(size_t)7;
    for (; i < quads; i += 32) {
        uint64_t a, b, e, f;
        memcpy(&a, s + i, 8);
        memcpy(&b, s + i + 8, 8);
        memcpy(&e, s + i + 16, 8);
        memcpy(&f, s + i + 24, 8);
        memcpy(d + i, &a, 8);
        memcpy(d + i + 8, &b, 8);
        memcpy(d + i + 16, &e, 8);
        memcpy(d + i + 24, &f, 8);
        c = __builtin_ia32_crc32di(c, a);
        c = __builtin_ia32_crc32di(c, b);
        c = __builtin_ia32_crc32di(c, e);
        c = __builtin_ia32_crc32di(c, f);
    }
    for (; i < words; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        memcpy(d + i, &v, 8);
        c = __builtin_ia32_crc32di(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    if (i == n) return ~c32;
    if (n - i >= 4) {  /* the tail in at most three steps, not byte by byte */
        uint32_t v;
        memcpy(&v, s + i, 4);
        memcpy(d + i, &v, 4);
        c32 = __builtin_ia32_crc32si(c32, v);
        i += 4;
    }
    if (n - i >= 2) {
        uint16_t v;
        memcpy(&v, s + i, 2);
        memcpy(d + i, &v, 2);
        c32 = __builtin_ia32_crc32hi(c32, v);
        i += 2;
    }
    if (i < n) {
        d[i] = s[i];
        c32 = __builtin_ia32_crc32qi(c32, s[i]);
    }
    return ~c32;
}

/* a record body: copies n >= 8 bytes src -> dst with the first 8 replaced by `first` (the
 * journal sequence), returning the CRC32C of what was written - one call per record */
__attribute__((target("sse4.2")))
static uint32_t rl_crc32c_body_hw(void *dst, const void *src, size_t n, uint64_t first) {
    memcpy(dst, &first, 8);
    return rl_crc32c_copy_hw(~(uint32_t)__builtin_ia32_crc32di(0xFFFFFFFFu, first),
                             (uint8_t *)dst + 8, (const uint8_t *)src + 8, n - 8);
}
#endif

static inline void rl_crc32c_setup(void) {
    if (rl_crc32c_mode >= 0) return;
    rl_crc32c_init_table();
#if defined(__x86_64__)
    __builtin_cpu_init();
    rl_crc32c_mode = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    rl_crc32c_mode = 0;
#endif
}

/* crc of buf, continuing from crc (0 to start) */
static inline uint32_t rl_crc32c(uint32_t crc, const void *buf, size_t len) {
#if defined(__x86_64__)
    if (rl_crc32c_mode == 1) return rl_crc32c_hw(crc, buf, len);
#endif
    return rl_crc32c_sw(crc, buf, len);
}

static inline uint32_t rl_crc32c_body(void *dst, const void *src, size_t n, uint64_t first) {
#if defined(__x86_64__)
    if (rl_crc32c_mode == 1) return rl_crc32c_body_hw(dst, src, n, first);
#endif
    memcpy((uint8_t *)dst + 8, (const uint8_t *)src + 8, n - 8);
    memcpy(dst, &first, 8);
    return rl_crc32c_sw(0, dst, n);
}

/* memcpy + rl_crc32c of the copy, fused where the CPU has the crc32 instruction */
static inline uint32_t rl_crc32c_copy(uint32_t crc, void *dst, const void *src, size_t n) {
#if defined(__x86_64__)
    if (rl_crc32c_mode == 1) return rl_crc32c_copy_hw(crc, dst, src, n);
#endif
    memcpy(dst, src, n);
    return rl_crc32c_sw(crc, dst, n);
}
#endif
