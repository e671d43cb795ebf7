package meshtest

import "strings"

// laneSubsets opens a rule document for SERVICE with its base (env=base)
// and staging (env=staging) subsets; the routes follow.
const laneSubsets = `apiVersion: lightmesh/v1
services:
  SERVICE:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
`

// forService puts service where doc says SERVICE.
func forService(doc, service string) string { return strings.ReplaceAll(doc, "SERVICE", service) }

// LaneRules returns a rule document that sends calls of service with
// X-Env: staging to its staging subset (env=staging), falling back to
// base, and every other call to its base subset (env=base).
func LaneRules(service string) string {
	return forService(laneSubsets+`      - name: staging
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - name: default
        destinations: [{subset: base}]
`, service)
}

// MovedRules returns a rule document that sends every call of service to
// its staging subset.
func MovedRules(service string) string {
	return forService(laneSubsets+`      - name: all-staging
        destinations: [{subset: staging}]
`, service)
}

// BrokenRules returns a rule document for service that a mesh must
// reject: a negative weight, and a destination naming a subset, canary,
// that does not exist.
func BrokenRules(service string) string {
	return forService(`apiVersion: lightmesh/v1
services:
  SERVICE:
    subsets:
      base: {labels: {env: base}}
    routes:
      - destinations: [{subset: base, weight: -5}, {subset: canary, weight: 10}]
`, service)
}
