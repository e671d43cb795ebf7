// Package rules delivers rule documents to the mesh: the Source interface
// and two sources, Memory (set by the program) and File (a local file
// watched for changes). The control-plane adapters (Nacos, etcd) implement
// Source too. Sources only deliver bytes; the mesh validates, compiles and
// applies them.
package rules
