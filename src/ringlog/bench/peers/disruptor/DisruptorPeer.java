// ringlog's Java peer: the real LMAX Disruptor (Debian's libdisruptor-java) measured on the
// machine at hand, in the same benchmark run as ringlog's ring, so the report can print a
// ratio of figures taken minutes apart instead of comparing against a number from elsewhere.
//
//   java -cp disruptor.jar:hdrhistogram.jar:. DisruptorPeer [EVENTS [RUNS]]
//
// One figure a line: "NAME VALUE  # note" or "NAME p50=.. p99=.. p99.9=.. max=..".
//   producer --next(n)/publish(lo,hi)--> RingBuffer<Slot> --> one EventHandler (counts)
import com.lmax.disruptor.BlockingWaitStrategy;
import com.lmax.disruptor.BusySpinWaitStrategy;
import com.lmax.disruptor.EventHandler;
import com.lmax.disruptor.RingBuffer;
import com.lmax.disruptor.WaitStrategy;
import com.lmax.disruptor.YieldingWaitStrategy;
import com.lmax.disruptor.dsl.Disruptor;
import com.lmax.disruptor.dsl.ProducerType;
import com.lmax.disruptor.util.DaemonThreadFactory;
import java.util.Arrays;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.function.Supplier;
import org.HdrHistogram.Histogram;

public final class DisruptorPeer {
    static final int RING_SIZE = 1 << 16;
    static final long LATENCY_RATE = 100_000;   // events per second, open loop
    static final int LATENCY_EVENTS = 300_000;  // 3 s at that rate

    /** A ring slot: a value and, for the latency runs, the time it was meant to be sent. */
    static final class Slot {
        long value;
        long intendedNs;
    }

    /** Counts events; opens the latch at the expected count. */
    static final class Counting implements EventHandler<Slot> {
        final long expected;
        final CountDownLatch finished = new CountDownLatch(1);
        long seen;
        long checksum;

        Counting(long expected) { this.expected = expected; }

        @Override
        public void onEvent(Slot slot, long sequence, boolean endOfBatch) {
            checksum += slot.value;
            if (++seen == expected) finished.countDown();
        }
    }

    /** Records now - intended time of each event (coordinated omission corrected). */
    static final class Timing implements EventHandler<Slot> {
        final Histogram histogram = new Histogram(3_600_000_000_000L, 3);
        final CountDownLatch finished = new CountDownLatch(1);
        final long expected;
        long seen;

        Timing(long expected) { this.expected = expected; }

        @Override
        public void onEvent(Slot slot, long sequence, boolean endOfBatch) {
            histogram.recordValue(Math.max(1, System.nanoTime() - slot.intendedNs));
            if (++seen == expected) finished.countDown();
        }
    }

    static Supplier<WaitStrategy> strategy(String name) {
        switch (name) {
            case "busyspin": return BusySpinWaitStrategy::new;
            case "yielding": return YieldingWaitStrategy::new;
            case "blocking": return BlockingWaitStrategy::new;
            default: throw new IllegalArgumentException("no wait strategy " + name);
        }
    }

    /** Events per second of one producer publishing `events` in claims of `claim`. */
    static double throughput(String wait, ProducerType producer, long events, int claim)
            throws InterruptedException {
        Disruptor<Slot> disruptor = new Disruptor<>(Slot::new, RING_SIZE,
                DaemonThreadFactory.INSTANCE, producer, strategy(wait).get());
        Counting handler = new Counting(events);
        disruptor.handleEventsWith(handler);
        RingBuffer<Slot> ring = disruptor.start();
        long start = System.nanoTime();
        for (long sent = 0; sent < events; sent += claim) {
            long hi = ring.next(claim);
            long lo = hi - claim + 1;
            for (long s = lo; s <= hi; s++) ring.get(s).value = s;
            ring.publish(lo, hi);
        }
        handler.finished.await();
        long elapsed = System.nanoTime() - start;
        disruptor.halt();
        return events * 1e9 / elapsed;
    }

    /** Events per second through java.util.concurrent.ArrayBlockingQueue, one to one. */
    static double blockingQueue(long events) throws InterruptedException {
        ArrayBlockingQueue<Long> queue = new ArrayBlockingQueue<>(RING_SIZE);
        long[] sum = {0};
        Thread consumer = new Thread(() -> {
            try {
                for (long i = 0; i < events; i++) sum[0] += queue.take();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        consumer.start();
        long start = System.nanoTime();
        for (long i = 0; i < events; i++) queue.put(i);
        consumer.join();
        return events * 1e9 / (System.nanoTime() - start);
    }

    /** Publish-to-handle latency at LATENCY_RATE events/s from each event's intended time. */
    static Histogram latency(String wait) throws InterruptedException {
        Disruptor<Slot> disruptor = new Disruptor<>(Slot::new, RING_SIZE,
                DaemonThreadFactory.INSTANCE, ProducerType.SINGLE, strategy(wait).get());
        Timing handler = new Timing(LATENCY_EVENTS);
        disruptor.handleEventsWith(handler);
        RingBuffer<Slot> ring = disruptor.start();
        long period = 1_000_000_000L / LATENCY_RATE;
        long first = System.nanoTime() + 1_000_000;
        for (int i = 0; i < LATENCY_EVENTS; i++) {
            long intended = first + i * period;
            while (System.nanoTime() < intended) Thread.onSpinWait();
            long seq = ring.next();
            Slot slot = ring.get(seq);
            slot.value = i;
            slot.intendedNs = intended;
            ring.publish(seq);
        }
        handler.finished.await();
        disruptor.halt();
        return handler.histogram;
    }

    interface Run { double once() throws InterruptedException; }

    /** The median of `runs` runs after one warm-up run, with min and max in the note. */
    static void figure(String name, int runs, Run run) throws InterruptedException {
        run.once();  // JIT warm-up
        double[] xs = new double[runs];
        for (int i = 0; i < runs; i++) xs[i] = run.once();
        Arrays.sort(xs);
        System.out.printf("%s %.0f  # median of %d runs, min %.0f, max %.0f%n",
                name, xs[runs / 2], runs, xs[0], xs[runs - 1]);
    }

    /** Each percentile the median over `runs` runs after a warm-up, as ringlog's own
     *  latency rows are (one run's tail swings 10x with the neighbours on a shared VM). */
    static void latencyFigure(String wait, int runs) throws InterruptedException {
        latency(wait);  // warm-up
        long[][] xs = new long[4][runs];
        for (int i = 0; i < runs; i++) {
            Histogram h = latency(wait);
            xs[0][i] = h.getValueAtPercentile(50);
            xs[1][i] = h.getValueAtPercentile(99);
            xs[2][i] = h.getValueAtPercentile(99.9);
            xs[3][i] = h.getMaxValue();
        }
        for (long[] x : xs) Arrays.sort(x);
        System.out.printf("disruptor_latency_%s_100k_per_s_ns p50=%d p99=%d p99.9=%d max=%d"
                + "  # medians of %d runs%n", wait, xs[0][runs / 2], xs[1][runs / 2],
                xs[2][runs / 2], xs[3][runs / 2], runs);
    }

    public static void main(String[] args) throws InterruptedException {
        long events = args.length > 0 ? Long.parseLong(args[0]) : 20_000_000L;
        int runs = args.length > 1 ? Integer.parseInt(args[1]) : 3;
        events -= events % 64;  // whole claims of 64
        final long n = events;
        figure("disruptor_1p1c_busyspin_ops_per_s", runs,
                () -> throughput("busyspin", ProducerType.SINGLE, n, 1));
        figure("disruptor_1p1c_busyspin_batch64_ops_per_s", runs,
                () -> throughput("busyspin", ProducerType.SINGLE, n, 64));
        figure("disruptor_1p1c_yielding_ops_per_s", runs,
                () -> throughput("yielding", ProducerType.SINGLE, n, 1));
        figure("disruptor_1p1c_blocking_ops_per_s", runs,
                () -> throughput("blocking", ProducerType.SINGLE, n / 4, 1));
        figure("disruptor_1p1c_multi_producer_busyspin_ops_per_s", runs,
                () -> throughput("busyspin", ProducerType.MULTI, n, 1));
        figure("java_array_blocking_queue_1p1c_ops_per_s", runs, () -> blockingQueue(n / 4));
        latencyFigure("busyspin", runs);
        latencyFigure("yielding", runs);
        // like for like with ringlog's default wait (spin, yield, then sleep on a futex): the
        // consumer parks between events at this rate and the producer's publish wakes it
        latencyFigure("blocking", runs);
    }
}
