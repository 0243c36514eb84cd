// Command init is PID 1 of the IPVS test VM (see ../main.go): it mounts
// the pseudo file systems, loads the kernel modules listed in
// /modules/order, runs /ipvs.test, prints one result line on the console
// and powers the VM off.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	start := time.Now()
	err := run()
	if err != nil {
		fmt.Printf("ipvsvm: FAIL: %v\n", err)
	} else {
		fmt.Printf("ipvsvm: PASS (in the VM: %s)\n", time.Since(start).Round(time.Second))
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Println("ipvsvm: power off:", err)
	}
	select {}
}

func run() error {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s: %w", m.dir, err)
		}
	}
	if err := loadModules("/modules"); err != nil {
		return err
	}
	cmd := exec.Command("/ipvs.test", "-test.v", "-test.count=1", "-test.timeout=15m")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = []string{"PATH=/", "HOME=/tmp", "TMPDIR=/tmp"}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ipvs.test: %w", err)
	}
	return nil
}

// loadModules loads each module named in dir/order, in that order (the
// builder put dependencies first); one already loaded or built in is fine.
func loadModules(dir string) error {
	f, err := os.Open(filepath.Join(dir, "order"))
	if err != nil {
		return err
	}
	defer f.Close()
	var loaded []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" {
			continue
		}
		if err := load(filepath.Join(dir, name+".ko")); err != nil {
			return fmt.Errorf("loading module %s: %w", name, err)
		}
		loaded = append(loaded, name)
	}
	fmt.Printf("ipvsvm: loaded modules %s\n", strings.Join(loaded, " "))
	return sc.Err()
}

func load(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}
