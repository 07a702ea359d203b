//go:build tools

// kube-controller-manager (k8s.io/kubernetes/cmd/kube-controller-manager), pinned by this module's go.mod/go.sum:
// the build compiles the main package named in ./package (tools/build-go-tools.sh) with the
// version stamped by ./ldflags. k8s.io/kubernetes is not meant to be required as a module: its
// staging modules (k8s.io/api, client-go, ...) are replaced by their published releases of
// the same Kubernetes version, as its own go.mod replaces them by its staging folders.
package tools

import _ "k8s.io/kubernetes/cmd/kube-controller-manager"
