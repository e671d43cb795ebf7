package meshgrpc

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity/grpcidentity"
	"github.com/lightmesh/lightmesh/internal/engine"
)

// Scheme is the target scheme of mesh services: lightmesh:///user-api.
const Scheme = "lightmesh"

// Keys of the attributes the resolver attaches: to the resolver state the
// mesh's engine and the service, to each endpoint its labels and weight.
type (
	engineKey  struct{}
	serviceKey struct{}
	labelsKey  struct{}
	weightKey  struct{}
)

// endpointLabels is the attribute value carrying an instance's metadata
// labels on its resolver.Endpoint. Equal makes it comparable, as
// attributes require.
type endpointLabels map[string]string

// Equal reports whether o holds the same labels.
func (l endpointLabels) Equal(o any) bool {
	ol, ok := o.(endpointLabels)
	return ok && maps.Equal(l, ol)
}

// serviceOf returns the service a lightmesh target names.
func serviceOf(target string) (string, bool) {
	name, ok := strings.CutPrefix(target, Scheme+":///")
	return name, ok && name != "" && !strings.ContainsAny(name, "/?#")
}

// resolverBuilder builds resolvers for one mesh: it is handed to
// grpc.WithResolvers per client, never registered globally.
type resolverBuilder struct {
	eng           *engine.Engine
	serviceConfig string // JSON, naming the lightmesh balancer
}

// Scheme implements resolver.Builder.
func (resolverBuilder) Scheme() string { return Scheme }

// Build implements resolver.Builder: it starts the resolver's goroutine,
// which asks the mesh to discover the target's service and sends its
// instances to cc, then again after every change. Build does not wait for
// the mesh (grpc-go calls it on the ClientConn's serializer).
func (b resolverBuilder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	service, ok := serviceOf(target.String())
	if !ok {
		return nil, fmt.Errorf("meshgrpc: target %q: want %s:///<service>", target.String(), Scheme)
	}
	r := &meshResolver{eng: b.eng, service: service, cc: cc, wake: make(chan struct{}, 1), done: make(chan struct{}),
		serviceConfig: cc.ParseServiceConfig(b.serviceConfig)}
	go r.run()
	return r, nil
}

// meshResolver follows one service's instances in the mesh's state.
type meshResolver struct {
	eng       *engine.Engine
	service   string
	cc        resolver.ClientConn
	wake      chan struct{} // buffered 1
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	// serviceConfig goes with every update: grpc-go prefers a resolver's
	// service config to a default one, so the lightmesh balancer cannot be
	// replaced by one (grpc.WithDefaultServiceConfig) given beside
	// DialOptions.
	serviceConfig *serviceconfig.ParseResult
}

// signal wakes the resolver's goroutine; it never blocks (it runs on the
// mesh's manager goroutine).
func (r *meshResolver) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run asks the mesh to discover the service (the demand is released when
// run returns), then sends the service's instances whenever they change,
// until Close.
// For a service the mesh does not know yet, the first update waits, at
// most engine.FirstUseWait, for discovery to report an instance: until then
// grpc-go holds the client's calls rather than failing them for a service
// that is only being looked up. A service the mesh knows (its rules name
// it, or discovery answered for it) is sent at once, with no instance
// too: its calls then fail fast with Unavailable naming it.
func (r *meshResolver) run() {
	release := r.eng.Demand(r.service)
	defer release()
	unsubscribe := r.eng.Subscribe(r.signal)
	defer unsubscribe()
	r.signal()
	var sent []discovery.Instance
	first, waitFirst := true, true
	firstBy := time.NewTimer(engine.FirstUseWait)
	defer firstBy.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-r.wake:
		case <-firstBy.C:
			waitFirst = false
		}
		table := r.eng.Load().Table()
		list := table.Instances(r.service, "")
		switch {
		case first && len(list) == 0 && waitFirst && !table.Has(r.service):
			continue
		case !first && slices.EqualFunc(list, sent, sameInstance):
			continue
		}
		select {
		case <-r.done:
			return // closed meanwhile
		default:
		}
		first, sent = false, list
		r.cc.UpdateState(resolver.State{
			Endpoints:     endpoints(r.service, list),
			Attributes:    attributes.New(engineKey{}, r.eng).WithValue(serviceKey{}, r.service),
			ServiceConfig: r.serviceConfig,
		})
	}
}

func sameInstance(a, b discovery.Instance) bool {
	return a.Address == b.Address && a.Weight == b.Weight && a.Unhealthy == b.Unhealthy && maps.Equal(a.Labels, b.Labels)
}

// endpoints are the instances of service for grpc-go; each address names
// its service for grpcidentity's credentials, which check that service's
// serverID whatever the :authority.
func endpoints(service string, list []discovery.Instance) []resolver.Endpoint {
	eps := make([]resolver.Endpoint, len(list))
	for i, in := range list {
		eps[i] = resolver.Endpoint{
			Addresses:  []resolver.Address{grpcidentity.WithService(resolver.Address{Addr: in.Address}, service)},
			Attributes: attributes.New(labelsKey{}, endpointLabels(in.Labels)).WithValue(weightKey{}, in.Weight),
		}
	}
	return eps
}

// ResolveNow implements resolver.Resolver: the mesh pushes every change,
// so there is nothing to fetch; the current instances are checked again.
func (r *meshResolver) ResolveNow(resolver.ResolveNowOptions) { r.signal() }

// Close implements resolver.Resolver: it stops the resolver's goroutine,
// which then tells the mesh this client no longer needs the service
// discovered. Close does not wait for the mesh (grpc-go calls it on the
// ClientConn's serializer); updates after Close are ignored by grpc-go.
func (r *meshResolver) Close() {
	r.closeOnce.Do(func() { close(r.done) })
}
