//go:build tools

// Argo Workflows' executor, argoexec (github.com/argoproj/argo-workflows/v4/cmd/argoexec), pinned
// by this module's go.mod/go.sum to the same release as tools/argo-workflow-controller: the build
// compiles the main package named in ./package (tools/build-go-tools.sh) with the version stamped
// by ./ldflags. rtflow.testing.pod_runner runs its init, wait, emissary and agent commands as
// the containers of the pods the controller creates.
//
// go.sum: `go mod tidy` needs GONOSUMDB=github.com/google/go-containerregistry/pkg/authn/k8schain
// (the checksum database has no record of the pseudo-version upstream's go.mod requires; the
// proxy serves it, and go.sum pins the hash it served).
package tools

import _ "github.com/argoproj/argo-workflows/v4/cmd/argoexec"
