// Package e2e runs Weft's Kubernetes walkthrough (docs/kubernetes.md) on a
// real single-node cluster started by test/kube/cluster: weft check --pre,
// install, check, the demo injected, a TrafficSplit and an HTTPRoute applied
// with kubectl and measured, an AuthorizationPolicy denying one caller, a pod
// deleted under load, and uninstall leaving the cluster clean.
//
// It skips unless the cluster's binaries are built (test/kube/build.sh, run
// by scripts/test.sh) and the machine can run them (root, containerd).
package e2e
