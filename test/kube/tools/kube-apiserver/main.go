// Command kube-apiserver is the Kubernetes API server built from the k8s.io/kubernetes module, for
// the tests that run Weft's Kubernetes configuration source against a real API server.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
