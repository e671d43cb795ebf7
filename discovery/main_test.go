package discovery

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them (a
// Watch that does not return on cancellation, for one).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
