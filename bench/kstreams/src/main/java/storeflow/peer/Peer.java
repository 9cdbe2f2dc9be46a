package storeflow.peer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of storeflow's runtime benchmark (bench/benches/peer.rs): runs one
 * topology over an input topic until the application's consumer group has committed every
 * input offset, and prints {@code records=<n> seconds=<s> rate=<records/s>}, timed from
 * {@link KafkaStreams#start()} to all-committed (JVM start-up excluded).
 *
 * <p>Given a warm-up application id, input and output, it first runs the same mode on those
 * in the same JVM (its line starts with {@code warmup}), so the second figure is the one of
 * a JIT-compiled JVM.
 *
 * <p>Every mode: exactly_once_v2, commit.interval.ms=100, one stream thread (storeflow's
 * runtime uses one thread per processor), RocksDB state with its changelog under a fresh
 * temporary directory, String serdes; records are the runtime bench's JSON notes keyed
 * {@code k<i>} and timestamped with their event time.
 */
public final class Peer {
    private static final String USAGE = "usage: Peer <bootstrap> <app-id> <input> <output> <mode> <expected-records>"
            + " [<warm-up app-id> <warm-up input> <warm-up output>]; modes: count-papi, count-dsl, window-dsl";
    /** A run that has not caught up by then has gone wrong. */
    private static final Duration TIMEOUT = Duration.ofMinutes(10);
    private static final String COUNTS = "counts";

    private Peer() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 6 && args.length != 9) {
            System.err.println(USAGE);
            System.exit(2);
        }
        String bootstrap = args[0];
        String mode = args[4];
        long expected = Long.parseLong(args[5]);
        topology(mode, args[2], args[3]); // an unknown mode fails here, before any run
        if (args.length == 9) {
            System.out.println("warmup " + run(bootstrap, args[6], args[7], args[8], mode, expected));
        }
        System.out.println(run(bootstrap, args[1], args[2], args[3], mode, expected));
    }

    /** One run's figure. */
    record Result(long records, double seconds) {
        @Override
        public String toString() {
            return String.format(Locale.ROOT, "records=%d seconds=%.3f rate=%.0f", records, seconds, records / seconds);
        }
    }

    static Topology topology(String mode, String input, String output) {
        switch (mode) {
            case "count-papi": {
                // The twin of storeflow's testing::Count: read, increment, write, forward one per input.
                Topology t = new Topology();
                t.addSource("input", Serdes.String().deserializer(), Serdes.String().deserializer(), input);
                t.addProcessor("count", () -> new CountProcessor(output), "input");
                t.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(COUNTS), Serdes.String(), Serdes.Long()), "count");
                t.addSink("output", output, Serdes.String().serializer(), Serdes.String().serializer(), "count");
                return t;
            }
            case "count-dsl": {
                // The record cache coalesces updates of a key between commits: fewer outputs than inputs.
                StreamsBuilder b = new StreamsBuilder();
                b.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                        .groupByKey()
                        .count()
                        .toStream()
                        .to(output, Produced.with(Serdes.String(), Serdes.Long()));
                return b.build();
            }
            case "window-dsl": {
                // Tumbling 1-minute windows of the record timestamp (the default extractor);
                // keyed <key>|<window start> like storeflow's testing::WindowedCount. Cached too.
                StreamsBuilder b = new StreamsBuilder();
                b.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                        .groupByKey()
                        .windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofMinutes(1)))
                        .count()
                        .toStream((window, count) -> window.key() + "|" + window.window().start())
                        .to(output, Produced.with(Serdes.String(), Serdes.Long()));
                return b.build();
            }
            default:
                throw new IllegalArgumentException("unknown mode `" + mode + "`; " + USAGE);
        }
    }

    /** Count per key in a RocksDB store; forwards the note with its new count. */
    static final class CountProcessor implements Processor<String, String, String, String> {
        private final String output;
        private ProcessorContext<String, String> context;
        private KeyValueStore<String, Long> counts;

        CountProcessor(String output) {
            this.output = output;
        }

        @Override
        public void init(ProcessorContext<String, String> context) {
            this.context = context;
            this.counts = context.getStateStore(COUNTS);
        }

        @Override
        public void process(Record<String, String> record) {
            Long previous = counts.get(record.key());
            long n = previous == null ? 1 : previous + 1;
            counts.put(record.key(), n);
            // The input's JSON with the new count, as storeflow's Count writes it (the bench's
            // keys are plain `k<i>`, so no escaping is needed).
            String value = "{\"key\":\"" + record.key() + "\",\"n\":" + n + ",\"time\":" + record.timestamp()
                    + ",\"topic\":\"" + output + "\"}";
            context.forward(record.withValue(value));
        }
    }

    static Result run(String bootstrap, String appId, String input, String output, String mode, long expected) throws Exception {
        Path stateDir = Files.createTempDirectory("kstreams-peer-");
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            Map<TopicPartition, Long> ends = endOffsets(admin, input);
            long total = ends.values().stream().mapToLong(Long::longValue).sum();
            if (total != expected) {
                throw new IllegalStateException(input + " holds " + total + " records, expected " + expected);
            }
            KafkaStreams streams = new KafkaStreams(topology(mode, input, output), props);
            AtomicReference<Throwable> failure = new AtomicReference<>();
            streams.setUncaughtExceptionHandler(e -> {
                failure.set(e);
                return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
            });
            try {
                long started = System.nanoTime();
                streams.start();
                while (!committedAll(admin, appId, ends)) {
                    if (failure.get() != null) {
                        throw new IllegalStateException(mode + " on " + input + " failed", failure.get());
                    }
                    if (System.nanoTime() - started > TIMEOUT.toNanos()) {
                        throw new IllegalStateException(mode + " on " + input + " has not committed every input offset after " + TIMEOUT);
                    }
                    Thread.sleep(20);
                }
                return new Result(expected, (System.nanoTime() - started) / 1e9);
            } finally {
                streams.close(Duration.ofSeconds(60));
                streams.cleanUp();
            }
        } finally {
            deleteTree(stateDir);
        }
    }

    /** The end offset of every partition of {@code topic}. */
    static Map<TopicPartition, Long> endOffsets(Admin admin, String topic) throws Exception {
        List<TopicPartition> partitions = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().stream()
                .map(p -> new TopicPartition(topic, p.partition()))
                .collect(Collectors.toList());
        Map<TopicPartition, OffsetSpec> latest = partitions.stream().collect(Collectors.toMap(tp -> tp, tp -> OffsetSpec.latest()));
        return admin.listOffsets(latest).all().get().entrySet().stream()
                .collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().offset()));
    }

    /** Whether group {@code appId} has committed every partition up to its end offset. */
    static boolean committedAll(Admin admin, String appId, Map<TopicPartition, Long> ends) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(appId).partitionsToOffsetAndMetadata().get();
        return ends.entrySet().stream().allMatch(e -> {
            OffsetAndMetadata c = committed.get(e.getKey());
            return c != null && c.offset() >= e.getValue();
        });
    }

    static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path p : paths.sorted(Comparator.reverseOrder()).collect(Collectors.toList())) {
                Files.deleteIfExists(p);
            }
        }
    }
}
