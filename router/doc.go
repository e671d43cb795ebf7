// Package router holds the lightmesh rule document and the label router.
//
// A rule document (apiVersion lightmesh/v1) is decoded strictly with Parse,
// validated as a whole and compiled into immutable Rules (Load does both,
// reporting every problem in one pass; LoadPart and Compose do the same
// for the per-service layout). Rules.InForce is what applies to a
// service, its defaults filled in: the one answer every tool shows. NewTable joins
// Rules with the instances discovery knows into a Table, the snapshot the
// request path reads: Table.Route matches a request against a service's
// routes in order (first match wins), picks a subset by weight, falls back
// when that subset has no instance and picks an instance inside it.
//
// Everything here is pure: no I/O, no goroutines, no locks. A Table is safe
// for concurrent use and is replaced, never mutated, when rules or instances
// change.
package router
