package statedir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAcquireIsExclusive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	lock, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"logs", "bin"} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err != nil || !st.IsDir() {
			t.Errorf("%s/: %v", sub, err)
		}
	}
	if !Held(dir) {
		t.Error("Held = false while locked")
	}
	_, err = Acquire(dir)
	var running *AlreadyRunningError
	if !errors.As(err, &running) {
		t.Fatalf("second Acquire = %v, want *AlreadyRunningError", err)
	}
	want := fmt.Sprintf("weft up is already running (pid %d, state dir %s); stop it with Ctrl-C, or pass --state-dir to run a second mesh", os.Getpid(), dir)
	if got := err.Error(); got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	if err := lock.Release(); err != nil {
		t.Fatal(err)
	}
	if Held(dir) {
		t.Error("Held = true after Release")
	}
	lock2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	_ = lock2.Release()
}

func TestControllerFile(t *testing.T) {
	dir := t.TempDir()
	_, err := ReadController(dir)
	var nr *NotRunningError
	if !errors.As(err, &nr) || err.Error() != fmt.Sprintf("no local mesh is running (state dir %s): start one with weft up", dir) {
		t.Fatalf("ReadController without a file = %v", err)
	}
	lock, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	if _, err := ReadController(dir); err == nil || err.Error() != fmt.Sprintf(`weft up (state dir %s) is starting or stopping; try again once it prints "Press Ctrl-C to stop."`, dir) {
		t.Errorf("ReadController while starting = %v", err)
	}
	want := Controller{HTTPAddr: "127.0.0.1:8085", GRPCAddr: "127.0.0.1:8086", Token: "abc", PID: 42}
	if err := WriteController(dir, want); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "controller.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("controller.json mode %v, want 0600", got)
	}
	got, err := ReadController(dir)
	if err != nil || got != want {
		t.Errorf("ReadController = %+v, %v; want %+v", got, err, want)
	}
	if err := RemoveController(dir); err != nil {
		t.Fatal(err)
	}
	if err := RemoveController(dir); err != nil {
		t.Errorf("second RemoveController: %v", err)
	}
	if _, err := ReadController(dir); err == nil || !strings.Contains(err.Error(), "is starting or stopping") {
		t.Errorf("ReadController after remove, lock held = %v", err)
	}
	if err := lock.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadController(dir); !errors.As(err, &nr) {
		t.Errorf("ReadController after remove and release = %v", err)
	}
}

func TestStaleControllerFile(t *testing.T) {
	dir := t.TempDir()
	if err := WriteController(dir, Controller{HTTPAddr: "127.0.0.1:1", Token: "t"}); err != nil {
		t.Fatal(err)
	}
	var nr *NotRunningError
	if _, err := ReadController(dir); !errors.As(err, &nr) {
		t.Errorf("ReadController with nobody holding the lock = %v, want *NotRunningError", err)
	}
}

func TestDefault(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/x/state")
	if got, err := Default(); err != nil || got != "/x/state/weft" {
		t.Errorf("Default() = %q, %v", got, err)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got, err := Default(); err != nil || got != "/home/u/.local/state/weft" {
		t.Errorf("Default() = %q, %v", got, err)
	}
}
