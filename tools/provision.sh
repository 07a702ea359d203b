#!/usr/bin/env bash
# Provision the real components the tests use: the Kafka broker's jars (Maven Central), the Argo
# linters and kustomize (built from pinned Go modules, tools/build-go-tools.sh) and Argo CD's
# Application/ApplicationSet schemas (from the pinned Argo CD Go module, tools/argocd_schemas.py)
# and the Argo Workflows / Argo Events JSON schemas (from their Go modules, tools/argo_schemas.py),
# all through the Go module proxy. Python packages, Triton's wheel among them, come from
# `pip install -e '.[test]'`. Idempotent and quick when already done.
#
# On a laptop without java/mvn or go the part that needs them is skipped with a message, and the
# tests that need it skip with the reason. Under CI=true a missing toolchain is an error.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ci=false
case "${CI:-}" in 1|true|TRUE|yes) ci=true ;; esac

missing() {
    if $ci; then
        echo "provision: $1 (CI=true: every component is required)" >&2
        exit 1
    fi
    echo "provision: skipping $2: $1; the tests that need it will skip" >&2
}

if command -v java >/dev/null && command -v mvn >/dev/null; then
    bash "$here/kafka/provision.sh"
else
    missing "java and mvn are needed for the Kafka broker" "Kafka"
fi

if command -v go >/dev/null || [ -x /usr/local/go/bin/go ]; then
    PATH="$PATH:/usr/local/go/bin" bash "$here/build-go-tools.sh"
    # PyYAML comes with rtflow: run after `pip install -e '.[test]'`, in its environment.
    PATH="$PATH:/usr/local/go/bin" "${PYTHON:-python3}" "$here/argocd_schemas.py"
    PATH="$PATH:/usr/local/go/bin" "${PYTHON:-python3}" "$here/argo_schemas.py"
else
    missing "go is needed to build the Argo linters and kustomize and to fetch Argo CD's schemas" \
        "the Argo linters, kustomize and the Argo CD schemas"
fi
