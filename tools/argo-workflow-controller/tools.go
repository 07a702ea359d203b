//go:build tools

// Argo Workflows' workflow-controller (github.com/argoproj/argo-workflows/v4/cmd/workflow-controller),
// pinned by this module's go.mod/go.sum to the same release as tools/argo-lint: the build compiles
// the main package named in ./package (tools/build-go-tools.sh). The controller of
// rtflow.testing.workflow_controller, run in a network namespace of its own.
//
// go.sum: `go mod tidy` needs GONOSUMDB=github.com/google/go-containerregistry/pkg/authn/k8schain
// (the checksum database has no record of the pseudo-version upstream's go.mod requires; the
// proxy serves it, and go.sum pins the hash it served).
package tools

import _ "github.com/argoproj/argo-workflows/v4/cmd/workflow-controller"
