package mesh

import (
	"context"
	"fmt"
	"sync"
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
	found sync.Map // host -> true: found, and its demand held until Close

	mu     sync.Mutex
	misses map[string]time.Time
}

// unsettled reports whether a call to service, which st knows, must
// still go through lookUp: service is a WithMeshServices host that no
// rule and no WithServices names, and no lookup has found yet, so st
// knows it only because a lookup of it is under way (or just ended).
func (m *Mesh) unsettled(st *engine.State, service string) bool {
	// Cheapest first: this runs on every call to a mesh service once
	// patterns are set, and rule-named services are the common case.
	if len(m.cfg.meshServices) == 0 || st.Table().Rules().Policy(service) != nil {
		return false
	}
	if _, ok := m.firstUse.found.Load(service); ok {
		return false
	}
	return !m.cfg.named(service) && m.cfg.meshService(service)
}

// lookUp reports whether service, a host WithMeshServices names, is a
// mesh service: it asks discovery for it and waits for an instance, at
// most engine.FirstUseWait.
func (m *Mesh) lookUp(ctx context.Context, service string) bool {
	select {
	case <-m.stopped:
		return false // closed: nothing would discover it
	default:
	}
	f := &m.firstUse
	if _, ok := f.found.Load(service); ok {
		return true
	}
	f.mu.Lock()
	if at, ok := f.misses[service]; ok && time.Since(at) < missTTL {
		f.mu.Unlock()
		return false
	}
	f.mu.Unlock()

	release, ok := m.demandFor(ctx, service)
	if !ok {
		return false // the call gave up while the catalog was asked: it says nothing of the service
	}
	if m.eng.AwaitInstances(ctx, service, engine.FirstUseWait) {
		if _, loaded := f.found.LoadOrStore(service, true); loaded {
			release() // another call found it first and holds the demand
		}
		return true
	}
	// Record the miss before letting go, so that calls in between, which
	// still find the host in the State, leave the mesh without waiting.
	defer release()
	if ctx.Err() != nil {
		return false // a call given up early says nothing of the service
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for name, at := range f.misses {
		if now.Sub(at) >= missTTL {
			delete(f.misses, name)
		}
	}
	f.misses[service] = now
	then := "leave the mesh"
	if m.cfg.strict {
		then = "fail with router.ErrUnknownService"
	}
	m.cfg.logger.Warn("lightmesh: first use: discovery reported no instance of a host WithMeshServices names; calls to it "+then,
		"host", service, "waited", engine.FirstUseWait, "for", missTTL)
	return false
}

// demandFor makes the demand of a first use, which with a catalog
// returns once the catalog has answered for the service's document, up
// to engine.FirstUseWait. It returns at once, ok false, when ctx ends
// first, so a call keeps its own deadline; the demand is then released as
// soon as it is made.
func (m *Mesh) demandFor(ctx context.Context, service string) (release func(), ok bool) {
	if ctx.Done() == nil {
		return m.eng.Demand(service), true
	}
	made := make(chan func(), 1)
	go func() { made <- m.eng.Demand(service) }()
	select {
	case release = <-made:
		return release, true
	case <-ctx.Done():
		go func() { (<-made)() }()
		return nil, false
	}
}

// unknownServiceError is what a call to a host WithMeshServices names but
// discovery does not know fails with under WithStrictServices.
func unknownServiceError(service string) error {
	return fmt.Errorf("mesh: %q is named by WithMeshServices but discovery reported no instance of it within %v (strict: not sent outside the mesh): %w",
		service, engine.FirstUseWait, router.ErrUnknownService)
}
