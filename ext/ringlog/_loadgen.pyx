"""The load generator's send/receive loop in C (``ringlog.loadgen`` keeps the plan, logons,
sockets and summary).

::

    per connection: frames pre-encoded (one buffer) + frame ends + intended times (absolute ns)
    loop (one thread):
      now ─► each connection: frames due by now ─► one send(MSG_DONTWAIT) from the buffer
             (while a send is incomplete nothing newer is added: late orders keep their times)
      ppoll(POLLIN, +POLLOUT while a send is incomplete; GIL released) with a ns timeout to
             the next due send, at least one tick
      readable ─► recv() into the connection's buffer ─► AnswerScanner._scan (the scanner's C
             walk) ─► done[seq - base] = now; a partial frame is kept in place for the next read
    every 100 ms while sending: (t, outstanding, send lag) sample

No Python object is made per order or per wake; the GIL is held (one thread) except in ppoll.
"""

from cpython.bytes cimport PyBytes_AS_STRING
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, EINTR, EMSGSIZE, errno
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memmove
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from ringlog._wire cimport AnswerScanner


cdef extern from "<poll.h>" nogil:
    ctypedef unsigned long nfds_t
    struct pollfd:
        int fd
        short events
        short revents
    enum:
        POLLIN
        POLLOUT
        POLLERR
        POLLHUP
    int ppoll(pollfd* fds, nfds_t nfds, const timespec* tmo, const void* sigmask)

cdef extern from "<sys/socket.h>" nogil:
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    enum:
        MSG_DONTWAIT
        MSG_NOSIGNAL


cdef extern from "<sys/prctl.h>" nogil:
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
              unsigned long arg5)
    enum:
        PR_SET_TIMERSLACK
        PR_GET_TIMERSLACK


cdef enum:
    RECV_SIZE = 1 << 18             # the buffer is twice this: a partial frame + a read
    LOST_NONE = 0
    LOST_SEND = 1
    LOST_RECV = 2
    LOST_CLOSED = 3


cdef struct conn_t:
    int fd
    const uint8_t* frames       # every frame of the connection, in order
    const int64_t* ends         # ends[i]: the byte after frame i
    const int64_t* intended     # absolute intended send time of order i (sorted)
    Py_ssize_t n                # orders
    Py_ssize_t next             # first order not yet handed to a send
    int64_t sent_to             # bytes of ``frames`` the socket accepted
    int64_t send_to             # bytes handed to sends so far (ends[next - 1])
    uint8_t* rbuf               # received bytes not yet scanned (a partial frame) + room
    Py_ssize_t rlen
    int lost, lost_errno


cdef inline int64_t mono_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1_000_000_000 + ts.tv_nsec


def frame_ends(const uint8_t[::1] frames, Py_ssize_t count):
    """The end offset of each of the first ``count`` length-prefixed frames of ``frames``
    (an int64 numpy array); ValueError if they run past the end."""
    import numpy as np
    out = np.empty(count, np.int64)
    cdef int64_t[::1] ends = out
    cdef Py_ssize_t pos = 0, i, n = frames.shape[0]
    for i in range(count):
        if pos + 4 > n:
            raise ValueError(f"frame {i} starts at {pos}, past the {n} bytes")
        pos += 4 + ((<Py_ssize_t>frames[pos] << 24) | (<Py_ssize_t>frames[pos + 1] << 16) |
                    (<Py_ssize_t>frames[pos + 2] << 8) | frames[pos + 3])
        ends[i] = pos
    if pos > n:
        raise ValueError(f"the last frame ends at {pos}, past the {n} bytes")
    return out


cdef inline void lose(conn_t* c, int why, int err) noexcept nogil:
    c.lost = why
    c.lost_errno = err
    c.next = c.n
    c.send_to = c.sent_to


cdef void send_due(conn_t* c, int64_t now) noexcept nogil:
    """Hands every frame due by ``now`` to one send; while the socket has not taken the
    last one, nothing newer is added (the late orders keep their intended times)."""
    cdef Py_ssize_t j
    cdef ssize_t w
    if c.sent_to == c.send_to:
        j = c.next
        while j < c.n and c.intended[j] <= now:
            j += 1
        if j == c.next:
            return
        c.next = j
        c.send_to = c.ends[j - 1]
    w = send(c.fd, c.frames + c.sent_to, c.send_to - c.sent_to, MSG_DONTWAIT | MSG_NOSIGNAL)
    if w >= 0:
        c.sent_to += w
    elif errno != EAGAIN and errno != EINTR:
        lose(c, LOST_SEND, errno)


cdef void read_ready(conn_t* c, AnswerScanner scanner, int64_t now) noexcept:
    """Reads what the socket holds and scans the complete frames (a partial one stays)."""
    cdef ssize_t r
    cdef Py_ssize_t used, room
    while True:
        room = 2 * RECV_SIZE - c.rlen
        if room == 0:  # one answer frame larger than the buffer: never sent by the gateway
            lose(c, LOST_RECV, EMSGSIZE)
            return
        r = recv(c.fd, c.rbuf + c.rlen, room, MSG_DONTWAIT)
        if r < 0:
            if errno != EAGAIN and errno != EINTR:
                lose(c, LOST_RECV, errno)
            return
        if r == 0:
            lose(c, LOST_CLOSED, 0)
            return
        c.rlen += r
        used = scanner._scan(c.rbuf, c.rlen, now)
        if used:
            c.rlen -= used
            memmove(c.rbuf, c.rbuf + used, c.rlen)
        if r < room:
            return


def drive(list fds, list frames, list ends, list intended, list scanners, int64_t tick_ns,
          int64_t drain_ns, int64_t sample_ns, int64_t start_ns):
    """Runs the open loop over the connections (``fds[k]`` non-blocking, logged on; its
    pre-encoded ``frames[k]`` bytes, their ``ends[k]`` and ``intended[k]`` absolute ns, int64
    arrays; answers to ``scanners[k]``) until every order is answered or a connection is lost,
    or ``drain_ns`` after the last send. Returns ``(samples, lost)``: ``(t - start_ns,
    outstanding, send lag)`` every ``sample_ns`` while sending, and per connection
    ``(kind, errno, orders handed to sends)`` with kind 0 (none), 1 (send), 2 (recv) or 3
    (closed by the peer)."""
    cdef Py_ssize_t nc = len(fds), k, sent, answered
    cdef conn_t* cs = <conn_t*>calloc(nc, sizeof(conn_t))  # rbuf NULL
    cdef pollfd* pfds = <pollfd*>malloc(nc * sizeof(pollfd))
    cdef const int64_t[::1] ev, iv
    cdef AnswerScanner sc
    cdef int64_t now, last_due = 0, next_sample = start_ns, deadline = 0, nxt, wait, lag
    cdef int64_t t, lag_max
    cdef bint sending, finished, any_open
    cdef int rc
    cdef timespec tmo
    if cs == NULL or pfds == NULL:
        free(cs)
        free(pfds)
        raise MemoryError()
    # the kernel's default 50 us timer slack would stretch every tick's sleep (and the latency)
    cdef int slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    samples = []
    keep = []  # the buffers the C structs point into
    try:
        for k in range(nc):
            ev = ends[k]
            iv = intended[k]
            keep.append((frames[k], ev, iv))
            cs[k].fd = fds[k]
            cs[k].frames = <const uint8_t*>PyBytes_AS_STRING(frames[k])
            cs[k].n = iv.shape[0]
            if ev.shape[0] != cs[k].n:
                raise ValueError(f"connection {k}: {ev.shape[0]} frame ends for "
                                 f"{cs[k].n} orders")
            cs[k].ends = &ev[0] if cs[k].n else NULL
            cs[k].intended = &iv[0] if cs[k].n else NULL
            cs[k].next = 0
            cs[k].sent_to = cs[k].send_to = 0
            cs[k].rbuf = NULL
            cs[k].rlen = 0
            cs[k].lost = cs[k].lost_errno = 0
            if cs[k].n and cs[k].intended[cs[k].n - 1] > last_due:
                last_due = cs[k].intended[cs[k].n - 1]
        for k in range(nc):  # room for a partial frame (at most one order's answers) + a read
            cs[k].rbuf = <uint8_t*>malloc(2 * RECV_SIZE)
            if cs[k].rbuf == NULL:
                raise MemoryError()
        while True:
            now = mono_ns()
            sending = now <= last_due + tick_ns
            for k in range(nc):
                if cs[k].next < cs[k].n or cs[k].sent_to < cs[k].send_to:
                    sending = True
                    send_due(&cs[k], now)
            if sending and now >= next_sample:
                sent = answered = 0
                lag_max = 0
                for k in range(nc):
                    sent += cs[k].next
                    answered += (<AnswerScanner>scanners[k]).answered
                    if cs[k].next < cs[k].n:
                        lag = now - cs[k].intended[cs[k].next]
                        if lag > lag_max:
                            lag_max = lag
                samples.append((now - start_ns, sent - answered, lag_max))
                next_sample = now + sample_ns
            if not sending:
                finished = True
                for k in range(nc):
                    sc = <AnswerScanner>scanners[k]
                    if not cs[k].lost and sc.answered != cs[k].n:
                        finished = False
                if finished:
                    break
                if deadline == 0:
                    deadline = now + drain_ns
                elif now >= deadline:
                    break
            # ppoll until an answer arrives (its time is read at once: the latency is not
            # stretched to a tick) or, while sending, the next due order, at least a tick away
            # (orders due within it leave together in one send)
            nxt = now + sample_ns
            any_open = False
            for k in range(nc):
                if cs[k].next < cs[k].n and cs[k].intended[cs[k].next] < nxt:
                    nxt = cs[k].intended[cs[k].next]
                pfds[k].fd = -1 if cs[k].lost else cs[k].fd
                pfds[k].events = POLLIN
                if cs[k].sent_to < cs[k].send_to:
                    pfds[k].events |= POLLOUT
                pfds[k].revents = 0
                any_open = any_open or not cs[k].lost
            if not any_open:
                break
            wait = max(nxt - now, tick_ns) if sending else sample_ns
            tmo.tv_sec = wait // 1_000_000_000
            tmo.tv_nsec = wait % 1_000_000_000
            with nogil:
                rc = ppoll(pfds, nc, &tmo, NULL)
            if rc > 0:
                t = mono_ns()
                for k in range(nc):
                    if pfds[k].revents & (POLLIN | POLLERR | POLLHUP) and not cs[k].lost:
                        read_ready(&cs[k], <AnswerScanner>scanners[k], t)
            elif rc < 0:
                if errno != EINTR:
                    raise OSError(errno, "ppoll")
                PyErr_CheckSignals()  # a signal's handler (Ctrl-C) runs here
        return samples, [(cs[k].lost, cs[k].lost_errno, cs[k].next) for k in range(nc)]
    finally:
        if slack > 0:
            prctl(PR_SET_TIMERSLACK, slack, 0, 0, 0)
        for k in range(nc):
            free(cs[k].rbuf)
        free(cs)
        free(pfds)
