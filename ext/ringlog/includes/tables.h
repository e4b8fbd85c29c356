/* Large tables read at random (the engine's order pool and hash maps): where they live and
 * how a line of one is fetched ahead of its use.
 *
 * - rl_table_alloc: hundreds of MiB touched at random miss the TLB on nearly every lookup
 *   with 4 KiB pages (in a VM each miss is a two-level page walk). Tables of 2 MiB or more
 *   are allocated 2 MiB aligned and madvise(MADV_HUGEPAGE)'d before their first touch (THP
 *   "madvise" mode, the common default, backs only such regions); smaller ones 64-byte
 *   aligned. Either is released with free().
 * - rl_prefetch / rl_prefetch_w: start loading a line to read / to write, so that a lookup
 *   a few commands later finds it in the cache instead of waiting on memory. A hint: no
 *   fault, no effect on what the program computes. */
#ifndef RINGLOG_TABLES_H
#define RINGLOG_TABLES_H

#include <stdlib.h>
#include <sys/mman.h>

#define RL_HUGE_PAGE ((size_t)2 << 20)

static inline void *rl_table_alloc(size_t size)
{
    void *p;
    if (size < RL_HUGE_PAGE)
        return aligned_alloc(64, (size + 63) & ~(size_t)63);
    size = (size + RL_HUGE_PAGE - 1) & ~(RL_HUGE_PAGE - 1);
    p = aligned_alloc(RL_HUGE_PAGE, size);
#ifdef MADV_HUGEPAGE
    if (p != NULL)
        (void)madvise(p, size, MADV_HUGEPAGE); /* a hint: 4 KiB pages if refused */
#endif
    return p;
}

#define rl_prefetch(p) __builtin_prefetch((p), 0, 3)
#define rl_prefetch_w(p) __builtin_prefetch((p), 1, 3)

#endif
