package main

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/mqtt"
)

// TestMQTTFlagsReachConfig: each MQTT bound's flag sets its mqtt.Config
// field, and the defaults are the package's.
func TestMQTTFlagsReachConfig(t *testing.T) {
	var cfg gateway.Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	mqttFlags(fs, &cfg)
	m := &cfg.MQTTConfig
	if m.MaxRetainedBytes != mqtt.DefaultMaxRetainedBytes || m.TopicAliasMaximum != mqtt.DefaultTopicAliasMaximum ||
		m.ConnectTimeout != mqtt.DefaultConnectTimeout || m.MaxClientIDLength != mqtt.DefaultMaxClientIDLength ||
		m.Limits.MaxTopicFilters != mqtt.DefaultMaxTopicFilters || m.Limits.MaxUserProperties != mqtt.DefaultMaxUserProperties ||
		m.PublishBurst != 0 || m.MaxRetainedBytesPerClient != mqtt.DefaultMaxRetainedBytesPerClient ||
		m.MaxWillBytes != mqtt.DefaultMaxWillBytes {
		t.Fatalf("defaults: %+v", m)
	}
	err := fs.Parse([]string{"-mqtt-max-retained-bytes", "1000", "-mqtt-topic-alias-max", "-1", "-mqtt-connect-timeout", "3s",
		"-mqtt-max-client-id", "23", "-mqtt-max-topic-filters", "8", "-mqtt-max-user-properties", "4", "-mqtt-publish-burst", "50",
		"-mqtt-max-retained-bytes-per-client", "4096", "-mqtt-max-will-bytes", "-1"})
	if err != nil {
		t.Fatal(err)
	}
	if m.MaxRetainedBytes != 1000 || m.TopicAliasMaximum != -1 || m.ConnectTimeout != 3*time.Second || m.MaxClientIDLength != 23 ||
		m.Limits.MaxTopicFilters != 8 || m.Limits.MaxUserProperties != 4 || m.PublishBurst != 50 ||
		m.MaxRetainedBytesPerClient != 4096 || m.MaxWillBytes != -1 {
		t.Fatalf("parsed: %+v", m)
	}
}

// TestQueueBytesFlags: -mqtt-bridge-queue-bytes and -webhook-queue-bytes
// reach their Config fields, with the gateway's defaults.
func TestQueueBytesFlags(t *testing.T) {
	var cfg gateway.Config
	var x serveExtra
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	mqttFlags(fs, &cfg)
	serveExtraFlags(fs, &x, &cfg)
	if cfg.MQTTBridgeQueueBytes != gateway.DefaultMQTTBridgeQueueBytes || x.webhook.QueueBytes != gateway.DefaultWebhookQueueBytes {
		t.Fatalf("defaults: %d, %d", cfg.MQTTBridgeQueueBytes, x.webhook.QueueBytes)
	}
	if err := fs.Parse([]string{"-mqtt-bridge-queue-bytes", "1048576", "-webhook-queue-bytes", "-1"}); err != nil {
		t.Fatal(err)
	}
	if cfg.MQTTBridgeQueueBytes != 1<<20 || x.webhook.QueueBytes != -1 {
		t.Fatalf("parsed: %d, %d", cfg.MQTTBridgeQueueBytes, x.webhook.QueueBytes)
	}
}
