# Declarations of includes/tables.h: large tables read at random (huge pages, prefetch).


cdef extern from "tables.h" nogil:
    void* rl_table_alloc(size_t size) noexcept
    void rl_prefetch(const void* p) noexcept
    void rl_prefetch_w(const void* p) noexcept
