package workload_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every source, server and connection the tests start is stopped by them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
