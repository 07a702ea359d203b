// Command kustomize is the kustomize CLI of sigs.k8s.io/kustomize/kustomize/v5, built from the
// release pinned in go.mod (and its go.sum) rather than downloaded as a prebuilt binary.
//
// It is upstream's own main: the root command comes from the CLI's command constructor
// (commands.NewDefaultCommand), so `kustomize build`, its flags, output and exit codes are
// exactly those of the pinned release. rtflow.verify.kustomize runs `kustomize build`.
package main

import (
	"os"

	"sigs.k8s.io/kustomize/kustomize/v5/commands"
)

func main() {
	if err := commands.NewDefaultCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
