// Command ipvsvm runs the IPVS backend's real-kernel tests in a QEMU VM
// (TCG, no KVM needed) on Debian's kernel, for machines whose own kernel
// has no IPVS and cannot load modules. It is what `make test-ipvs` runs.
//
// It packs an initramfs (cpio newc) with /init (hack/ipvsvm/init, static),
// the test binary (go test -c -tags ipvsvm ./internal/dataplane/ipvs) as
// /ipvs.test, and the kernel modules asked for plus those they depend on
// (read from each module's .modinfo), boots it with the serial console on
// stdout, and exits 0 only if the VM printed "ipvsvm: PASS".
package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	var (
		kernel  = flag.String("kernel", "bin/ipvsvm/kernel", "root of the extracted linux-image package (boot/vmlinuz-*, lib/modules/*/kernel)")
		initBin = flag.String("init", "bin/ipvsvm/init", "the static init program")
		testBin = flag.String("test", "bin/ipvsvm/ipvs.test", "the test binary to run in the VM")
		mods    = flag.String("modules", "crc32c_generic,ip_vs,ip_vs_rr,ip_vs_wrr,ip_vs_lc,ip_vs_mh,dummy,veth", "modules to load, in order; their dependencies are added before them")
		out     = flag.String("initramfs", "bin/ipvsvm/initramfs.cpio", "where to write the initramfs")
		mem     = flag.String("m", "512M", "VM memory")
		timeout = flag.Duration("timeout", 20*time.Minute, "give up on the VM after this long")
	)
	flag.Parse()
	if err := run(*kernel, *initBin, *testBin, strings.Split(*mods, ","), *out, *mem, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "ipvsvm:", err)
		os.Exit(1)
	}
}

func run(kernel, initBin, testBin string, mods []string, out, mem string, timeout time.Duration) error {
	vmlinuz, err := glob1(filepath.Join(kernel, "boot", "vmlinuz-*"))
	if err != nil {
		return err
	}
	modDir, err := glob1(filepath.Join(kernel, "lib", "modules", "*", "kernel"))
	if err != nil {
		return err
	}
	order, paths, err := resolve(modDir, mods)
	if err != nil {
		return err
	}
	if err := writeInitramfs(out, initBin, testBin, order, paths); err != nil {
		return err
	}
	fmt.Printf("ipvsvm: kernel %s, modules %s\n", filepath.Base(vmlinuz), strings.Join(order, " "))

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-machine", "pc", "-accel", "tcg", "-smp", "1", "-m", mem,
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", vmlinuz, "-initrd", out,
		"-append", "console=ttyS0 panic=-1 loglevel=4")
	cmd.Stdin = nil
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting qemu-system-x86_64: %w", err)
	}
	result := ""
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Println(line)
		if strings.HasPrefix(line, "ipvsvm: PASS") || strings.HasPrefix(line, "ipvsvm: FAIL") {
			result = line
		}
	}
	werr := cmd.Wait()
	fmt.Printf("ipvsvm: VM ran %s\n", time.Since(start).Round(time.Second))
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("the VM did not finish within %s", timeout)
	case result == "":
		return fmt.Errorf("the VM printed no result (qemu: %v)", werr)
	case !strings.HasPrefix(result, "ipvsvm: PASS"):
		return errors.New(result)
	}
	return nil
}

func glob1(pattern string) (string, error) {
	m, err := filepath.Glob(pattern)
	if err != nil {
		return "", err
	}
	if len(m) != 1 {
		return "", fmt.Errorf("%s: want exactly one match, have %d (run make test-ipvs to fetch the kernel)", pattern, len(m))
	}
	return m[0], nil
}

// modName is a module's name as the kernel spells it: dashes become
// underscores.
func modName(file string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(file), ".ko"), "-", "_")
}

// resolve returns the modules to load, each after those it depends on,
// and their files.
func resolve(modDir string, want []string) ([]string, map[string]string, error) {
	paths := map[string]string{}
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case strings.HasSuffix(p, ".ko"):
			paths[modName(p)] = p
		case strings.HasSuffix(p, ".ko.xz"), strings.HasSuffix(p, ".ko.zst"), strings.HasSuffix(p, ".ko.gz"):
			// Debian 12's kernel ships them uncompressed; a compressed
			// one would need decompressing here before init loads it.
			paths[modName(strings.TrimSuffix(p, filepath.Ext(p)))] = p
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var (
		order []string
		state = map[string]int{} // 1 visiting, 2 done
		visit func(string) error
	)
	visit = func(name string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module %s: dependency cycle", name)
		case 2:
			return nil
		}
		p, ok := paths[name]
		if !ok {
			return fmt.Errorf("module %s: not in %s (built in?)", name, modDir)
		}
		if !strings.HasSuffix(p, ".ko") {
			return fmt.Errorf("module %s: %s is compressed; only plain .ko files are supported", name, p)
		}
		state[name] = 1
		deps, err := depends(p)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, name)
		return nil
	}
	for _, w := range want {
		if w = strings.TrimSpace(w); w != "" {
			if err := visit(w); err != nil {
				return nil, nil, err
			}
		}
	}
	return order, paths, nil
}

// depends reads the depends= entry of a module's .modinfo section.
func depends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	b, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// writeInitramfs writes an uncompressed cpio (newc) archive: the
// directories init mounts on, /dev/console (so init has a console before
// devtmpfs), /init, /ipvs.test, and /modules with the modules and their
// load order.
func writeInitramfs(out, initBin, testBin string, order []string, paths map[string]string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := &cpioWriter{w: bufio.NewWriterSize(f, 1<<20)}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "modules"} {
		w.entry(d, modeDir|0o755, 0, 0, nil)
	}
	w.entry("dev/console", modeChar|0o600, 5, 1, nil)
	for name, src := range map[string]string{"init": initBin, "ipvs.test": testBin} {
		w.file(name, 0o755, src)
	}
	for _, m := range order {
		w.file("modules/"+m+".ko", 0o644, paths[m])
	}
	w.entry("modules/order", modeFile|0o644, 0, 0, []byte(strings.Join(order, "\n")+"\n"))
	w.entry("TRAILER!!!", 0, 0, 0, nil)
	if w.err == nil {
		w.err = w.w.Flush()
	}
	if err := f.Close(); w.err == nil {
		w.err = err
	}
	return w.err
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChar = 0o020000
)

// cpioWriter writes the "newc" format the kernel unpacks: a 110-byte
// ASCII header, the NUL-terminated name, then the data, each padded to 4
// bytes.
type cpioWriter struct {
	w   *bufio.Writer
	ino int
	err error
}

func (c *cpioWriter) file(name string, perm uint32, src string) {
	if c.err != nil {
		return
	}
	b, err := os.ReadFile(src)
	if err != nil {
		c.err = err
		return
	}
	c.entry(name, modeFile|perm, 0, 0, b)
}

func (c *cpioWriter) entry(name string, mode, rmajor, rminor uint32, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad(len(hdr) + len(name) + 1)
	c.write(data)
	c.pad(len(data))
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}
