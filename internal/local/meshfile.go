package local

import (
	"fmt"
	"path/filepath"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
)

// loadMesh decodes a mesh file: its Mesh document and the other documents
// to apply once the controller runs.
func loadMesh(path string, data []byte) (*Mesh, []config.Resource, error) {
	fm, rs, err := file.LoadMesh(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, fmt.Errorf("mesh file: %w", err)
	}
	m := &Mesh{Path: path, Dir: filepath.Dir(abs)}
	for _, e := range fm.Expose {
		m.Expose = append(m.Expose, Expose{Service: e.Service, Port: e.Port})
	}
	for _, w := range fm.Workloads {
		m.Workloads = append(m.Workloads, Workload{
			Name: w.Name, Version: w.Version, Command: w.Command, Port: w.Port,
			Replicas: w.Replicas, Protocol: w.Protocol, Calls: w.Calls, Env: w.Env,
			Dir: w.Dir, ReadyPath: w.Ready.HTTPGet,
		})
	}
	return m, rs, nil
}
