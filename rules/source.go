package rules

import (
	"bytes"
	"context"
	"strconv"
	"sync"
)

// Document is one version of a rule document as a source holds it.
type Document struct {
	// Data is the document's bytes (YAML or JSON).
	Data []byte
	// Version is the source's version of the document (an etcd revision,
	// a Nacos MD5); empty when it has none, in which case the mesh names
	// the version by the content's hash.
	Version string
}

// Source delivers rule documents.
//
// Watch delivers the current document to update as soon as it has it and
// then every later version, until ctx ends or the connection to the source
// fails. It blocks for that whole time and returns the error that ended it
// (ctx.Err() after cancellation); the caller calls Watch again, with
// backoff, to resume. update is called from one goroutine at a time and
// must not keep doc.Data. A source that reached its control plane and
// found no document there (a key not yet written) may say so by calling
// update with a Document whose Data is nil: the mesh then reports it
// connected, and keeps the rules it has. String names the source for
// logs and status and must not include credentials.
type Source interface {
	Watch(ctx context.Context, update func(Document)) error
	String() string
}

// Memory is a Source whose document the program sets with Set. Use
// NewMemory.
type Memory struct {
	mu      sync.Mutex
	doc     Document
	version int
	changed chan struct{} // closed and replaced on every Set
}

// NewMemory returns a source holding data (copied) as version "1". Nil
// data is no document: the watcher is connected, with nothing to apply.
func NewMemory(data []byte) *Memory {
	return &Memory{doc: Document{Data: bytes.Clone(data), Version: "1"}, version: 1, changed: make(chan struct{})}
}

// Set replaces the document and wakes the watcher. Each call makes a new
// version; nil data is no document, as for NewMemory.
func (m *Memory) Set(data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.version++
	m.doc = Document{Data: bytes.Clone(data), Version: strconv.Itoa(m.version)}
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *Memory) current() (Document, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.doc, m.changed
}

// Watch implements Source. It returns only when ctx ends.
func (m *Memory) Watch(ctx context.Context, update func(Document)) error {
	for {
		doc, changed := m.current()
		update(Document{Data: bytes.Clone(doc.Data), Version: doc.Version})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// String implements Source.
func (m *Memory) String() string { return "memory" }
