package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/config/memory"
)

// appliedFile keeps, in the state directory, the documents applied to the
// mesh, so that the next `weft up` in the same state directory starts with
// them.
const appliedFile = "applied.yaml"

// encodeResources writes resources as a YAML stream of their documents.
func encodeResources(rs []config.Resource) []byte {
	var b bytes.Buffer
	b.WriteString("# Documents applied to the local mesh; weft up re-applies them at start.\n")
	for _, r := range rs {
		b.WriteString("---\n")
		b.Write(bytes.TrimSpace(r.Raw))
		b.WriteString("\n")
	}
	return b.Bytes()
}

// restoreResources applies the documents the last run kept, one by one,
// except those the store already holds (from the mesh file): a document
// that no longer fits the mesh (say, its service is gone) is dropped with a
// warning. It returns how many were applied.
func restoreResources(path string, store *memory.Store, warn func(string)) int {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		warn(fmt.Sprintf("documents of the last run not re-applied: %v", err))
		return 0
	}
	rs, err := file.Decode(data)
	if err != nil {
		warn(fmt.Sprintf("documents of the last run not re-applied (%s): %v", path, err))
		return 0
	}
	n := 0
	present := map[string]bool{}
	for _, r := range store.Snapshot().Resources {
		present[r.ID()] = true
	}
	for _, r := range rs {
		if present[r.ID()] {
			continue // the mesh file declares it again
		}
		if _, err := store.Apply([]config.Resource{r}); err != nil {
			warn(fmt.Sprintf("%s %s/%s of the last run dropped: %v", r.Kind, r.Namespace, r.Name, err))
			continue
		}
		n++
	}
	return n
}

// persistResources writes the applied documents to path whenever they
// change, until ctx ends.
func persistResources(ctx context.Context, path string, src config.Source, log *slog.Logger) {
	var last []byte
	for {
		changed := src.Changed()
		data := encodeResources(src.Snapshot().Resources)
		if !bytes.Equal(data, last) {
			if err := writeFileAtomic(path, data); err != nil {
				log.Warn("keep applied documents", "error", err)
			} else {
				last = data
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
