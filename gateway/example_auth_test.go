package gateway_test

import (
	"fmt"
	"time"

	"github.com/warrenhq/warren/gateway"
)

// ExampleIssueToken signs a device token with the gateway's HS256 secret,
// as `warren token` does, and authenticates it as the gateway does when
// the device connects.
func ExampleIssueToken() {
	secret := []byte("a-secret-of-at-least-32-bytes-long") // LoadOrCreateSecret in practice
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

	token, err := gateway.IssueToken(secret, "thermostat-42", gateway.RoleDevice, 24*time.Hour, now)
	if err != nil {
		fmt.Println(err)
		return
	}

	auth := gateway.NewHMACAuth(secret)
	id, err := auth.Authenticate(token, now.Add(time.Hour))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(id.Device, id.Role, id.Expires.UTC())

	// A day later the token has expired; the gateway closes with this reason.
	_, err = auth.Authenticate(token, now.Add(25*time.Hour))
	fmt.Println(gateway.AuthReason(err))
	// Output:
	// thermostat-42 device 2025-06-02 12:00:00 +0000 UTC
	// token_expired
}
