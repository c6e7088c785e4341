// Command etcd is the etcd server built from the go.etcd.io/etcd/server/v3 module, the storage of the
// kube-apiserver the Kubernetes tests start.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
