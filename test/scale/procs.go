package scale

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

func numCPU() int { return runtime.NumCPU() }

// procStat is one process's name, CPU time and resident memory, from /proc.
type procStat struct {
	name       string
	cpuSeconds float64
	rssBytes   int64
}

// readProc reads /proc/<pid>/stat: its name, its CPU time (user + system) and its RSS.
func readProc(pid int) (procStat, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return procStat{}, false
	}
	// Fields after the name, from field 3 (state): utime is field 14, stime 15, rss 24 (pages).
	f := strings.Fields(s[closing+1:])
	if len(f) < 22 {
		return procStat{}, false
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	return procStat{name: s[open+1 : closing], cpuSeconds: (utime + stime) / clockTicks, rssBytes: rss * int64(os.Getpagesize())}, true
}

// children returns the processes whose parent is this one (the control plane, kwok and the
// manager all are), and this one, by pid.
func children() map[int]procStat {
	out := map[int]procStat{}
	self := os.Getpid()
	if st, ok := readProc(self); ok {
		st.name = "benchmark client"
		out[self] = st
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		closing := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[closing+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(self) {
			continue
		}
		if st, ok := readProc(pid); ok {
			out[pid] = st
		}
	}
	return out
}

// cpuSince returns the CPU seconds each process spent since before, by name.
func cpuSince(before, after map[int]procStat) map[string]float64 {
	out := map[string]float64{}
	for pid, a := range after {
		d := a.cpuSeconds
		if b, ok := before[pid]; ok {
			d -= b.cpuSeconds
		}
		out[a.name] += d
	}
	return out
}
