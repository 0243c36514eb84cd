package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a long-lived program the lab started. It runs in its own
// process group, so that stopping it also stops anything it forked, and so
// that a Ctrl-C in the terminal that ran `make demo` does not reach it.
type Process struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// StartTicks is field 22 of /proc/PID/stat when the process started.
	// A PID alone may be reused after the process dies; PID and start time
	// together name one process.
	StartTicks uint64 `json:"startTicks"`
	Log        string `json:"log"`

	// done is closed when the process has exited; nil for processes loaded
	// from a state file (started by another program, so not our children).
	done chan struct{}
}

// startProcess runs argv with stdout and stderr appended to logPath.
func startProcess(name, logPath string, env []string, argv ...string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log for %s: %w", name, err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, argv[0], err)
	}
	p := &Process{Name: name, PID: cmd.Process.Pid, Log: logPath, done: make(chan struct{})}
	p.StartTicks, _ = startTicks(p.PID)
	// Reap the child as soon as it exits, so that a zombie never looks
	// alive to Alive or to Down.
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Exited is closed when a process this program started has exited; it is
// nil for a process loaded from a state file.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Alive reports whether the process still runs and is the one that was
// started (not another that reused its PID).
func (p *Process) Alive() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
		}
	}
	st, state, err := procStat(p.PID)
	if err != nil || state == "Z" {
		return false
	}
	return p.StartTicks == 0 || st == p.StartTicks
}

// Signal sends sig to the process's whole group.
func (p *Process) Signal(sig syscall.Signal) error {
	if !p.Alive() {
		return nil
	}
	if err := syscall.Kill(-p.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling %s (pid %d): %w", p.Name, p.PID, err)
	}
	return nil
}

// Stop sends SIGTERM to the group, waits up to grace, then sends SIGKILL
// and waits again. It returns an error only if the process is still alive.
func (p *Process) Stop(grace time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if p.waitExit(grace) {
		return nil
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if p.waitExit(5 * time.Second) {
		return nil
	}
	return fmt.Errorf("%s (pid %d) still alive after SIGKILL", p.Name, p.PID)
}

// waitExit waits up to d for the process to go, polling /proc for
// processes that are not our children.
func (p *Process) waitExit(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !p.Alive() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		if p.done != nil {
			select {
			case <-p.done:
			case <-time.After(50 * time.Millisecond):
			}
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// CPUSeconds is the user plus system CPU time the process has used.
func (p *Process) CPUSeconds() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of %s: %w", p.Name, err)
	}
	f := statFields(string(b))
	if len(f) < 15 {
		return 0, fmt.Errorf("reading CPU time of %s: short /proc/%d/stat", p.Name, p.PID)
	}
	// Fields 14 and 15 (utime, stime) are in clock ticks; USER_HZ is 100
	// on every Linux architecture Go supports.
	ut, err1 := strconv.ParseUint(f[13], 10, 64)
	st, err2 := strconv.ParseUint(f[14], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parsing CPU time of %s: %w", p.Name, err)
	}
	return float64(ut+st) / 100, nil
}

// RSSBytes is the process's resident set size (VmRSS).
func (p *Process) RSSBytes() (int64, error) { return p.StatusBytes("VmRSS") }

// StatusBytes reads one memory field of /proc/PID/status (VmRSS, RssAnon,
// RssFile, VmHWM...), in bytes.
func (p *Process) StatusBytes(field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		return 0, fmt.Errorf("reading %s of %s: %w", field, p.Name, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing %s %q of %s: %w", field, v, p.Name, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status of %s", field, p.PID, p.Name)
}

func startTicks(pid int) (uint64, error) {
	t, _, err := procStat(pid)
	return t, err
}

// procStat returns the start time and state of pid.
func procStat(pid int) (start uint64, state string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", err
	}
	f := statFields(string(b))
	if len(f) < 22 {
		return 0, "", fmt.Errorf("short /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(f[21], 10, 64)
	return start, f[2], err
}

// statFields splits /proc/PID/stat. The command name (field 2) is in
// parentheses and may hold spaces, so it is cut out by its last ')'.
func statFields(s string) []string {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return append([]string{"pid", "comm"}, strings.Fields(s[i+1:])...)
}
