// Command lab starts and stops IronLB's local demo: etcd, a real
// kube-apiserver and the controller as background processes, with an
// example pool and LoadBalancer Service.
//
//	lab up     start (or, when already up, show how to use it)
//	lab down   stop every process and remove the state directory
//
// The state directory is /tmp/ironlb-lab unless IRONLB_LAB_DIR says
// otherwise; the controller is bin/controller unless IRONLB_CONTROLLER names
// another binary. Run it from the repository root (make demo does).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ironlb/ironlb/e2etest/lab"
)

// The controller's listen addresses, fixed so the printed URL stays valid.
const (
	metricsAddr = "127.0.0.1:17472"
	healthAddr  = "127.0.0.1:18081"
)

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: lab up|down")
		os.Exit(2)
	}
	// The lab uses controller-runtime's client, which warns with a stack
	// trace when no logger is set; its logs are not wanted here.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dir := lab.DirFromEnv()
	var err error
	if os.Args[1] == "up" {
		err = up(ctx, dir)
	} else {
		err = lab.Down(dir)
		if err == nil {
			fmt.Printf("lab in %s stopped\n", dir)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func up(ctx context.Context, dir string) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("run from the repository root (no go.mod in %s)", root)
	}
	examples, err := filepath.Glob(filepath.Join(root, "e2etest", "testdata", "demo", "*.yaml"))
	if err != nil {
		return err
	}
	ctrl := os.Getenv("IRONLB_CONTROLLER")
	if ctrl == "" {
		ctrl = filepath.Join(root, "bin", "controller")
	}
	l, err := lab.Up(ctx, lab.UpConfig{
		Config: lab.Config{
			Dir:  dir,
			Root: root,
			Log:  os.Stdout,
		},
		Controller:  ctrl,
		MetricsAddr: metricsAddr,
		HealthAddr:  healthAddr,
		Examples:    examples,
	})
	switch {
	case errors.Is(err, lab.ErrAlreadyUp):
		fmt.Printf("the lab is already up in %s\n", dir)
	case err != nil:
		// Leave nothing half-started behind.
		if downErr := lab.Down(dir); downErr != nil {
			err = errors.Join(err, downErr)
		}
		return err
	}
	fmt.Println()
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", l.Kubeconfig, "get", "svc,ipaddresspools", "-A")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	fmt.Println("$ kubectl get svc,ipaddresspools -A")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("running kubectl: %w", err)
	}
	logOf := func(name string) string {
		if p := l.Process(name); p != nil {
			return p.Log
		}
		return "(not running)"
	}
	fmt.Printf(`
The lab runs in the background (state in %s).

Explore it:
  export KUBECONFIG=%s
  kubectl get svc -A
  kubectl get ipaddresspools -n %s -o yaml
  kubectl get events -n demo
  kubectl apply -f e2etest/testdata/demo/

Controller log:  %s
Metrics:         %s
API server log:  %s

Stop it:
  make demo-down
`, l.Dir, l.Kubeconfig, lab.Namespace, logOf("controller"), l.Extra[lab.ExtraMetricsURL], logOf("kube-apiserver"))
	return nil
}
