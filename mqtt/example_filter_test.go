package mqtt_test

import (
	"fmt"
	"sync"

	"github.com/warrenhq/warren/mqtt"
)

// A bridge to another message bus follows the broker's interest: it
// subscribes upstream to a filter when the first client subscribes to it,
// and unsubscribes when the last one goes.
func ExampleHooks_onFilter() {
	var mu sync.Mutex
	interest := map[string]bool{}
	srv := mqtt.NewServer(mqtt.Config{Hooks: mqtt.Hooks{
		OnFilter: func(filter string, added bool) {
			mu.Lock()
			defer mu.Unlock()
			if added {
				interest[filter] = true // subscribe upstream (quickly: the broker's lock is held)
			} else {
				delete(interest, filter)
			}
		},
	}})
	defer srv.Close()
	fmt.Println(len(interest))
	// Output: 0
}
