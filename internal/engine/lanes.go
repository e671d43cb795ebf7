package engine

import (
	"context"

	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/trace"
)

// enterLane applies the lane entry rules of local, the service a call
// enters, to req: a call whose lane has no label under local's lanes
// header gets the lane the first matching entry gives it, added to the
// labels it carries. The entries are the operator's rules, not the
// caller's headers, so they apply with WithoutInboundLanes too.
func (s *State) enterLane(ctx context.Context, local string, req *router.Request) context.Context {
	if local == "" || req == nil {
		return ctx
	}
	rules := s.table.Rules()
	header, ok := rules.LaneHeader(local)
	if !ok {
		return ctx
	}
	cur := trace.LaneFromContext(ctx)
	if _, has := cur.Get(header); has {
		return ctx
	}
	header, value, ok := rules.EntryLane(local, req)
	if !ok {
		return ctx
	}
	labels := append(cur.Labels(), trace.Label{Key: header, Value: value})
	lane, err := trace.NewLane(labels...)
	if err != nil {
		// A lanes header the trace package refuses as a lane key (one
		// it reserves): the entry cannot carry a lane.
		return ctx
	}
	return trace.ContextWithLane(ctx, lane)
}
