//go:build !fault

package nacos

import "go.uber.org/goleak"

// sdkRestartLeaks is empty without the fault tests: no test here closes
// a client while it reconnects to a restarted server (see
// leaks_fault_test.go).
var sdkRestartLeaks []goleak.Option
