package mqtt_test

import (
	"fmt"
	"slices"

	"github.com/warrenhq/warren/mqtt"
)

// Retain keeps a topic's state for future subscribers without delivering
// it now; RetainIfAbsent fills a broker from a snapshot (another node's
// store) without overwriting what was published since; RetainedMessages
// lists the store.
func ExampleServer_Retain() {
	broker := mqtt.NewServer(mqtt.Config{})
	defer broker.Close()

	broker.Retain(&mqtt.Message{Topic: "config/fan", Payload: []byte(`{"speed":3}`), QoS: mqtt.QoS1})
	snapshot := []mqtt.Message{
		{Topic: "config/fan", Payload: []byte(`{"speed":1}`)}, // older than the store's
		{Topic: "config/lamp", Payload: []byte(`{"on":true}`)},
	}
	for i := range snapshot {
		stored, _ := broker.RetainIfAbsent(&snapshot[i])
		fmt.Println(snapshot[i].Topic, stored)
	}

	var all []string
	for m := range broker.RetainedMessages() {
		all = append(all, m.Topic+" "+string(m.Payload))
	}
	slices.Sort(all)
	fmt.Println(all)
	// Output:
	// config/fan false
	// config/lamp true
	// [config/fan {"speed":3} config/lamp {"on":true}]
}
