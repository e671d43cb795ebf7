package meshgrpc

import (
	"encoding/json"
)

// Option configures DialOptions.
type Option interface{ apply(*config) }

type config struct {
	serviceConfig string // the client's service config, lightmesh's balancer in it
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithServiceConfig gives the client's own gRPC service config (JSON, as
// for grpc.WithDefaultServiceConfig): its method configs (timeouts,
// retryPolicy, waitForReady, message sizes) apply to the client's calls,
// and its load-balancing part is replaced by lightmesh's balancer.
//
// Use it instead of grpc.WithDefaultServiceConfig: the lightmesh resolver
// sends the service config with every update, and grpc-go prefers that to
// a default one, so a default service config given beside DialOptions is
// ignored (it can no longer replace lightmesh's balancer). A document that
// is not valid makes grpc.NewClient fail with grpc-go's own parse error.
func WithServiceConfig(json string) Option {
	return optionFunc(func(c *config) { c.serviceConfig = json })
}

func newConfig(opts []Option) config {
	var c config
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	c.serviceConfig = withBalancer(c.serviceConfig)
	return c
}

// withBalancer returns the service config sc with lightmesh's balancer as
// its load-balancing config; sc unchanged when it is not a JSON object
// (grpc.NewClient then reports why).
func withBalancer(sc string) string {
	if sc == "" {
		return serviceConfig
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(sc), &doc); err != nil || doc == nil {
		return sc
	}
	delete(doc, "loadBalancingPolicy")
	doc["loadBalancingConfig"] = json.RawMessage(`[{"` + BalancerName + `": {}}]`)
	out, err := json.Marshal(doc)
	if err != nil {
		return sc
	}
	return string(out)
}
