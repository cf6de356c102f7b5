package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is USER_HZ, the unit of the CPU times in /proc/<pid>/stat; it is
// 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// selfCPU is the CPU time (user + system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time (user + system) process pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu of pid %d: %w", pid, err)
	}
	// The command name in parentheses may hold spaces: fields start after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("read cpu of pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("read cpu of pid %d: short stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read cpu of pid %d: malformed stat", pid)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// procMem returns the resident set size and its peak (VmRSS, VmHWM) of
// process pid, in bytes.
func procMem(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("read memory of pid %d: %s: %w", pid, key, err)
		}
		if key == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak, nil
}

// resetPeakRSS makes VmHWM start again from the current RSS, so each
// scenario reports its own peak. Allowed on our own processes since Linux 4.0.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// cpusOf lists the CPUs process pid (0: this one) may run on.
func cpusOf(pid int) string {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &set); err != nil {
		return "?"
	}
	var cpus []string
	for i := range 1024 {
		if set.IsSet(i) {
			cpus = append(cpus, strconv.Itoa(i))
		}
	}
	return strings.Join(cpus, ",")
}

// raiseNoFile raises the soft limit of open files to the hard limit (Go
// does it at start-up too, but says nothing) and returns the soft limit.
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("get open files limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raise open files limit to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}

// checkNoFile raises the open files limit and notes on r when it is too
// low for conns connections.
func checkNoFile(r *result, conns int) {
	if lim, err := raiseNoFile(); err != nil {
		r.note("%v", err)
	} else if lim < uint64(conns)+100 {
		r.note("open files limit %d is below %d connections: raise ulimit -n", lim, conns)
	}
}

// usage samples the CPU and memory of this tool and of the server during a
// scenario.
type usage struct {
	pid        int
	start      time.Time
	selfStart  time.Duration
	serverCPU0 time.Duration
}

func startUsage(pid int) *usage {
	u := &usage{pid: pid, start: time.Now(), selfStart: selfCPU()}
	if pid > 0 {
		_ = resetPeakRSS(pid)
		u.serverCPU0, _ = procCPU(pid)
	}
	return u
}

// stop fills r's resource columns.
func (u *usage) stop(r *result) {
	wall := time.Since(u.start)
	r.ToolCPU = selfCPU() - u.selfStart
	// Busy as a fraction of the CPUs it may use (GOMAXPROCS follows the
	// affinity: 1 when pinned to one core). Saturated: busy 90% of the
	// wall time or more; then the tool's own delays are in the latency
	// (its readers and its timers wait for the CPU) and the figures are
	// not to be trusted.
	r.ToolBusy = r.ToolCPU.Seconds() / (wall.Seconds() * float64(runtime.GOMAXPROCS(0)))
	r.ToolSaturated = r.ToolBusy >= 0.9
	r.ToolBound = r.ToolBound || r.ToolSaturated
	if r.ToolSaturated {
		r.note("chatbench was busy %.0f%% of its CPU: its own delays are in these figures (UNTRUSTED)", 100*r.ToolBusy)
	}
	if u.pid <= 0 {
		return
	}
	r.ServerKnown = true
	if cpu, err := procCPU(u.pid); err == nil {
		r.ServerCPU = cpu - u.serverCPU0
	}
	if _, peak, err := procMem(u.pid); err == nil {
		r.ServerPeakRSS = peak
	}
}
