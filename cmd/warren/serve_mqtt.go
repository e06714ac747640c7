package main

import (
	"flag"
	"strings"

	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/mqtt"
)

// mqttFlags registers the MQTT broker's bounds of `warren serve` on fs,
// writing into cfg.MQTTConfig and cfg.MQTTACL. Defaults come from the mqtt
// package.
func mqttFlags(fs *flag.FlagSet, cfg *gateway.Config) {
	m := &cfg.MQTTConfig
	fs.IntVar(&m.Limits.MaxPacketSize, "mqtt-max-packet", mqtt.DefaultMaxPacketSize, "MQTT: largest packet in bytes (announced as Maximum Packet Size)")
	fs.IntVar(&m.MaxInflight, "mqtt-max-inflight", mqtt.DefaultMaxInflight, "MQTT: unacknowledged QoS 1/2 messages per client each way (Receive Maximum)")
	fs.IntVar(&m.MaxQueuedMessages, "mqtt-max-queued", mqtt.DefaultMaxQueuedMessages, "MQTT: messages queued per session")
	fs.IntVar(&m.MaxQueuedBytes, "mqtt-max-queued-bytes", mqtt.DefaultMaxQueuedBytes, "MQTT: bytes queued per session")
	fs.Int64Var(&m.MaxQueuedBytesTotal, "mqtt-max-queued-total", mqtt.DefaultMaxQueuedBytesTotal, "MQTT: bytes queued across sessions (negative: no bound)")
	fs.IntVar(&m.MaxSubscriptions, "mqtt-max-subscriptions", mqtt.DefaultMaxSubscriptions, "MQTT: subscriptions per client")
	fs.IntVar(&m.MaxTopicLength, "mqtt-max-topic-length", mqtt.DefaultMaxTopicLength, "MQTT: longest topic name or filter in bytes")
	fs.IntVar(&m.MaxTopicLevels, "mqtt-max-topic-levels", mqtt.DefaultMaxTopicLevels, "MQTT: most levels of a topic name or filter")
	fs.Float64Var(&m.PublishRate, "mqtt-publish-rate", mqtt.DefaultPublishRate, "MQTT: PUBLISH packets per second per client (negative: no bound)")
	fs.Float64Var(&m.PublishBytesRate, "mqtt-publish-bytes-rate", mqtt.DefaultPublishBytesRate, "MQTT: PUBLISH bytes per second per client (negative: no bound)")
	fs.DurationVar(&m.MaxSessionExpiry, "mqtt-session-expiry", mqtt.DefaultMaxSessionExpiry, "MQTT: longest session expiry (and that of 3.1.1 persistent sessions)")
	fs.IntVar(&m.MaxSessions, "mqtt-max-sessions", mqtt.DefaultMaxSessions, "MQTT: sessions held, online and offline")
	fs.DurationVar(&m.MaxKeepAlive, "mqtt-max-keepalive", 0, "MQTT: longest keep-alive (announced to 5.0 clients); 0: no cap")
	fs.IntVar(&m.MaxRetained, "mqtt-max-retained", mqtt.DefaultMaxRetained, "MQTT: retained messages")
	fs.IntVar(&m.MaxRetainedBytes, "mqtt-max-retained-bytes", mqtt.DefaultMaxRetainedBytes, "MQTT: bytes of retained messages (topics and payloads); past it a 5.0 QoS 1/2 retained publish is refused whole (0x97), any other is delivered but not retained")
	fs.IntVar(&m.MaxRetainedBytesPerClient, "mqtt-max-retained-bytes-per-client", mqtt.DefaultMaxRetainedBytesPerClient,
		"MQTT: bytes of retained messages one client's publishes hold in the store (negative: no bound); past it a 5.0 QoS 1/2 retained publish is refused whole (0x97), any other is delivered but not retained")
	fs.Int64Var(&m.MaxWillBytes, "mqtt-max-will-bytes", mqtt.DefaultMaxWillBytes,
		"MQTT: bytes of the will messages held across sessions (negative: no bound); a CONNECT whose will does not fit gets 0x97 (3.1.1: server unavailable)")
	fs.IntVar(&m.PublishBurst, "mqtt-publish-burst", 0, "MQTT: PUBLISH packets a client may send at once above -mqtt-publish-rate (0: one second's worth)")
	fs.IntVar(&m.TopicAliasMaximum, "mqtt-topic-alias-max", mqtt.DefaultTopicAliasMaximum, "MQTT: highest topic alias a 5.0 client may use, announced in CONNACK (negative: none)")
	fs.DurationVar(&m.ConnectTimeout, "mqtt-connect-timeout", mqtt.DefaultConnectTimeout, "MQTT: how long a new connection may take to send its CONNECT")
	fs.IntVar(&m.MaxClientIDLength, "mqtt-max-client-id", mqtt.DefaultMaxClientIDLength, "MQTT: longest client identifier in bytes")
	fs.IntVar(&m.Limits.MaxTopicFilters, "mqtt-max-topic-filters", mqtt.DefaultMaxTopicFilters, "MQTT: topic filters in one SUBSCRIBE or UNSUBSCRIBE (more: quota exceeded)")
	fs.IntVar(&m.Limits.MaxUserProperties, "mqtt-max-user-properties", mqtt.DefaultMaxUserProperties, "MQTT: user properties in one packet's property list (more: quota exceeded)")
	fs.StringVar(&m.ServerReference, "mqtt-server-reference", "", "MQTT: server 5.0 clients are sent to on drain (DISCONNECT 0x9C); empty: 0x8B")
	fs.IntVar(&cfg.MQTTBridgeMaxSubjects, "mqtt-bridge-max-subjects", gateway.DefaultMQTTBridgeMaxSubjects,
		"MQTT: NATS subscriptions a node makes for its MQTT subscribers' interest (one per distinct subject, device ids widened); past it the node follows every subject")
	fs.IntVar(&cfg.MQTTBridgeQueue, "mqtt-bridge-queue", gateway.DefaultMQTTBridgeQueue,
		"MQTT: messages from NATS waiting for the node's MQTT subscribers (their bytes: -mqtt-bridge-queue-bytes); past it they are dropped (counted queue_full, logged)")
	fs.Int64Var(&cfg.MQTTBridgeQueueBytes, "mqtt-bridge-queue-bytes", gateway.DefaultMQTTBridgeQueueBytes,
		"MQTT: bytes of the messages from NATS waiting for the node's MQTT subscribers (negative: no bound); past it they are dropped (counted queue_bytes_full, logged)")
	fs.BoolVar(&cfg.MQTTClusterShares, "mqtt-cluster-shares", false,
		"MQTT: a share group ($share/group/filter) gets each message once across the cluster, not once per node (through NATS; see docs/mqtt.md)")
	fs.Func("mqtt-acl", "MQTT: comma-separated topic filters a device may use, %c client id, %u user name (default "+
		strings.Join(gateway.DefaultMQTTACL, ",")+")", func(s string) error {
		cfg.MQTTACL = nil
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				cfg.MQTTACL = append(cfg.MQTTACL, p)
			}
		}
		return nil
	})
}
