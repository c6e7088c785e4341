// Package procstat reads what a process tree has cost from Linux's /proc: CPU time (utime +
// stime from /proc/PID/stat) and memory (VmRSS and VmHWM from /proc/PID/status), summed over a
// process and all its descendants (nginx runs a master and a worker, for example).
//
// Only the benchmark harness imports procstat. Read is safe to call concurrently.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime: 100 on every Linux architecture Go
// supports (sysconf(_SC_CLK_TCK)).
const clockTicks = 100

// Stat is the cost of a process tree at one moment.
type Stat struct {
	// CPU is user plus system time consumed so far by the tree's live processes.
	CPU time.Duration
	// RSS is the resident set size now (VmRSS), HWM its peak so far (VmHWM), in bytes.
	RSS, HWM uint64
	// Procs is how many processes were summed.
	Procs int
}

// Read sums pid and its descendants.
func Read(pid int) (Stat, error) {
	var s Stat
	for _, p := range tree(pid) {
		cpu, err := cpuOf(p)
		if err != nil {
			if p == pid {
				return Stat{}, err
			}
			continue // a child that exited between listing and reading
		}
		rss, hwm, err := memOf(p)
		if err != nil {
			if p == pid {
				return Stat{}, err
			}
			continue
		}
		s.CPU += cpu
		s.RSS += rss
		s.HWM += hwm
		s.Procs++
	}
	return s, nil
}

// tree returns pid followed by its descendants.
func tree(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", out[i]))
		if err != nil {
			continue
		}
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", out[i], t.Name()))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

func cpuOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu of pid %d: %w", pid, err)
	}
	// The command name (field 2) may contain spaces; fields are counted after its ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// After ")": state(3) ppid(4) ... utime(14) stime(15): indexes 11 and 12 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

func memOf(pid int) (rss, hwm uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v) // "1234 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("parse /proc/%d/status %s: %q", pid, k, v)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse /proc/%d/status %s: %w", pid, k, err)
		}
		if k == "VmRSS" {
			rss = n * 1024
		} else {
			hwm = n * 1024
		}
	}
	return rss, hwm, nil
}

// SystemBusy returns the CPU time all CPUs of the machine have spent busy so far in processes
// (user, nice and system from /proc/stat) or taken by the hypervisor (steal). Compared with a
// process tree's CPU over the same window it shows how much of the machine something else used.
// Interrupt and softirq time is left out: it is mostly the loopback traffic of the benchmark
// itself, which the kernel charges to no process.
func SystemBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("parse /proc/stat: first line %q", line)
	}
	var ticks uint64
	for _, i := range []int{1, 2, 3, 8} { // user nice system (idle iowait irq softirq) steal
		n, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/stat field %d: %w", i, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
