// Command kube-proxy builds the upstream kube-proxy from the Go module
// proxy, the way hack/tools/kube-apiserver builds the API server, so
// `make bench-dataplane` can measure kube-proxy's nftables mode beside
// IronLB's in the same lab and the same run.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
