// Package statedir manages the state directory of a local mesh run by
// `weft up`: the lock that keeps a second `weft up` out, the controller.json
// file through which the other CLI commands find the running controller, and
// the logs/ and bin/ subdirectories.
//
// It may be imported by the CLI and the local-mode supervisor. All functions
// are safe to call concurrently; a Lock must be released by one goroutine.
package statedir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// File names inside a state directory.
const (
	lockFile       = "up.lock"
	controllerFile = "controller.json"
	logsDir        = "logs"
	binDir         = "bin"
)

// Default returns the default state directory: $XDG_STATE_HOME/weft, or
// ~/.local/state/weft when XDG_STATE_HOME is unset.
func Default() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "weft"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the default state directory: %w; pass --state-dir", err)
	}
	return filepath.Join(home, ".local", "state", "weft"), nil
}

// Logs returns the directory of the children's log files.
func Logs(dir string) string { return filepath.Join(dir, logsDir) }

// Bin returns the directory binaries are built into.
func Bin(dir string) string { return filepath.Join(dir, binDir) }

// Lock is the exclusive lock of a state directory held by `weft up`.
type Lock struct {
	f *os.File
}

// AlreadyRunningError reports that another `weft up` holds the lock.
type AlreadyRunningError struct {
	Dir string
	PID int // 0 when unknown
}

func (e *AlreadyRunningError) Error() string {
	pid := "unknown"
	if e.PID > 0 {
		pid = strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("weft up is already running (pid %s, state dir %s); stop it with Ctrl-C, or pass --state-dir to run a second mesh", pid, e.Dir)
}

// Acquire creates dir (and logs/, bin/) if needed and takes its lock
// without waiting. It returns an *AlreadyRunningError when another process
// holds it.
func Acquire(dir string) (*Lock, error) {
	for _, d := range []string{dir, Logs(dir), Bin(dir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid := readPID(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &AlreadyRunningError{Dir: dir, PID: pid}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

func readPID(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	return pid
}

// Release unlocks the state directory. The lock file stays in place.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// Held reports whether some process holds the lock of dir, that is,
// whether a `weft up` runs there.
func Held(dir string) bool {
	f, err := os.Open(filepath.Join(dir, lockFile))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// Controller is what controller.json holds: how to reach the controller of
// the running local mesh.
type Controller struct {
	HTTPAddr string `json:"http_addr"`
	GRPCAddr string `json:"grpc_addr"`
	// Token authenticates calls to the controller's HTTP API.
	Token string `json:"token"`
	// PID of the `weft up` process.
	PID int `json:"pid"`
}

// WriteController writes controller.json with mode 0600 (it holds the
// API token), atomically.
func WriteController(dir string, c Controller) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode controller.json: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".controller-*.json")
	if err != nil {
		return fmt.Errorf("write controller.json: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write controller.json: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write controller.json: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write controller.json: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, controllerFile)); err != nil {
		return fmt.Errorf("write controller.json: %w", err)
	}
	return nil
}

// RemoveController deletes controller.json; a missing file is no error.
func RemoveController(dir string) error {
	err := os.Remove(filepath.Join(dir, controllerFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove controller.json: %w", err)
	}
	return nil
}

// NotRunningError reports that no local mesh runs in a state directory.
type NotRunningError struct {
	Dir string
}

func (e *NotRunningError) Error() string {
	return fmt.Sprintf("no local mesh is running (state dir %s): start one with weft up", e.Dir)
}

// ReadController reads controller.json of the mesh running in dir. It
// returns a *NotRunningError when there is none, or when the file was left
// behind by a `weft up` that no longer runs.
func ReadController(dir string) (Controller, error) {
	var c Controller
	data, err := os.ReadFile(filepath.Join(dir, controllerFile))
	if errors.Is(err, os.ErrNotExist) {
		if Held(dir) {
			return c, fmt.Errorf("weft up (state dir %s) is starting or stopping; try again once it prints \"Press Ctrl-C to stop.\"", dir)
		}
		return c, &NotRunningError{Dir: dir}
	}
	if err != nil {
		return c, fmt.Errorf("read controller.json: %w", err)
	}
	if !Held(dir) {
		return c, &NotRunningError{Dir: dir}
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("read %s: %w; stop weft up and start it again", filepath.Join(dir, controllerFile), err)
	}
	if c.HTTPAddr == "" || c.Token == "" {
		return c, fmt.Errorf("read %s: http_addr or token missing; stop weft up and start it again", filepath.Join(dir, controllerFile))
	}
	return c, nil
}
