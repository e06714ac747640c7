package mqtt

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The collector exports the stats under warren_mqtt_*.
func TestCollector(t *testing.T) {
	b := startBroker(t, Config{})
	c := connectOK(t, b.addr, Version5, "metrics")
	c.subscribe(1, QoS1, "m")
	c.pub("m", "x", QoS1, 1, true)
	c.next()
	c.next()
	reg := prometheus.NewRegistry()
	reg.MustRegister(b.Collector(""))
	b.waitStats(t, "retained", func(s Stats) bool { return s.Retained == 1 })
	want := `
# HELP warren_mqtt_connections Accepted MQTT connections open, by protocol version.
# TYPE warren_mqtt_connections gauge
warren_mqtt_connections{version="3.1.1"} 0
warren_mqtt_connections{version="5.0"} 1
# HELP warren_mqtt_retained_bytes Bytes of the retained messages, as the store's bounds count them.
# TYPE warren_mqtt_retained_bytes gauge
warren_mqtt_retained_bytes 98
# HELP warren_mqtt_retained_clients Clients holding at least one retained message.
# TYPE warren_mqtt_retained_clients gauge
warren_mqtt_retained_clients 1
# HELP warren_mqtt_retained_messages Retained messages.
# TYPE warren_mqtt_retained_messages gauge
warren_mqtt_retained_messages 1
# HELP warren_mqtt_subscriptions Subscriptions across sessions.
# TYPE warren_mqtt_subscriptions gauge
warren_mqtt_subscriptions 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "warren_mqtt_connections",
		"warren_mqtt_retained_messages", "warren_mqtt_retained_bytes", "warren_mqtt_retained_clients", "warren_mqtt_subscriptions"); err != nil {
		t.Fatal(err)
	}
	n, err := testutil.GatherAndCount(reg, "warren_mqtt_packets_total")
	if err != nil || n != 30 {
		t.Fatalf("packets_total series: %d %v", n, err)
	}
}
