//go:build tools

// NATS server (github.com/nats-io/nats-server/v2, its main package), pinned by this module's
// go.mod/go.sum to v2.10.29: the NATS release Argo Events v1.9.11 runs for a JetStream EventBus
// (natsImage nats:2.10.29 in its controller-config). The build compiles the main package named
// in ./package (tools/build-go-tools.sh) as a static binary. The events tier
// (rtflow.testing.events) runs it with JetStream on 127.0.0.1 inside its network namespace, the
// EventBus its EventSources and Sensors publish to and read from (jetstreamExotic).
package tools

import _ "github.com/nats-io/nats-server/v2"
