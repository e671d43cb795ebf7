package mesh

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/router"
)

// missTTL is how long a host that WithMeshServices names but discovery
// did not know is taken as unknown without asking again.
const missTTL = 30 * time.Second

// firstUse remembers which hosts named by WithMeshServices were looked
// up: those found stay discovered for the mesh's life; those not found
// are not looked up again for missTTL.
type firstUse struct {
	mu      sync.Mutex
	found   map[string]bool
	misses  map[string]time.Time
	pending map[string]int // lookups under way, by host
	// lookups counts the lookups under way, so that calls skip the lock
	// when there is none.
	lookups atomic.Int32
}

// pendingFor reports whether service is being looked up: the State then
// knows it with no instance yet, and a call to it must wait for the
// lookup like the first one rather than fail.
func (f *firstUse) pendingFor(service string) bool {
	if f.lookups.Load() == 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pending[service] > 0
}

// lookUp reports whether service, a host WithMeshServices names and the
// State in force does not know, is a mesh service: it asks discovery for
// it and waits for an instance, at most engine.FirstUseWait.
func (m *Mesh) lookUp(ctx context.Context, service string) bool {
	select {
	case <-m.stopped:
		return false // closed: nothing would discover it
	default:
	}
	f := &m.firstUse
	f.mu.Lock()
	if f.found[service] {
		f.mu.Unlock()
		return true
	}
	if at, ok := f.misses[service]; ok && time.Since(at) < missTTL {
		f.mu.Unlock()
		return false
	}
	f.pending[service]++
	f.lookups.Add(1)
	f.mu.Unlock()

	release := m.eng.Demand(service)
	ok := m.eng.AwaitInstances(ctx, service, engine.FirstUseWait)
	if !ok {
		// Let go first, outside the lock (it waits until the service is
		// gone from the State again), and only then stop counting the
		// lookup as pending: a call in between would otherwise find the
		// service known with no instance, and fail instead of leaving.
		release()
	}
	keep := false
	defer func() {
		if ok && !keep {
			release()
		}
	}()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups.Add(-1)
	if f.pending[service]--; f.pending[service] == 0 {
		delete(f.pending, service)
	}
	if !ok {
		now := time.Now()
		for name, at := range f.misses {
			if now.Sub(at) >= missTTL {
				delete(f.misses, name)
			}
		}
		if ctx.Err() == nil { // a call given up early says nothing of the service
			f.misses[service] = now
		}
		return false
	}
	// The first to find it holds the demand until Close; the others let
	// theirs go.
	keep = !f.found[service]
	f.found[service] = true
	return true
}

// unknownServiceError is what a call to a host WithMeshServices names but
// discovery does not know fails with under WithStrictServices.
func unknownServiceError(service string) error {
	return fmt.Errorf("mesh: %q is named by WithMeshServices but discovery reported no instance of it within %v (strict: not sent outside the mesh): %w",
		service, engine.FirstUseWait, router.ErrUnknownService)
}
