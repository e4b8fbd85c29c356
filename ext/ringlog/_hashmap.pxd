# An integer hash map in C: uint64 keys to int64 values >= 0, open addressing with linear
# probing and backward-shift deletion, 16 bytes per entry and no Python object. Inline, so
# that every module that cimports it (the engine's order ids, the loop's dedup positions)
# runs the same code without a call between modules.
#
# Keys that differ only in their low MAP_BITS bits (ids handed out in sequence) share one home
# line of MAP_GROUP entries: a new order's id lands in the line its predecessors' ids warmed,
# and a cancel soon after finds it still cached. The other bits are spread by Fibonacci
# hashing (one multiply; the product's top bits), so strided or clustered ids still scatter:
# at most MAP_GROUP keys share a home line.
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free

from ringlog.includes.tables cimport rl_prefetch_w, rl_table_alloc


ctypedef struct rl_entry:       # one hash map slot: key and value in one 16-byte entry
    uint64_t key
    int64_t val                 # >= 0; MAP_EMPTY marks a free slot

ctypedef struct rl_map:         # open addressing, linear probing, backward-shift deletion
    rl_entry* slots             # 64-byte aligned: a group of MAP_GROUP entries is one line
    uint64_t mask
    int shift                   # 64 - log2(slots / MAP_GROUP): the hash keeps the top bits
    int64_t size


cdef enum:
    MAP_BITS = 2
    MAP_GROUP = 4               # 1 << MAP_BITS entries of 16 bytes: one cache line
    MAP_EMPTY = -1


cdef inline uint64_t map_home(const rl_map* m, uint64_t key) noexcept nogil:
    return ((((key >> MAP_BITS) * <uint64_t>0x9E3779B97F4A7C15) >> m.shift) << MAP_BITS
            | (key & (MAP_GROUP - 1)))


cdef inline void map_prefetch(const rl_map* m, uint64_t key) noexcept nogil:
    # starts loading the home line of `key` (to read or write it soon): a lookup a few
    # commands later finds it in the cache instead of waiting on memory
    rl_prefetch_w(&m.slots[map_home(m, key)])


cdef inline int64_t map_get(const rl_map* m, uint64_t key, int64_t missing) noexcept nogil:
    cdef uint64_t i = map_home(m, key)
    cdef const rl_entry* e
    while True:
        e = &m.slots[i]
        if e.val < 0:
            return missing
        if e.key == key:
            return e.val
        i = (i + 1) & m.mask


cdef inline int64_t* map_slot(rl_map* m, uint64_t key, int64_t initial) noexcept nogil:
    # the value slot of `key`, inserted with `initial` (>= 0) if absent; the caller keeps
    # size < cap (map_init's room, or map_reserve before the insert)
    cdef uint64_t i = map_home(m, key)
    cdef rl_entry* e
    while True:
        e = &m.slots[i]
        if e.val < 0:
            break
        if e.key == key:
            return &e.val
        i = (i + 1) & m.mask
    e.key = key
    e.val = initial
    m.size += 1
    return &e.val


cdef inline void map_del(rl_map* m, uint64_t key) noexcept nogil:
    # backward-shift deletion: no tombstones, so probe lengths never degrade
    cdef uint64_t i = map_home(m, key)
    cdef uint64_t j, h
    while True:
        if m.slots[i].val < 0:
            return
        if m.slots[i].key == key:
            break
        i = (i + 1) & m.mask
    j = i
    while True:
        j = (j + 1) & m.mask
        if m.slots[j].val < 0:
            break
        h = map_home(m, m.slots[j].key)
        if (h <= i or h > j) if i <= j else (h <= i and h > j):
            m.slots[i] = m.slots[j]
            i = j
    m.slots[i].val = MAP_EMPTY
    m.size -= 1


cdef inline void map_clear(rl_map* m) noexcept:
    cdef uint64_t i
    for i in range(m.mask + 1):
        m.slots[i].val = MAP_EMPTY
    m.size = 0


cdef inline int map_init(rl_map* m, int64_t entries) except -1:
    # room for `entries` keys at a load factor <= 1/2; writes every entry, so its pages are
    # touched now, not while matching
    cdef uint64_t cap = 2 * MAP_GROUP
    cdef int bits = 1
    while cap < <uint64_t>(2 * entries):
        cap <<= 1
        bits += 1
    m.slots = <rl_entry*>rl_table_alloc(cap * sizeof(rl_entry))
    if m.slots == NULL:
        raise MemoryError(f"cannot allocate a hash map of {cap} slots")
    m.mask = cap - 1
    m.shift = 64 - bits
    map_clear(m)
    return 0


cdef inline void map_free(rl_map* m) noexcept:
    free(m.slots)
    m.slots = NULL


cdef inline int map_reserve(rl_map* m, int64_t more) except -1:
    # room for `more` new keys at a load factor <= 1/2: a map without a fixed bound (keys a
    # client chooses) doubles here, before the inserts, never in map_slot
    cdef rl_map grown
    cdef uint64_t i
    if 2 * (m.size + more) <= <int64_t>(m.mask + 1):
        return 0
    map_init(&grown, 2 * (m.size + more))
    for i in range(m.mask + 1):
        if m.slots[i].val >= 0:
            map_slot(&grown, m.slots[i].key, m.slots[i].val)
    map_free(m)
    m[0] = grown
    return 0
