"""C-level producer and consumer loops over the ring, for benchmarks and stress tests.

Each loop runs without the GIL and touches no Python object per event, so two of them on two
threads (or processes) measure the ring itself, as the Disruptor's perftests do in Java.
"""

from libc.stdint cimport int64_t, uint32_t

from ringlog._ring cimport RL_CLOSED, RL_TIMEOUT, Consumer, Ring
from ringlog.includes.event cimport RL_HEADER_SIZE, rl_header
from ringlog.includes.ringwait cimport rl_now_ns, rl_sleep_ns

from ringlog.errors import RingClosedError


cdef extern from "<sys/prctl.h>" nogil:
    int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)
    int PR_SET_TIMERSLACK


__all__ = ["consume", "consume_latency", "consume_values", "cycle", "produce", "produce_paced",
           "produce_values"]


def produce(Ring ring, int64_t count, int batch=1, uint32_t producer_id=0):
    """Publishes ``count`` events in claims of ``batch``; each carries its producer id and a
    per-producer counter (producer_seq) so a consumer can check order and exactly-once."""
    cdef int64_t done = 0, hi, lo, s, n
    cdef rl_header* h
    if batch < 1 or batch > ring.capacity:
        raise ValueError(f"batch must be in 1..{ring.capacity}, got {batch}")
    with nogil:
        while done < count:
            n = batch if count - done >= batch else count - done
            hi = ring.claim(n, -1)
            if hi < -1:
                break
            lo = hi - n + 1
            for s in range(lo, hi + 1):
                h = <rl_header*>ring.slot(s)
                h.sequence = s
                h.producer_id = producer_id
                h.producer_seq = done
                h.length = 8
                (<int64_t*>(<char*>h + RL_HEADER_SIZE))[0] = done
                done += 1
            ring.publish_range(lo, hi)
    if done < count:
        raise RingClosedError(f"the ring closed after {done} of {count} events")
    return done


def consume(Consumer consumer, int64_t count, int nproducers=1, double timeout=30.0):
    """Consumes ``count`` events; checks that each producer's events arrive exactly once and
    in order. Returns the sum of payload counters (an end-to-end checksum)."""
    cdef int64_t seen = 0, nxt = consumer.sequence + 1, avail, s, total = 0
    cdef int64_t expect[64]
    cdef int64_t bad = -1
    cdef uint32_t p
    cdef rl_header* h
    cdef Ring ring = consumer.ring
    if not 0 < nproducers <= 64:
        raise ValueError("nproducers must be in 1..64")
    for s in range(64):
        expect[s] = 0
    with nogil:
        while seen < count:
            avail = consumer.wait_for(nxt, <int64_t>(timeout * 1e9))
            if avail == RL_TIMEOUT or avail == RL_CLOSED:
                break
            for s in range(nxt, avail + 1):
                h = <rl_header*>ring.slot(s)
                p = h.producer_id
                if p >= <uint32_t>nproducers or h.producer_seq != expect[p]:
                    bad = s
                    break
                expect[p] += 1
                total += (<int64_t*>(<char*>h + RL_HEADER_SIZE))[0]
            if bad >= 0:
                break
            seen += avail - nxt + 1
            consumer.set_sequence(avail)
            nxt = avail + 1
    if bad >= 0:
        raise AssertionError(f"event at sequence {bad} is out of order or duplicated")
    if seen < count:
        raise TimeoutError(f"consumed {seen} of {count} events before the timeout/close")
    return total


def produce_values(Ring ring, int64_t count, int batch=1):
    """Like-for-like with the Disruptor's OneToOne perftest: each event writes one 8-byte value
    (its sequence) into the slot's payload and nothing else; claims of ``batch``."""
    cdef int64_t done = 0, hi, lo, s, n
    if batch < 1 or batch > ring.capacity:
        raise ValueError(f"batch must be in 1..{ring.capacity}, got {batch}")
    with nogil:
        while done < count:
            n = batch if count - done >= batch else count - done
            hi = ring.claim(n, -1)
            if hi < -1:
                break
            lo = hi - n + 1
            for s in range(lo, hi + 1):
                (<int64_t*>(ring.slot(s) + RL_HEADER_SIZE))[0] = s
            ring.publish_range(lo, hi)
            done += n
    if done < count:
        raise RingClosedError(f"the ring closed after {done} of {count} events")
    return done


def consume_values(Consumer consumer, int64_t count, double timeout=30.0):
    """The consumer of ``produce_values``: sums the 8-byte values (the Disruptor's handler
    does ``sum += e.value``). Returns the sum; count*(count-1)/2 from a fresh ring."""
    cdef int64_t seen = 0, nxt = consumer.sequence + 1, avail, s, total = 0
    cdef Ring ring = consumer.ring
    with nogil:
        while seen < count:
            avail = consumer.wait_for(nxt, <int64_t>(timeout * 1e9))
            if avail == RL_TIMEOUT or avail == RL_CLOSED:
                break
            for s in range(nxt, avail + 1):
                total += (<int64_t*>(ring.slot(s) + RL_HEADER_SIZE))[0]
            seen += avail - nxt + 1
            consumer.set_sequence(avail)
            nxt = avail + 1
    if seen < count:
        raise TimeoutError(f"consumed {seen} of {count} events before the timeout/close")
    return total


def cycle(Ring ring, Consumer consumer, int64_t count, int batch=64):
    """One thread alternately claims+publishes ``batch`` events and consumes them through
    ``consumer``, all in C: every sequencer and barrier step runs ``count`` times at memory
    speed (the 100M-event memory check). Returns the sum of the consumed values."""
    cdef int64_t done = 0, hi, lo, s, n, avail, total = 0
    if batch < 1 or batch > ring.capacity:
        raise ValueError(f"batch must be in 1..{ring.capacity}, got {batch}")
    with nogil:
        while done < count:
            n = batch if count - done >= batch else count - done
            hi = ring.try_claim(n)
            if hi < -1:
                break
            lo = hi - n + 1
            for s in range(lo, hi + 1):
                (<int64_t*>(ring.slot(s) + RL_HEADER_SIZE))[0] = done + s - lo
            ring.publish_range(lo, hi)
            avail = consumer.wait_for(lo, 0)
            if avail != hi:
                break
            for s in range(lo, hi + 1):
                total += (<int64_t*>(ring.slot(s) + RL_HEADER_SIZE))[0]
            consumer.set_sequence(hi)
            done += n
    if done < count:
        raise AssertionError(f"cycle stopped after {done} of {count} events (claim or wait "
                             "failed in a single-threaded loop)")
    return total


def produce_paced(Ring ring, int64_t count, double rate, int64_t spin_ns=-1):
    """Open-loop producer: event i is due at start + i / rate; it is published when due and
    carries its intended send time, so latency measured from it includes any stall
    (coordinated omission corrected). ``spin_ns`` < 0 busy-waits between events, as the
    Disruptor's latency test does; otherwise the thread sleeps until ``spin_ns`` before each
    due time and spins the rest, as a producer fed by a network or a timer would (the time
    it wakes late is counted in the latency)."""
    cdef int64_t i = 0, hi, due, start, now
    cdef double period = 1e9 / rate
    cdef rl_header* h
    if spin_ns >= 0:
        prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)  # the default 50 us slack would be the latency
    with nogil:
        start = rl_now_ns() + 1000000
        while i < count:
            due = start + <int64_t>(i * period)
            now = rl_now_ns()
            if spin_ns >= 0 and due - now > spin_ns:
                rl_sleep_ns(due - now - spin_ns)
            while rl_now_ns() < due:
                pass
            hi = ring.claim(1, -1)
            if hi < -1:
                break
            h = <rl_header*>ring.slot(hi)
            h.sequence = hi
            h.timestamp_ns = due
            h.length = 0
            h.producer_id = 0
            h.producer_seq = i
            ring.publish_range(hi, hi)
            i += 1
    return i


def consume_latency(Consumer consumer, int64_t[::1] out, double timeout=30.0):
    """Consumes len(out) events, storing now - intended send time (ns) of each."""
    cdef int64_t n = out.shape[0], seen = 0, nxt = consumer.sequence + 1, avail, s, now
    cdef Ring ring = consumer.ring
    with nogil:
        while seen < n:
            avail = consumer.wait_for(nxt, <int64_t>(timeout * 1e9))
            if avail == RL_TIMEOUT or avail == RL_CLOSED:
                break
            now = rl_now_ns()
            for s in range(nxt, avail + 1):
                if seen < n:
                    out[seen] = now - (<rl_header*>ring.slot(s)).timestamp_ns
                    seen += 1
            consumer.set_sequence(avail)
            nxt = avail + 1
    if seen < n:
        raise TimeoutError(f"consumed {seen} of {n} events")
    return seen
