package identity_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every source, listener and server the tests start is stopped by them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
