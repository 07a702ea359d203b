//go:build tools

// kube-score (github.com/zegl/kube-score), pinned by this module's go.mod/go.sum: the build
// compiles its main package named in ./package (tools/build-go-tools.sh). This file only keeps
// the requirement in go.mod.
package tools

import _ "github.com/zegl/kube-score/cmd/kube-score"
