package rules

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// DefaultPollInterval is how often File checks its file for changes.
const DefaultPollInterval = 250 * time.Millisecond

// readLimit caps how much of a file is read: one byte past the router's
// 1 MiB document limit, so an oversized file is rejected, not read whole.
const readLimit = 1<<20 + 1

// File is a Source that reads a local file and re-reads it when its size
// or modification time changes and then holds still for one poll. It
// polls rather than using inotify so it also follows editors and config
// tools that replace the file by rename.
type File struct {
	path     string
	interval time.Duration
}

// NewFile returns a source for the file at path, polled every interval
// (DefaultPollInterval when interval <= 0).
func NewFile(path string, interval time.Duration) *File {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	return &File{path: path, interval: interval}
}

// String implements Source.
func (f *File) String() string { return "file:" + f.path }

// Watch implements Source. It returns an error when the file cannot be
// read (the caller retries with backoff) and ctx.Err() when ctx ends.
func (f *File) Watch(ctx context.Context, update func(Document)) error {
	var delivered, seen fileState
	ticker := time.NewTicker(f.interval)
	defer ticker.Stop()
	for first := true; ; first = false {
		st, err := os.Stat(f.path)
		if err != nil {
			return fmt.Errorf("rules: %w", err)
		}
		cur := fileState{mod: st.ModTime().UnixNano(), size: st.Size()}
		// Deliver a change once the file has looked the same for one poll,
		// so a writer still filling the file is not read half-way. The
		// first read does not wait.
		if cur != delivered && (cur == seen || first) {
			data, err := readFile(f.path)
			if err != nil {
				return fmt.Errorf("rules: %w", err)
			}
			delivered = cur
			update(Document{Data: data})
		}
		seen = cur
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

type fileState struct {
	mod  int64 // modification time, Unix ns
	size int64
}

func readFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(io.LimitReader(fh, readLimit))
}
