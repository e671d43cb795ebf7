package router

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// APIVersion is the only schema version this package reads.
const APIVersion = "lightmesh/v1"

// Document is a decoded rule document, before validation and compilation.
// Field names follow Istio's VirtualService and DestinationRule where the
// concept is the same.
type Document struct {
	APIVersion string             `yaml:"apiVersion" json:"apiVersion"`
	Services   map[string]Service `yaml:"services" json:"services"`
}

// Service holds the rules for calls to one logical service.
type Service struct {
	// Subsets name groups of the service's instances by their labels.
	Subsets map[string]Subset `yaml:"subsets,omitempty" json:"subsets,omitempty"`
	// Routes are tried in order; the first whose match accepts the request wins.
	Routes []Route `yaml:"routes,omitempty" json:"routes,omitempty"`
}

// Subset selects the instances whose metadata labels include all of Labels.
// Empty Labels selects every instance of the service.
type Subset struct {
	Labels map[string]string `yaml:"labels" json:"labels"`
}

// Route sends matching requests to one subset or splits them by weight.
type Route struct {
	// Name labels the route in metrics, traces and errors; it defaults to
	// "routes[i]" and must be unique within the service when set.
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Match selects the requests this route takes; nil matches everything.
	Match *Match `yaml:"match,omitempty" json:"match,omitempty"`
	// Destinations are the subsets the route sends to, split by Weight.
	Destinations []Destination `yaml:"destinations" json:"destinations"`
	// Fallback names the subset used when the chosen destination has no
	// available instance. Empty means no fallback: the call fails with
	// ErrNoInstance.
	Fallback string `yaml:"fallback,omitempty" json:"fallback,omitempty"`
}

// Match holds the conditions a request must all meet. Empty conditions are
// not checked.
type Match struct {
	// Headers maps a header name (case-insensitive) to a condition on its
	// first value.
	Headers map[string]StringMatch `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Path is a condition on the URL path (or the gRPC full method name).
	Path *StringMatch `yaml:"path,omitempty" json:"path,omitempty"`
	// Methods lists the accepted HTTP methods (case-insensitive).
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`
}

// StringMatch is one condition on a string; exactly one field is set.
type StringMatch struct {
	// Exact matches the whole value; an empty string matches a header that
	// is present with an empty value.
	Exact *string `yaml:"exact,omitempty" json:"exact,omitempty"`
	// Prefix matches values starting with it.
	Prefix *string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	// Regex is an RE2 expression that must match the whole value (it is
	// anchored at both ends).
	Regex *string `yaml:"regex,omitempty" json:"regex,omitempty"`
	// Present true requires the header, with any value; false requires it
	// to be absent. Not valid for paths.
	Present *bool `yaml:"present,omitempty" json:"present,omitempty"`
}

// Destination is one subset a route sends to.
type Destination struct {
	Subset string `yaml:"subset" json:"subset"`
	// Weight is this destination's share of the route's traffic. It may be
	// omitted on every destination (an equal split) or set on every one.
	Weight *int `yaml:"weight,omitempty" json:"weight,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("250ms").
type Duration time.Duration

// UnmarshalYAML reads a duration string such as "2s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration must be a string such as \"2s\"", n.Line)
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a string such as "2s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
