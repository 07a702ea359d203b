//go:build tools

// Argo Events' single binary (github.com/argoproj/argo-events/cmd: the controller,
// eventsource-service, sensor-service, webhook and lint subcommands), pinned by this module's
// go.mod/go.sum to v1.9.11, the release tools/argo-events-lint validates against (same go.sum):
// the build compiles the main package named in ./package (tools/build-go-tools.sh) with the
// version stamped by ./ldflags. The events tier (rtflow.testing.events) runs its controller as a
// process and its eventsource and sensor services as the containers of the Deployments' pods.
package tools

import _ "github.com/argoproj/argo-events/cmd"
