package procstat

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestReadOwnTree(t *testing.T) {
	// A child that burns CPU is counted in its parent's tree.
	cmd := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := Read(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if s.Procs < 2 {
			t.Fatalf("got %d processes in the tree, want at least 2 (the test and its child)", s.Procs)
		}
		if s.RSS == 0 || s.HWM < s.RSS {
			t.Fatalf("got RSS %d and HWM %d, want 0 < RSS <= HWM", s.RSS, s.HWM)
		}
		child, err := Read(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if child.CPU > 0 {
			if s.CPU < child.CPU {
				t.Fatalf("got tree CPU %v below the child's %v", s.CPU, child.CPU)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the busy child never showed CPU time")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReadMissing(t *testing.T) {
	if _, err := Read(1 << 30); err == nil {
		t.Error("got no error for a process that does not exist, want one")
	}
}

func TestSystemBusy(t *testing.T) {
	got, err := SystemBusy()
	if err != nil {
		t.Fatal(err)
	}
	if got <= 0 {
		t.Errorf("got %v busy time, want above zero", got)
	}
}
