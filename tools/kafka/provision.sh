#!/usr/bin/env bash
# Resolve a single-node Apache Kafka broker (the jars pinned in pom.xml) into .tools/kafka/lib,
# where rtflow.testing.kafka_broker looks for them. Needs java 17+ and mvn on PATH, and Maven
# Central (nothing else is downloaded). Idempotent: a stamp holding pom.xml's hash makes a second
# run a no-op, and a changed pom re-resolves. The jars land in a scratch folder first and are
# moved in whole, so an interrupted run never leaves a half-filled lib that looks provisioned.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lib="${RTFLOW_KAFKA_LIB:-$root/.tools/kafka/lib}"
stamp="$lib/.provisioned"
want="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"
start=$(date +%s.%N)

elapsed() { awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "kafka: jars already in $lib ($(elapsed) s)"
    exit 0
fi

command -v mvn >/dev/null || { echo "kafka: mvn not found on PATH" >&2; exit 1; }

mkdir -p "$(dirname "$lib")"
scratch="$(mktemp -d "$(dirname "$lib")/.lib.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
chmod 755 "$scratch"

# Output is kept only for a failure: Maven 3.8's -q still prints stray colour resets.
if ! out="$(mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$scratch" 2>&1)"; then
    echo "$out" >&2
    echo "kafka: resolving the jars failed after $(elapsed) s" >&2
    exit 1
fi
echo "$want" >"$scratch/.provisioned"

rm -rf "$lib"
mv "$scratch" "$lib"
echo "kafka: $(find "$lib" -name '*.jar' | wc -l) jars in $lib ($(elapsed) s)"
