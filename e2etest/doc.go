// Package e2etest runs IronLB's real binaries against a real kube-apiserver
// and etcd: the lab's own test, and the controller's scale benchmark.
// The lab that starts those processes is in e2etest/lab; the demo's command
// is e2etest/cmd/lab.
package e2etest
