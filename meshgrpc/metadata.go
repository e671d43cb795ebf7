package meshgrpc

import (
	"context"
	"strings"

	"google.golang.org/grpc/metadata"
)

// mdCarrier is a TextMapCarrier over outgoing metadata: Inject writes into
// md (the caller's metadata, already a copy), creating it on first write.
// The values of the first keys it sets are kept in vals (the call's
// callScratch), not in a slice each.
type mdCarrier struct {
	md    metadata.MD
	wrote bool
	vals  []string
}

// Get returns the first value of key.
func (c *mdCarrier) Get(key string) string {
	if v := c.md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Values returns every value of key.
func (c *mdCarrier) Values(key string) []string { return c.md.Get(key) }

// Set sets key to value.
func (c *mdCarrier) Set(key, value string) {
	if c.md == nil {
		c.md = make(metadata.MD, 2)
	}
	key = strings.ToLower(key)
	if n := len(c.vals); n < cap(c.vals) {
		c.vals = append(c.vals, value)
		c.md[key] = c.vals[n : n+1 : n+1]
	} else {
		c.md[key] = []string{value}
	}
	c.wrote = true
}

// Keys returns the metadata keys.
func (c *mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c.md))
	for k := range c.md {
		keys = append(keys, k)
	}
	return keys
}

// incoming reads single keys of a call's incoming metadata without
// copying all of it: as a TextMapCarrier for Extract and, through
// incomingHeaders, as a router.HeaderGetter for inbound routes.
type incoming struct{ ctx context.Context }

// Get returns the first value of key.
func (c incoming) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Values returns every value of key.
func (c incoming) Values(key string) []string { return metadata.ValueFromIncomingContext(c.ctx, key) }

// Set does nothing: incoming metadata is read only.
func (incoming) Set(string, string) {}

// Keys returns the metadata keys.
func (c incoming) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}

// incomingHeaders is incoming as a router.HeaderGetter.
type incomingHeaders struct{ ctx context.Context }

// Get returns the first value of key and whether the call has it.
func (h incomingHeaders) Get(key string) (string, bool) {
	v := metadata.ValueFromIncomingContext(h.ctx, key)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}
