#!/usr/bin/env bash
# Build the real Argo linters into <repo>/.tools/bin, where rtflow.verify.argo_linters finds them:
#
#   argo-lint         `argo lint --offline` of Argo Workflows   (tools/argo-lint)
#   argo-events-lint  `argo-events lint` of Argo Events, plus EventBus validation
#                     (tools/argo-events-lint)
#
# Usage: tools/install-argo-linters.sh [--force]
#
# The builder is tools/build-go-tools.sh, shared with the other pinned Go tools (kustomize): each
# tool is its own Go module whose go.mod/go.sum pin the upstream release, built from the Go
# module proxy, idempotent (a binary newer than its tool folder is kept; --force rebuilds). This
# script builds the two linters only; tools/provision.sh builds every tool.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

for arg in "$@"; do
    case "$arg" in
        --force) ;;
        -h | --help)
            sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "install-argo-linters: unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

exec bash "$here/build-go-tools.sh" "$@" argo-lint argo-events-lint
