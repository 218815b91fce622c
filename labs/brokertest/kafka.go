package brokertest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
	"github.com/twmb/franz-go/pkg/kfake"

	"example.com/myevents/capstone/endpoint"
)

// KafkaCluster is a Kafka cluster handed to a test.
type KafkaCluster struct {
	Brokers []string // bootstrap addresses, host:port
	Backend Backend  // where it came from
	reason  string

	logs func(ctx context.Context) (string, error)
}

// Kafka returns the Kafka cluster for this test, chosen in the order the
// package documentation gives, and logs which one it is. Without
// KAFKA_BROKERS and without Docker it starts the embedded cluster, so it
// never skips.
//
// The embedded cluster differs from Apache Kafka: topics are not created
// automatically (create them explicitly), the default partition count is 10,
// retention runs on a timer, there is no replication and no initial
// consumer-group join delay.
func Kafka(t testing.TB) *KafkaCluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.kafka == nil {
		p := realProbes()
		c, err := chooseKafka(context.Background(), p)
		if err != nil {
			resolve(t, p.getenv, err)
		}
		k, err := provideKafka(c)
		if err != nil {
			t.Fatalf("brokertest: %v", err)
		}
		shared.kafka = k
	}
	k := shared.kafka
	t.Logf("brokertest: Kafka at %s, backend %s (%s)", strings.Join(k.Brokers, ","), k.Backend, k.reason)
	if k.logs != nil {
		t.Cleanup(func() {
			if !t.Failed() {
				return
			}
			out, err := k.logs(context.Background())
			if err != nil {
				t.Logf("brokertest: reading Kafka container logs: %v", err)
				return
			}
			t.Logf("brokertest: Kafka container logs:\n%s", out)
		})
	}
	return k
}

// SplitBrokers turns a comma-separated KAFKA_BROKERS value into addresses.
// It is endpoint.SplitList.
func SplitBrokers(list string) []string { return endpoint.SplitList(list) }

// chooseKafka applies the selection order, or the backend that
// BROKERTEST_KAFKA forces. Unforced, the embedded cluster is always there,
// so it never reports errNoBroker.
func chooseKafka(ctx context.Context, p probes) (choice, error) {
	force, err := forcedBackend(p.getenv, EnvKafka, FromEnvironment, FromContainer, FromEmbedded)
	if err != nil {
		return choice{}, err
	}
	list := strings.TrimSpace(p.getenv("KAFKA_BROKERS"))
	switch {
	case force == FromEnvironment && list == "":
		return choice{}, fmt.Errorf("%s=environment, but KAFKA_BROKERS is not set; set it to your brokers (host:port,...), or unset %s", EnvKafka, EnvKafka)
	case force != "" && force != FromEnvironment && list != "":
		return choice{}, fmt.Errorf("%s=%s contradicts KAFKA_BROKERS=%s, which asks for that Kafka; unset one of them", EnvKafka, force, list)
	case list != "":
		if err := p.kafka(ctx, list); err != nil {
			return choice{}, fmt.Errorf("KAFKA_BROKERS=%s is set but no Kafka answers there: %v; start it (`go run ./labs/00-setup -embedded-kafka` runs one on 127.0.0.1:9092), fix KAFKA_BROKERS, or unset it to use Docker or the embedded Kafka", list, err)
		}
		return choice{backend: FromEnvironment, target: list, reason: "KAFKA_BROKERS is set"}, nil
	case force == FromEmbedded:
		// Not even asking for an engine: one that answers may have no
		// Kafka image (and no registry to pull one from).
		return choice{backend: FromEmbedded, reason: EnvKafka + "=embedded; in-process kfake cluster"}, nil
	}
	img, from := chooseImage(p.getenv, EnvKafkaImage, KafkaImage)
	dockerErr := p.docker(ctx)
	switch {
	case dockerErr == nil && force == FromContainer:
		return choice{backend: FromContainer, image: img, reason: EnvKafka + "=container and Docker answers; " + from}, nil
	case dockerErr == nil:
		return choice{backend: FromContainer, image: img, reason: "Docker answers; " + from}, nil
	case force == FromContainer:
		return choice{}, noEngine(EnvKafka, dockerErr)
	}
	return choice{backend: FromEmbedded, reason: "no KAFKA_BROKERS and no Docker engine; in-process kfake cluster"}, nil
}

// provideKafka turns a choice into a running cluster.
func provideKafka(c choice) (*KafkaCluster, error) {
	k := &KafkaCluster{Backend: c.backend, reason: c.reason}
	switch c.backend {
	case FromEnvironment:
		k.Brokers = SplitBrokers(c.target)
		return k, nil
	case FromEmbedded:
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return nil, fmt.Errorf("starting embedded Kafka: %w", err)
		}
		shared.stoppers = append(shared.stoppers, cluster.Close)
		k.Brokers = cluster.ListenAddrs()
		return k, nil
	case FromContainer:
		return startKafkaContainer(k, c.image)
	}
	return nil, fmt.Errorf("unknown Kafka backend %q", c.backend)
}

// kafkaStarter is copied into the container once its host port is known, so
// the broker can advertise an address that programs on the host can reach.
const kafkaStarter = `#!/bin/bash
export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://%s,BROKER://%s:9092
exec /etc/kafka/docker/run
`

const kafkaStarterPath = "/tmp/brokertest-start.sh"

// startKafkaContainer starts a single-node KRaft image: the pinned one or
// one laid out like it (/etc/kafka/docker/run starts the broker).
func startKafkaContainer(k *KafkaCluster, image string) (*KafkaCluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ctr, err := testcontainers.Run(ctx, image,
		testcontainers.WithExposedPorts("9093/tcp"),
		testcontainers.WithEnv(map[string]string{
			"KAFKA_NODE_ID":                                  "1",
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_LISTENERS":                                "PLAINTEXT://0.0.0.0:9093,BROKER://0.0.0.0:9092,CONTROLLER://0.0.0.0:9094",
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "BROKER:PLAINTEXT,PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"KAFKA_INTER_BROKER_LISTENER_NAME":               "BROKER",
			"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9094",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
		}),
		testcontainers.WithEntrypoint("sh"),
		testcontainers.WithCmd("-c", "while [ ! -f "+kafkaStarterPath+" ]; do sleep 0.1; done; exec bash "+kafkaStarterPath),
		testcontainers.WithLifecycleHooks(testcontainers.ContainerLifecycleHooks{
			PostStarts: []testcontainers.ContainerHook{
				func(ctx context.Context, c testcontainers.Container) error {
					host, err := c.PortEndpoint(ctx, "9093/tcp", "")
					if err != nil {
						return fmt.Errorf("kafka host port: %w", err)
					}
					inspect, err := c.Inspect(ctx)
					if err != nil {
						return fmt.Errorf("inspecting kafka container: %w", err)
					}
					script := fmt.Sprintf(kafkaStarter, host, inspect.Config.Hostname)
					if err := c.CopyToContainer(ctx, []byte(script), kafkaStarterPath, 0o755); err != nil {
						return fmt.Errorf("copying kafka starter: %w", err)
					}
					return wait.ForLog("Kafka Server started").WithStartupTimeout(2*time.Minute).WaitUntilReady(ctx, c)
				},
			},
		}),
	)
	if ctr != nil {
		shared.stoppers = append(shared.stoppers, func() { terminate(ctr) })
	}
	if err != nil {
		return nil, fmt.Errorf("starting Kafka container %s: %w (%s names another image; %s=embedded uses the embedded Kafka instead)", image, err, EnvKafkaImage, EnvKafka)
	}
	endpoint, err := ctr.PortEndpoint(ctx, "9093/tcp", "")
	if err != nil {
		return nil, fmt.Errorf("reading Kafka container address: %w", err)
	}
	k.Brokers = []string{endpoint}
	k.logs = func(ctx context.Context) (string, error) { return containerLogs(ctx, ctr) }
	return k, nil
}

// dialKafka checks that a comma-separated broker list answers a metadata
// request.
func dialKafka(_ context.Context, list string) error {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Net.DialTimeout = 3 * time.Second
	cfg.Net.ReadTimeout = 3 * time.Second
	cfg.Metadata.Retry.Max = 0
	client, err := sarama.NewClient(SplitBrokers(list), cfg)
	if err != nil {
		return err
	}
	return client.Close()
}

// realProbes are the probes used outside this package's own tests.
func realProbes() probes {
	return probes{
		getenv: os.Getenv,
		docker: func(context.Context) error { return dockerOnce() },
		amqp:   dialAMQP,
		kafka:  dialKafka,
	}
}
