"""The load generator's send/receive loop in C (``ringlog.loadgen`` keeps the plan, logons,
sockets and summary).

::

    per connection: frames pre-encoded (one buffer) + frame ends + intended times (absolute ns)
    set-up: one epoll fd, every socket in it once (level-triggered EPOLLIN, data = its index)
    loop (one thread):
      epoll_pwait2 (ns timeout; GIL released) until an answer arrives, a blocked send can go
            on, or the next send round (the next sample while sending, a drain step after)
      now = one clock read per wake
      readable ─► recv() into the connection's buffer ─► AnswerScanner._scan (the scanner's C
            walk) ─► done[seq - base] = the stamp; a partial frame is kept for the next read
            stamp: the wake's clock read, or (kernel stamps) the kernel's receive time of the
            read's last segment (SO_TIMESTAMPNS via recvmsg), moved to CLOCK_MONOTONIC
      writable ─► the rest of the blocked send (EPOLLOUT is in the set only while one is)
      send round, at most one a tick (and none before an order is due): each connection's
            frames due by now ─► one send(MSG_DONTWAIT) (while a send is incomplete nothing
            newer is added: late orders keep their intended times)
      every 100 ms while sending: (t, outstanding, send lag) sample

Without kernel stamps, answers are stamped when they arrive (every answer wakes the loop);
with them, while sending, the loop sleeps from round to round and reads the answers then:
one wake per round instead of one per answer burst, and a stamp no earlier than the answer's
arrival (a read's last segment's; earlier ones in the same read are stamped late, never
early). Sends are paced by the tick alone (an answer's wake does not send), so a send
carries a tick's orders. No Python object is made per order or per wake; the GIL is held
(one thread) except in the wait.
"""

from cpython.bytes cimport PyBytes_AS_STRING
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, EINTR, EMSGSIZE, ENOSYS, errno
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memmove, memset
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec
from posix.unistd cimport close

from ringlog._wire cimport AnswerScanner


cdef extern from "<poll.h>" nogil:
    ctypedef unsigned long nfds_t
    struct pollfd:
        int fd
        short events
        short revents
    enum:
        POLLIN
    int ppoll(pollfd* fds, nfds_t nfds, const timespec* tmo, const void* sigmask)

cdef extern from "<sys/epoll.h>" nogil:
    union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    int epoll_pwait2(int epfd, epoll_event* events, int maxevents, const timespec* timeout,
                     const void* sigmask)

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    cmsghdr* CMSG_FIRSTHDR(msghdr* m)
    cmsghdr* CMSG_NXTHDR(msghdr* m, cmsghdr* c)
    unsigned char* CMSG_DATA(cmsghdr* c)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    ssize_t recvmsg(int fd, msghdr* m, int flags)
    int setsockopt(int fd, int level, int name, const void* value, socklen_t size)
    enum:
        MSG_DONTWAIT
        MSG_NOSIGNAL
        SOL_SOCKET
        SO_TIMESTAMPNS              # the receive time, CLOCK_REALTIME, as a timespec
        SCM_TIMESTAMPNS

cdef extern from *:
    """
    #include <errno.h>
    static inline void set_errno(int e) { errno = e; }
    """
    void set_errno(int e) nogil

cdef extern from "<time.h>" nogil:
    enum:
        TIMER_ABSTIME
    int clock_nanosleep(int clock, int flags, const timespec* t, timespec* rest)


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
    WAIT_PWAIT2 = 0                 # epoll_pwait2: ns timeout (Linux >= 5.11)
    WAIT_EPOLL = 1                  # the fallback (ENOSYS, or asked for): epoll_wait + ppoll


# what ``drive`` reports a connection was lost to (its kind), for the caller's message
LOST = {LOST_SEND: "send", LOST_RECV: "recv", LOST_CLOSED: "closed"}


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
    uint32_t k                  # its index (the epoll event's data)
    bint out                    # EPOLLOUT is in its epoll interest (a send is incomplete)
    int64_t sends, blocked      # send() calls; those that left bytes for EPOLLOUT
    int lost, lost_errno


cdef struct poller_t:
    int epfd                    # every connection's socket, level-triggered
    int mode                    # WAIT_PWAIT2 or WAIT_EPOLL
    epoll_event* evs            # one per connection
    int nev
    bint kstamps                # answers stamped with the kernel's receive time
    int64_t real_to_mono        # CLOCK_MONOTONIC - CLOCK_REALTIME at this wake (kstamps)


cdef inline int64_t clock_ns(int clock) noexcept nogil:
    cdef timespec ts
    clock_gettime(clock, &ts)
    return <int64_t>ts.tv_sec * 1_000_000_000 + ts.tv_nsec


cdef inline int64_t mono_ns() noexcept nogil:
    return clock_ns(CLOCK_MONOTONIC)


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


cdef int watch(const poller_t* pl, conn_t* c, bint out) noexcept nogil:
    """Sets the connection's epoll interest: EPOLLIN, with EPOLLOUT while ``out``."""
    cdef epoll_event ev
    ev.events = EPOLLIN | (EPOLLOUT if out else 0)
    ev.data.u32 = c.k
    c.out = out
    return epoll_ctl(pl.epfd, EPOLL_CTL_MOD, c.fd, &ev)


cdef inline void lose(const poller_t* pl, conn_t* c, int why, int err) noexcept nogil:
    c.lost = why
    c.lost_errno = err
    c.next = c.n
    c.send_to = c.sent_to
    epoll_ctl(pl.epfd, EPOLL_CTL_DEL, c.fd, NULL)  # a dead socket would stay readable


cdef void push(const poller_t* pl, conn_t* c) noexcept nogil:
    """Sends what was handed to sends and not yet taken; EPOLLOUT while some is left."""
    cdef ssize_t w = send(c.fd, c.frames + c.sent_to, c.send_to - c.sent_to,
                          MSG_DONTWAIT | MSG_NOSIGNAL)
    c.sends += 1
    if w >= 0:
        c.sent_to += w
    elif errno != EAGAIN and errno != EINTR:
        lose(pl, c, LOST_SEND, errno)
        return
    c.blocked += c.sent_to < c.send_to
    if (c.sent_to < c.send_to) != c.out and watch(pl, c, not c.out) < 0:
        lose(pl, c, LOST_SEND, errno)


cdef void send_due(const poller_t* pl, conn_t* c, int64_t now) noexcept nogil:
    """Hands every frame due by ``now`` to one send; while the socket has not taken the
    last one, nothing newer is added (the late orders keep their intended times)."""
    cdef Py_ssize_t j
    if c.sent_to == c.send_to:
        j = c.next
        while j < c.n and c.intended[j] <= now:
            j += 1
        if j == c.next:
            return
        c.next = j
        c.send_to = c.ends[j - 1]
    push(pl, c)


cdef int64_t real_to_mono(int64_t* now) noexcept nogil:
    """CLOCK_MONOTONIC - CLOCK_REALTIME, never less than it was at any instant between the
    reads (a stamp moved by it errs late, by at most the reads' span, ~2 us unless every
    try was preempted); ``now`` is set to the last monotonic read."""
    cdef int64_t a, r, b
    cdef int _try
    for _try in range(4):
        a = mono_ns()
        r = clock_ns(CLOCK_REALTIME)
        b = mono_ns()
        if b - a <= 2000:
            break
    now[0] = b
    return b - r


cdef ssize_t recv_stamped(const poller_t* pl, int fd, void* buf, size_t n,
                          int64_t* stamp) noexcept nogil:
    """recv() that also sets ``stamp`` to the kernel's receive time of the last segment read
    (as CLOCK_MONOTONIC, at most the current ``stamp``), if the kernel gave one."""
    cdef iovec iov
    cdef msghdr m
    cdef cmsghdr* cm
    cdef timespec ts
    cdef int64_t t
    cdef uint64_t control[8]  # room for one cmsghdr + timespec, aligned
    iov.iov_base = buf
    iov.iov_len = n
    memset(&m, 0, sizeof(m))
    m.msg_iov = &iov
    m.msg_iovlen = 1
    m.msg_control = control
    m.msg_controllen = sizeof(control)
    cdef ssize_t r = recvmsg(fd, &m, MSG_DONTWAIT)
    if r <= 0:
        return r
    cm = CMSG_FIRSTHDR(&m)
    while cm != NULL:
        if cm.cmsg_level == SOL_SOCKET and cm.cmsg_type == SCM_TIMESTAMPNS:
            memcpy(&ts, CMSG_DATA(cm), sizeof(ts))
            t = <int64_t>ts.tv_sec * 1_000_000_000 + ts.tv_nsec + pl.real_to_mono
            if t < stamp[0]:  # a clock step between the two reads could put it ahead
                stamp[0] = t
            break
        cm = CMSG_NXTHDR(&m, cm)
    return r


cdef void read_ready(const poller_t* pl, conn_t* c, AnswerScanner scanner,
                     int64_t now) noexcept:
    """Reads what the socket holds and scans the complete frames (a partial one stays),
    stamped ``now`` or, with kernel stamps, each read's receive time."""
    cdef ssize_t r
    cdef Py_ssize_t used, room
    cdef int64_t stamp = now
    while True:
        room = 2 * RECV_SIZE - c.rlen
        if room == 0:  # one answer frame larger than the buffer: never sent by the gateway
            lose(pl, c, LOST_RECV, EMSGSIZE)
            return
        if pl.kstamps:
            stamp = now
            r = recv_stamped(pl, c.fd, c.rbuf + c.rlen, room, &stamp)
        else:
            r = recv(c.fd, c.rbuf + c.rlen, room, MSG_DONTWAIT)
        if r < 0:
            if errno != EAGAIN and errno != EINTR:
                lose(pl, c, LOST_RECV, errno)
            return
        if r == 0:
            lose(pl, c, LOST_CLOSED, 0)
            return
        c.rlen += r
        used = scanner._scan(c.rbuf, c.rlen, stamp)
        if used:
            c.rlen -= used
            memmove(c.rbuf, c.rbuf + used, c.rlen)
        if r < room:
            return


cdef int wait_events(poller_t* pl, int64_t wait_ns) noexcept nogil:
    """Waits up to ``wait_ns`` for events (into ``pl.evs``); their count, 0 on timeout, -1
    with errno. epoll_pwait2 takes the ns timeout; without it (ENOSYS: Linux < 5.11) a wait
    of 1 ms or more is epoll_wait's ms rounded down (the loop comes back for the rest) and a
    shorter one is ppoll's on the epoll fd, readable while an event is ready."""
    cdef timespec ts
    cdef pollfd pf
    cdef int rc
    ts.tv_sec = wait_ns // 1_000_000_000
    ts.tv_nsec = wait_ns % 1_000_000_000
    if pl.mode == WAIT_PWAIT2:
        rc = epoll_pwait2(pl.epfd, pl.evs, pl.nev, &ts, NULL)
        if rc >= 0 or errno != ENOSYS:
            return rc
        pl.mode = WAIT_EPOLL
    if wait_ns >= 1_000_000:
        return epoll_wait(pl.epfd, pl.evs, pl.nev, <int>(wait_ns // 1_000_000))
    pf.fd = pl.epfd
    pf.events = POLLIN
    rc = ppoll(&pf, 1, &ts, NULL)
    if rc <= 0:
        return rc
    return epoll_wait(pl.epfd, pl.evs, pl.nev, 0)


cdef int sleep_then_poll(poller_t* pl, int64_t until) noexcept nogil:
    """Sleeps until ``until`` (CLOCK_MONOTONIC ns) whatever arrives, then takes the events
    ready (into ``pl.evs``) without waiting: their count, or -1 with errno."""
    cdef timespec ts
    cdef int rc
    ts.tv_sec = until // 1_000_000_000
    ts.tv_nsec = until % 1_000_000_000
    rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)
    if rc != 0:  # it returns the error rather than setting errno
        set_errno(rc)
        return -1
    return epoll_wait(pl.epfd, pl.evs, pl.nev, 0)


def drive(list fds, list frames, list ends, list intended, list scanners, int64_t tick_ns,
          int64_t drain_ns, int64_t sample_ns, int64_t start_ns, bint precise_wait=True,
          bint kernel_stamps=False):
    """Runs the open loop over the connections (``fds[k]`` non-blocking, logged on; its
    pre-encoded ``frames[k]`` bytes, their ``ends[k]`` and ``intended[k]`` absolute ns, int64
    arrays; answers to ``scanners[k]``) until every order is answered or a connection is lost,
    or ``drain_ns`` after the last send. Sends go in rounds at most ``tick_ns`` apart; answers
    are stamped as they arrive, or with ``kernel_stamps`` read at the rounds and stamped with
    the kernel's receive time (SO_TIMESTAMPNS) while sending (as they arrive in the drain).
    ``precise_wait`` False takes the fallback of a kernel without epoll_pwait2 (tests).
    Returns ``(samples, conns, wakes)``: ``(t - start_ns, outstanding, send lag)`` every
    ``sample_ns`` while sending; per connection ``(lost, errno, orders handed to sends,
    send() calls, sends left incomplete)`` with lost 0 (no), 1 (send), 2 (recv) or 3
    (closed by the peer); the waits the loop made."""
    cdef Py_ssize_t nc = len(fds), k, sent, answered
    cdef conn_t* cs = <conn_t*>calloc(nc, sizeof(conn_t))  # rbuf NULL
    cdef conn_t* c
    cdef poller_t pl
    cdef const int64_t[::1] ev, iv
    cdef epoll_event reg
    cdef int64_t now, last_due = 0, next_sample = start_ns, deadline = 0, next_round = 0
    cdef int64_t due, wake, lag, lag_max, wakes = 0
    cdef bint sending, finished, any_open
    cdef int rc, i, one = 1
    pl.epfd = -1
    pl.mode = WAIT_PWAIT2 if precise_wait else WAIT_EPOLL
    pl.nev = <int>nc
    pl.kstamps = kernel_stamps
    pl.real_to_mono = 0
    pl.evs = <epoll_event*>malloc(nc * sizeof(epoll_event))
    if cs == NULL or pl.evs == NULL:
        free(cs)
        free(pl.evs)
        raise MemoryError()
    # the kernel's default 50 us timer slack would stretch every tick's sleep (and the latency)
    cdef int slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    samples = []
    keep = []  # the buffers the C structs point into
    try:
        pl.epfd = epoll_create1(EPOLL_CLOEXEC)
        if pl.epfd < 0:
            raise OSError(errno, "epoll_create1")
        for k in range(nc):
            ev = ends[k]
            iv = intended[k]
            keep.append((frames[k], ev, iv))
            c = &cs[k]
            c.fd = fds[k]
            c.k = <uint32_t>k
            c.frames = <const uint8_t*>PyBytes_AS_STRING(frames[k])
            c.n = iv.shape[0]
            if ev.shape[0] != c.n:
                raise ValueError(f"connection {k}: {ev.shape[0]} frame ends for {c.n} orders")
            c.ends = &ev[0] if c.n else NULL
            c.intended = &iv[0] if c.n else NULL
            if c.n and c.intended[c.n - 1] > last_due:
                last_due = c.intended[c.n - 1]
            c.rbuf = <uint8_t*>malloc(2 * RECV_SIZE)  # a partial frame (one order's answers)
            if c.rbuf == NULL:                        # + a read
                raise MemoryError()
            if kernel_stamps and setsockopt(c.fd, SOL_SOCKET, SO_TIMESTAMPNS, &one,
                                            sizeof(one)) < 0:
                raise OSError(errno, f"setsockopt(SO_TIMESTAMPNS): connection {k}")
            reg.events = EPOLLIN
            reg.data.u32 = c.k
            if epoll_ctl(pl.epfd, EPOLL_CTL_ADD, c.fd, &reg) < 0:
                raise OSError(errno, f"epoll_ctl: connection {k}")
        now = mono_ns()
        while True:
            # a send round: due orders wait for it at most a tick (an answer's wake that
            # comes a tick after the last round also sends)
            sending = now <= last_due + tick_ns
            due = 0
            for k in range(nc):
                c = &cs[k]
                if c.next < c.n or c.sent_to < c.send_to:
                    sending = True
                    if c.next < c.n and (due == 0 or c.intended[c.next] < due):
                        due = c.intended[c.next]
            if due and now >= next_round and due <= now:
                for k in range(nc):
                    if not cs[k].lost:
                        send_due(&pl, &cs[k], now)
                next_round = now + tick_ns
                due = 0
                for k in range(nc):
                    c = &cs[k]
                    if c.next < c.n and (due == 0 or c.intended[c.next] < due):
                        due = c.intended[c.next]
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
            any_open = False
            for k in range(nc):
                any_open = any_open or not cs[k].lost
            if not any_open:
                break
            if sending:  # until the next round (or sample); an answer wakes it sooner
                wake = next_sample
                if due:
                    wake = min(wake, max(due, next_round))
            else:
                finished = True
                for k in range(nc):
                    if not cs[k].lost and (<AnswerScanner>scanners[k]).answered != cs[k].n:
                        finished = False
                if finished:
                    break
                if deadline == 0:
                    deadline = now + drain_ns
                elif now >= deadline:
                    break
                wake = min(deadline, now + sample_ns)
            with nogil:
                if kernel_stamps and sending:  # the answers wait for the round: one wake
                    rc = sleep_then_poll(&pl, wake)
                else:
                    rc = wait_events(&pl, max(wake - now, 0))
            wakes += 1
            now = mono_ns()  # the wake's clock read: answers' time and the next round's
            if kernel_stamps:
                pl.real_to_mono = real_to_mono(&now)
            if rc > 0:
                for i in range(rc):
                    c = &cs[pl.evs[i].data.u32]
                    if c.lost:
                        continue
                    if pl.evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP):
                        read_ready(&pl, c, <AnswerScanner>scanners[c.k], now)
                    if pl.evs[i].events & EPOLLOUT and not c.lost and c.sent_to < c.send_to:
                        push(&pl, c)  # the rest of a blocked send: its orders are late
            elif rc < 0:
                if errno != EINTR:
                    raise OSError(errno, "epoll_pwait2" if pl.mode == WAIT_PWAIT2
                                  else "epoll_wait")
                PyErr_CheckSignals()  # a signal's handler (Ctrl-C) runs here
        return samples, [(cs[k].lost, cs[k].lost_errno, cs[k].next, cs[k].sends, cs[k].blocked)
                         for k in range(nc)], wakes
    finally:
        if slack > 0:
            prctl(PR_SET_TIMERSLACK, slack, 0, 0, 0)
        if pl.epfd >= 0:
            close(pl.epfd)
        for k in range(nc):
            free(cs[k].rbuf)
        free(cs)
        free(pl.evs)
