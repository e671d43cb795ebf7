package etcd

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// Watch that does not return on cancellation, a registration whose
// keep-alive is not stopped, an embedded server left running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
