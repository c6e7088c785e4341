package metrics

import (
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"syscall"
	"time"
)

// registerRuntime adds the Go runtime's and the process's metrics, under
// the names Prometheus's Go client gives them, read at each scrape.
func (r *Registry) registerRuntime() {
	r.GaugeVec("go_info", "Information about the Go environment.", "version").With(runtime.Version()).Inc()
	r.gaugeFunc("go_goroutines", "Number of goroutines that currently exist.", func() float64 {
		return float64(runtime.NumGoroutine())
	})
	r.gaugeFunc("go_threads", "Number of OS threads created.", func() float64 {
		n, _ := runtime.ThreadCreateProfile(nil)
		return float64(n)
	})
	for _, m := range []struct{ name, help, sample string }{
		{"go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use.", "/memory/classes/heap/objects:bytes"},
		{"go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator.", "/memory/classes/heap/stacks:bytes"},
		{"go_memstats_sys_bytes", "Number of bytes obtained from system.", "/memory/classes/total:bytes"},
		{"go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100.", "/gc/gogc:percent"},
		{"go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64.", "/gc/gomemlimit:bytes"},
		{"go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting.", "/sched/gomaxprocs:threads"},
	} {
		r.gaugeFunc(m.name, m.help, func() float64 { return readRuntime(m.sample) })
	}
	r.counterFunc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0
		}
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	})
	r.gaugeFunc("process_resident_memory_bytes", "Resident memory size in bytes.", func() float64 {
		return float64(procStat(statRSS) * int64(os.Getpagesize()))
	})
	r.gaugeFunc("process_virtual_memory_bytes", "Virtual memory size in bytes.", func() float64 {
		return float64(procStat(statVSize))
	})
	start := processStart()
	r.gaugeFunc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", func() float64 { return start })
	r.gaugeFunc("process_open_fds", "Number of open file descriptors.", func() float64 {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return 0
		}
		return float64(len(ents))
	})
	r.gaugeFunc("process_max_fds", "Maximum number of open file descriptors.", func() float64 {
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0
		}
		return float64(lim.Cur)
	})
}

func readRuntime(name string) float64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	switch s[0].Value.Kind() {
	case metrics.KindUint64:
		return float64(s[0].Value.Uint64())
	case metrics.KindFloat64:
		return s[0].Value.Float64()
	}
	return 0
}

// Fields of /proc/self/stat, counted from 1 as in proc(5).
const (
	statStartTime = 22 // clock ticks after boot
	statVSize     = 23 // bytes
	statRSS       = 24 // pages
)

// procStat returns field n of /proc/self/stat, 0 if unreadable.
func procStat(n int) int64 {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count from after its closing one, which ends field 2.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	fields := bytes.Fields(data[i+1:])
	if n-3 >= len(fields) || n < 3 {
		return 0
	}
	v, _ := strconv.ParseInt(string(fields[n-3]), 10, 64)
	return v
}

// processStart is the process's start time in seconds since the epoch:
// boot time (/proc/stat btime) plus the start in clock ticks (100 per
// second on Linux) from /proc/self/stat; the time of the first call when
// those cannot be read.
func processStart() float64 {
	fallback := float64(time.Now().UnixNano()) / 1e9
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return fallback
	}
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			btime, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			ticks := procStat(statStartTime)
			if err != nil || ticks == 0 {
				return fallback
			}
			return float64(btime) + float64(ticks)/100
		}
	}
	return fallback
}
