/*
 * AdtrackKafkaAdmin: the few admin steps scripts/kafka.sh needs against a real Kafka cluster,
 * in one JVM per call, through Kafka's own Admin client (kafka-clients is on the broker's
 * classpath already, so nothing else is downloaded).
 *
 *   wait-brokers  --bootstrap B --brokers N [--timeout-ms T]
 *       until N brokers are registered and unfenced (KRaft quorum up, brokers caught up).
 *   create-topics --bootstrap B --file deploy/topics.conf [--profile production|test]
 *                 --replication-factor R --min-isr M [--partitions NAME=N]... [--timeout-ms T]
 *       creates every topic of the file that does not exist yet (existing ones are left as
 *       they are, like deploy/compose/kafka-init.sh), then waits until every partition of
 *       them has a leader and a full ISR; then makes the group coordinator ready (creates
 *       __consumer_offsets) and waits for its partitions too.
 *   wait-isr      --bootstrap B [--brokers N] [--timeout-ms T]
 *       until N brokers are up (when given) and no partition of any topic, internal ones
 *       included, is leaderless or under-replicated (after a restarted node caught up).
 *   describe      --bootstrap B
 *       one line per partition: topic partition leader replicas isr.
 *   describe-configs --bootstrap B --topic T
 *       the configs set on topic T (not broker defaults), one KEY=VALUE a line.
 *
 * Exit status: 0 done, 1 not done within the timeout (the last reason is on stderr),
 * 2 bad arguments or topics file. Every wait is bounded by --timeout-ms (default 60000).
 *
 * Compiled by `scripts/kafka.sh install` into the cache (javac, Java 17); not part of the
 * adtrack build.
 */

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;

public final class AdtrackKafkaAdmin {

    /** One topic of deploy/topics.conf, with its configs for the chosen profile. */
    record TopicDef(String name, int partitions, Map<String, String> configs) {
    }

    private static final class Usage extends Exception {
        Usage(String msg) {
            super(msg);
        }
    }

    private static final class NotYet extends Exception {
        NotYet(String msg) {
            super(msg);
        }
    }

    public static void main(String[] args) {
        int rc;
        try {
            rc = run(args);
        } catch (Usage e) {
            System.err.println("kafka-admin: " + e.getMessage());
            rc = 2;
        }
        System.exit(rc);
    }

    private static int run(String[] args) throws Usage {
        if (args.length < 1) {
            throw new Usage("usage: AdtrackKafkaAdmin wait-brokers|create-topics|wait-isr|describe --bootstrap B ...");
        }
        String cmd = args[0];
        Map<String, List<String>> opts = parseOpts(args);
        String bootstrap = one(opts, "bootstrap", null);
        if (bootstrap == null) {
            throw new Usage(cmd + ": --bootstrap is required");
        }
        long timeoutMs = Long.parseLong(one(opts, "timeout-ms", "60000"));
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);

        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, "100");
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "adtrack-kafka-admin");
        try (Admin admin = Admin.create(p)) {
            switch (cmd) {
            case "wait-brokers": {
                int n = Integer.parseInt(one(opts, "brokers", "1"));
                return until(deadline, () -> checkBrokers(admin, n));
            }
            case "create-topics": {
                String file = one(opts, "file", null);
                if (file == null) {
                    throw new Usage("create-topics: --file is required");
                }
                String profile = one(opts, "profile", "production");
                short rf = Short.parseShort(one(opts, "replication-factor", "1"));
                String minIsr = one(opts, "min-isr", "1");
                Map<String, Integer> partitions = new HashMap<>();
                for (String s : opts.getOrDefault("partitions", List.of())) {
                    int eq = s.indexOf('=');
                    if (eq <= 0) {
                        throw new Usage("--partitions " + s + ": expected NAME=N");
                    }
                    partitions.put(s.substring(0, eq), Integer.parseInt(s.substring(eq + 1)));
                }
                List<TopicDef> defs = readTopics(Path.of(file), profile, partitions);
                int rc = until(deadline, () -> createTopics(admin, defs, rf, minIsr));
                if (rc != 0) {
                    return rc;
                }
                List<String> names = defs.stream().map(TopicDef::name).toList();
                rc = until(deadline, () -> checkPartitions(admin, names, rf));
                if (rc != 0) {
                    return rc;
                }
                // The group coordinator: the first FindCoordinator creates __consumer_offsets.
                // Done here, so that a test's first consumer group does not wait for it.
                rc = until(deadline, () -> admin.listConsumerGroupOffsets("adtrack-kafka-sh-warmup")
                        .partitionsToOffsetAndMetadata().get(6, TimeUnit.SECONDS));
                if (rc != 0) {
                    return rc;
                }
                return until(deadline, () -> checkPartitions(admin, null, (short) -1));
            }
            case "wait-isr": {
                String n = one(opts, "brokers", null);
                if (n != null) {
                    int want = Integer.parseInt(n);
                    int rc = until(deadline, () -> checkBrokers(admin, want));
                    if (rc != 0) {
                        return rc;
                    }
                }
                return until(deadline, () -> checkPartitions(admin, null, (short) -1));
            }
            case "describe":
                return describe(admin);
            case "describe-configs": {
                String topic = one(opts, "topic", null);
                if (topic == null) {
                    throw new Usage("describe-configs: --topic is required");
                }
                return describeConfigs(admin, topic);
            }
            default:
                throw new Usage("unknown command " + cmd);
            }
        } catch (NumberFormatException e) {
            throw new Usage("bad number: " + e.getMessage());
        }
    }

    private interface Check {
        /** Returns normally when the condition holds; throws NotYet (or anything) otherwise. */
        void check() throws Exception;
    }

    /* Polls @check every 200 ms until it holds or the deadline passes. */
    private static int until(long deadline, Check c) throws Usage {
        String last = "no attempt";
        while (true) {
            try {
                c.check();
                return 0;
            } catch (Usage e) {
                throw e;
            } catch (NotYet e) {
                last = e.getMessage();
            } catch (ExecutionException e) {
                last = String.valueOf(e.getCause());
            } catch (Exception e) {
                last = String.valueOf(e);
            }
            if (System.nanoTime() - deadline > 0) {
                System.err.println("kafka-admin: timed out: " + last);
                return 1;
            }
            try {
                Thread.sleep(200);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return 1;
            }
        }
    }

    private static void checkBrokers(Admin admin, int want) throws Exception {
        DescribeClusterResult r = admin.describeCluster(new DescribeClusterOptions().timeoutMs(5000));
        Collection<Node> nodes = r.nodes().get(6, TimeUnit.SECONDS);
        Node controller = r.controller().get(6, TimeUnit.SECONDS);
        if (nodes.size() < want) {
            throw new NotYet(nodes.size() + " of " + want + " brokers registered");
        }
        if (controller == null || controller.isEmpty()) {
            throw new NotYet("no active controller");
        }
    }

    private static void createTopics(Admin admin, List<TopicDef> defs, short rf, String minIsr) throws Exception {
        Set<String> existing = admin.listTopics(new ListTopicsOptions().timeoutMs(5000)).names().get(6,
                TimeUnit.SECONDS);
        List<NewTopic> create = new ArrayList<>();
        for (TopicDef d : defs) {
            if (existing.contains(d.name())) {
                continue;
            }
            Map<String, String> configs = new LinkedHashMap<>(d.configs());
            configs.putIfAbsent("min.insync.replicas", minIsr);
            create.add(new NewTopic(d.name(), d.partitions(), rf).configs(configs));
        }
        if (create.isEmpty()) {
            return;
        }
        StringBuilder failed = new StringBuilder();
        for (Map.Entry<String, org.apache.kafka.common.KafkaFuture<Void>> e : admin.createTopics(create).values()
                .entrySet()) {
            try {
                e.getValue().get(15, TimeUnit.SECONDS);
                System.err.println("kafka-admin: created " + e.getKey());
            } catch (ExecutionException ex) {
                if (!(ex.getCause() instanceof TopicExistsException)) {
                    failed.append(' ').append(e.getKey()).append(": ").append(ex.getCause());
                }
            }
        }
        if (failed.length() > 0) {
            throw new NotYet("create failed:" + failed);
        }
    }

    /*
     * Every partition of @names (all topics, internal ones included, when null) has a leader
     * and an ISR as large as its replica set (and as @rf when that is positive).
     */
    private static void checkPartitions(Admin admin, List<String> names, short rf) throws Exception {
        Collection<String> topics = names;
        if (topics == null) {
            topics = admin.listTopics(new ListTopicsOptions().listInternal(true).timeoutMs(5000)).names().get(6,
                    TimeUnit.SECONDS);
        }
        if (topics.isEmpty()) {
            return;
        }
        Map<String, TopicDescription> desc = admin.describeTopics(topics, new DescribeTopicsOptions().timeoutMs(5000))
                .allTopicNames().get(6, TimeUnit.SECONDS);
        for (TopicDescription td : desc.values()) {
            for (TopicPartitionInfo pi : td.partitions()) {
                String where = td.name() + "/" + pi.partition();
                if (pi.leader() == null || pi.leader().isEmpty()) {
                    throw new NotYet(where + " has no leader");
                }
                if (pi.isr().size() < pi.replicas().size()) {
                    throw new NotYet(where + " ISR " + ids(pi.isr()) + " of replicas " + ids(pi.replicas()));
                }
                if (rf > 0 && pi.replicas().size() != rf) {
                    System.err.println("kafka-admin: warning: " + where + " has " + pi.replicas().size()
                            + " replicas, not " + rf + " (the topic existed before)");
                }
            }
        }
    }

    private static int describe(Admin admin) {
        try {
            Set<String> names = admin.listTopics(new ListTopicsOptions().listInternal(true).timeoutMs(5000)).names()
                    .get(6, TimeUnit.SECONDS);
            Map<String, TopicDescription> desc = admin.describeTopics(names).allTopicNames().get(10, TimeUnit.SECONDS);
            List<String> sorted = new ArrayList<>(desc.keySet());
            sorted.sort(null);
            for (String t : sorted) {
                for (TopicPartitionInfo pi : desc.get(t).partitions()) {
                    System.out.println(t + " " + pi.partition() + " leader=" + (pi.leader() == null ? "none"
                            : pi.leader().idString()) + " replicas=" + ids(pi.replicas()) + " isr=" + ids(pi.isr()));
                }
            }
            return 0;
        } catch (Exception e) {
            System.err.println("kafka-admin: describe: " + e);
            return 1;
        }
    }

    /* The topic's configs that are not broker defaults (set at creation), one KEY=VALUE a line. */
    private static int describeConfigs(Admin admin, String topic) {
        try {
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config cfg = admin.describeConfigs(List.of(res)).all().get(10, TimeUnit.SECONDS).get(res);
            List<String> lines = new ArrayList<>();
            for (ConfigEntry e : cfg.entries()) {
                if (e.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG) {
                    lines.add(e.name() + "=" + e.value());
                }
            }
            lines.sort(null);
            lines.forEach(System.out::println);
            return 0;
        } catch (Exception e) {
            System.err.println("kafka-admin: describe-configs " + topic + ": " + e);
            return 1;
        }
    }

    private static String ids(List<Node> nodes) {
        StringBuilder b = new StringBuilder();
        for (Node n : nodes) {
            if (b.length() > 0) {
                b.append(',');
            }
            b.append(n.idString());
        }
        return b.toString();
    }

    /*
     * deploy/topics.conf: "topic NAME PARTITIONS [KEY=VALUE]..." defines a topic;
     * "test NAME KEY=VALUE..." overrides configs under --profile test only. '#' starts a
     * comment. The same file is read by deploy/compose/kafka-init.sh (busybox sh).
     */
    static List<TopicDef> readTopics(Path file, String profile, Map<String, Integer> partitionOverrides)
            throws Usage {
        List<String> lines;
        try {
            lines = Files.readAllLines(file);
        } catch (IOException e) {
            throw new Usage(file + ": " + e.getMessage());
        }
        if (!profile.equals("production") && !profile.equals("test")) {
            throw new Usage("--profile " + profile + ": expected production or test");
        }
        Map<String, TopicDef> defs = new LinkedHashMap<>();
        List<String[]> overrides = new ArrayList<>();
        int no = 0;
        for (String raw : lines) {
            no++;
            String line = raw.replaceAll("#.*", "").trim();
            if (line.isEmpty()) {
                continue;
            }
            String[] f = line.split("\\s+");
            String where = file + ":" + no + ": ";
            if (f[0].equals("topic")) {
                if (f.length < 3) {
                    throw new Usage(where + "expected: topic NAME PARTITIONS [KEY=VALUE]...");
                }
                int parts;
                try {
                    parts = Integer.parseInt(f[2]);
                } catch (NumberFormatException e) {
                    throw new Usage(where + "partitions " + f[2] + " is not a number");
                }
                Map<String, String> cfg = new LinkedHashMap<>();
                for (int i = 3; i < f.length; i++) {
                    putConfig(cfg, f[i], where);
                }
                defs.put(f[1], new TopicDef(f[1], parts, cfg));
            } else if (f[0].equals("test")) {
                if (f.length < 3) {
                    throw new Usage(where + "expected: test NAME KEY=VALUE...");
                }
                overrides.add(f);
            } else {
                throw new Usage(where + "unknown kind " + f[0] + " (expected topic or test)");
            }
        }
        if (profile.equals("test")) {
            for (String[] f : overrides) {
                TopicDef d = defs.get(f[1]);
                if (d == null) {
                    throw new Usage(file + ": test override for undefined topic " + f[1]);
                }
                for (int i = 2; i < f.length; i++) {
                    putConfig(d.configs(), f[i], file + ": ");
                }
            }
        }
        List<TopicDef> out = new ArrayList<>();
        for (TopicDef d : defs.values()) {
            Integer n = partitionOverrides.get(d.name());
            out.add(n == null ? d : new TopicDef(d.name(), n, d.configs()));
        }
        for (String name : partitionOverrides.keySet()) {
            if (!defs.containsKey(name)) {
                throw new Usage("--partitions " + name + ": no such topic in " + file);
            }
        }
        return out;
    }

    private static void putConfig(Map<String, String> cfg, String kv, String where) throws Usage {
        int eq = kv.indexOf('=');
        if (eq <= 0) {
            throw new Usage(where + kv + ": expected KEY=VALUE");
        }
        cfg.put(kv.substring(0, eq), kv.substring(eq + 1));
    }

    private static Map<String, List<String>> parseOpts(String[] args) throws Usage {
        Map<String, List<String>> m = new HashMap<>();
        for (int i = 1; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) {
                throw new Usage("unexpected argument " + a);
            }
            String key = a.substring(2);
            String val;
            int eq = key.indexOf('=');
            if (eq >= 0) {
                val = key.substring(eq + 1);
                key = key.substring(0, eq);
            } else {
                if (i + 1 >= args.length) {
                    throw new Usage(a + " needs a value");
                }
                val = args[++i];
            }
            m.computeIfAbsent(key, k -> new ArrayList<>()).add(val);
        }
        return m;
    }

    private static String one(Map<String, List<String>> opts, String key, String dflt) {
        List<String> v = opts.get(key);
        return v == null || v.isEmpty() ? dflt : v.get(v.size() - 1);
    }
}
