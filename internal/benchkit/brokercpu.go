package benchkit

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat: USER_HZ, 100 on
// every Linux architecture Go supports.
const userHZ = 100

// brokerCPU returns the CPU time, user and system, used so far by the
// RabbitMQ nodes on this machine (every process named beam.smp, the Erlang
// VM in which a node runs), and false where there is none or /proc cannot
// be read. `make bench-rabbitmq` runs one private node, the broker of the
// benchmarks; a machine that runs other Erlang VMs at the same time makes
// the figure too high. Its resolution is 10 ms: a benchmark run of 20,000
// messages lasts a second or more.
func brokerCPU() (time.Duration, bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	var ticks int64
	found := false
	for _, e := range entries {
		name := e.Name()
		if name[0] < '1' || name[0] > '9' {
			continue
		}
		comm, err := os.ReadFile("/proc/" + name + "/comm")
		if err != nil || string(bytes.TrimSpace(comm)) != "beam.smp" {
			continue
		}
		stat, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue
		}
		t, ok := statTicks(stat)
		if !ok {
			continue
		}
		ticks += t
		found = true
	}
	return time.Duration(ticks) * time.Second / userHZ, found
}

// statTicks returns utime + stime of a /proc/PID/stat line: its 14th and
// 15th fields, counting from the pid; the second, the command in
// parentheses, may hold spaces, so fields are counted from its last ')'.
func statTicks(stat []byte) (int64, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	s, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + s, true
}

// settleBroker waits, up to 5 seconds, until the broker has used at most 5%
// of a core over 200 ms: what RabbitMQ does after a benchmark (deleting its
// queue, compacting its message store, electing, checkpointing) would
// otherwise be charged, in time and in broker CPU, to the next one, which
// is always the same column of a group. It returns at once where the
// broker's CPU time cannot be read.
func settleBroker() {
	const window, idle, limit = 200 * time.Millisecond, 10 * time.Millisecond, 5 * time.Second
	last, ok := brokerCPU()
	if !ok {
		return
	}
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
		time.Sleep(window)
		now, ok := brokerCPU()
		if !ok || now-last <= idle {
			return
		}
		last = now
	}
}
