#!/usr/bin/env bash
# Build rtflow's pinned Go tools into <repo>/.tools/bin, where rtflow.verify finds them:
#
#   argo-lint         `argo lint --offline` of Argo Workflows   (tools/argo-lint, a tiny main over
#                     the CLI's own lint package: cmd/argo cannot be `go install`ed since v3.7)
#   argo-events-lint  `argo-events lint` of Argo Events, plus EventBus validation
#                     (tools/argo-events-lint, a tiny main over the upstream lint command)
#   kustomize         the kustomize CLI (tools/kustomize, upstream's main over the CLI's own
#                     command constructor, sigs.k8s.io/kustomize/kustomize/v5/commands)
#   kube-score        zegl/kube-score, the Kubernetes object scorer the security tests run on
#                     every built overlay (tools/kube-score: upstream's main package, named in
#                     tools/kube-score/package, built from the pinned module)
#   etcd              etcd's server (tools/etcd, a tiny main over etcdmain: the root module's
#                     replace directives keep `go install` from building it)
#   kube-apiserver    the Kubernetes API server (tools/kube-apiserver: upstream's main package
#                     from k8s.io/kubernetes, its staging modules replaced by their releases,
#                     the version stamped by tools/kube-apiserver/ldflags); with etcd, the
#                     real control plane of rtflow.testing.control_plane
#   argo-workflow-controller
#                     Argo Workflows' workflow-controller (tools/argo-workflow-controller:
#                     upstream's cmd/workflow-controller, named in its `package` file, from the
#                     same v4.1.4 release as argo-lint); the execution tier runs it in a network
#                     namespace of its own (rtflow.testing.workflow_controller)
#   argoexec          Argo Workflows' executor (tools/argoexec: upstream's cmd/argoexec, same
#                     release): the init, wait, emissary and agent commands of the workflow
#                     pods, which rtflow.testing.pod_runner runs as processes
#   argo-events       Argo Events' single binary (tools/argo-events: upstream's cmd, v1.9.11 as
#                     argo-events-lint, same go.sum): its controller, eventsource-service and
#                     sensor-service run in the events tier's pods (rtflow.testing.events)
#   nats-server       NATS with JetStream (tools/nats-server: v2.10.29, the release Argo Events
#                     runs for a JetStream EventBus): the events tier's EventBus
#   kube-controller-manager
#                     (tools/kube-controller-manager: kube-apiserver's pins, its main package);
#                     the events tier runs its deployment and replicaset controllers
#
# Usage: tools/build-go-tools.sh [--force] [TOOL...]   (no TOOL: all of them)
#
# Each tool is its own Go module whose go.mod/go.sum pin the upstream release, so every binary
# is built from exactly the dependency versions upstream ships. Modules come from the Go module
# proxy into the normal module cache (GOMODCACHE, default $GOPATH/pkg/mod); nothing else is
# downloaded. (`go install pkg@version` is not used: it needs the proxy's version lists.)
#
# Idempotent: a binary that exists and is newer than every file of its tool folder (go.mod,
# go.sum, main.go) is kept; `--force` rebuilds anyway. A build goes to a scratch file that is
# moved in whole, so an interrupted build never leaves a binary that looks current.
# Cost: a cold build (empty module and build caches) takes a few minutes on 2 cores; with a warm
# Go build cache (a fresh clone on a machine that built before) only the links run: seconds.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
bin_dir="$root/.tools/bin"
all_tools=(argo-lint argo-events-lint kustomize kube-score etcd kube-apiserver argo-workflow-controller argoexec argo-events nats-server kube-controller-manager)
force=0
tools=()

for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h | --help)
            sed -n '2,44p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "build-go-tools: unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
        *)
            if [[ ! -f "$here/$arg/go.mod" ]]; then
                echo "build-go-tools: unknown tool: $arg (one of: ${all_tools[*]})" >&2
                exit 2
            fi
            tools+=("$arg")
            ;;
    esac
done
if [[ ${#tools[@]} -eq 0 ]]; then
    tools=("${all_tools[@]}")
fi

# A brand-new machine has Go installed but not necessarily on PATH.
if ! command -v go >/dev/null 2>&1; then
    if [[ -x /usr/local/go/bin/go ]]; then
        export PATH="$PATH:/usr/local/go/bin"
    else
        echo "build-go-tools: go not found on PATH nor at /usr/local/go/bin/go" >&2
        exit 1
    fi
fi

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The command that makes a built tool say which upstream release it is.
version_of() {
    case "$1" in
        kustomize | kube-score | argo-workflow-controller | argoexec) "$2" version ;;
        # argo-events has no version command: the module version its build records
        argo-events) go version -m "$2" | awk '$2 == "github.com/argoproj/argo-events" { print $2, $3 }' ;;
        *) "$2" --version ;;
    esac
}

# build NAME: tools/NAME -> .tools/bin/NAME
build() {
    local name="$1"
    local src="$here/$name"
    local out="$bin_dir/$name"
    local start
    start="$(now)"

    if [[ "$force" == 0 && -x "$out" && -z "$(find "$src" -type f -newer "$out" -print -quit)" ]]; then
        echo "$name: up to date in $out ($(since "$start") s)"
        return 0
    fi

    mkdir -p "$bin_dir"
    local scratch
    scratch="$(mktemp "$bin_dir/.$name.XXXXXX")"
    # -trimpath: no local paths in the binary; CGO_ENABLED=0: no C toolchain needed, static
    # binary; -s -w: no symbol table or DWARF (a third smaller, a faster link; panics still
    # name their functions). -mod=readonly: go.mod/go.sum are the pins, never rewritten here.
    # A tool folder's `package` file names an upstream main package to build instead of ".".
    # A tool folder's `ldflags` file adds linker flags (a version stamp, -X ...).
    local target="."
    if [[ -f "$src/package" ]]; then
        target="$(cat "$src/package")"
    fi
    local ldflags="-s -w"
    if [[ -f "$src/ldflags" ]]; then
        ldflags="$ldflags $(cat "$src/ldflags")"
    fi
    # A tool folder's `symlinks` file restores upstream symlinks that module zips leave out
    # (lines "MODULE@VERSION LINK TARGET"). Go refuses to overlay files of the module cache,
    # so such a tool builds from a vendored copy of its module in a scratch folder, where
    # LINK is written as a copy of TARGET.
    local build_dir="$src" mod_flag="-mod=readonly"
    if [[ -f "$src/symlinks" ]]; then
        build_dir="$(mktemp -d "$bin_dir/.$name.src.XXXXXX")"
        cp -R "$src/." "$build_dir/"
        (cd "$build_dir" && go mod vendor)
        local module link link_target
        while read -r module link link_target; do
            [[ -z "$module" || "$module" == \#* ]] && continue
            cp "$build_dir/vendor/${module%@*}/$link_target" "$build_dir/vendor/${module%@*}/$link"
        done <"$src/symlinks"
        mod_flag="-mod=vendor"
    fi
    if ! (cd "$build_dir" && CGO_ENABLED=0 go build "$mod_flag" -trimpath -buildvcs=false \
        -ldflags="$ldflags" -o "$scratch" "$target"); then
        rm -f "$scratch"
        [[ "$build_dir" == "$src" ]] || rm -rf "$build_dir"
        echo "$name: build failed after $(since "$start") s" >&2
        return 1
    fi
    [[ "$build_dir" == "$src" ]] || rm -rf "$build_dir"
    mv -f "$scratch" "$out"
    echo "$name: built $out in $(since "$start") s ($(version_of "$name" "$out"))"
}

total="$(now)"
echo "build-go-tools: $(go version), GOMODCACHE=$(go env GOMODCACHE), GOCACHE=$(go env GOCACHE)"
for tool in "${tools[@]}"; do
    build "$tool"
done
echo "build-go-tools: done in $(since "$total") s"
