package http1_test

import (
	"fmt"

	"github.com/warrenhq/warren/http1"
)

// A header field name given in a configuration must be a token.
func ExampleIsToken() {
	fmt.Println(http1.IsToken("X-Device-Id"), http1.IsToken("X Device"))
	// Output: true false
}
