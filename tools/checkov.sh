#!/usr/bin/env bash
# Checkov (Bridgecrew's policy scanner, from PyPI) in a venv of its own under .tools/, for the
# security tests that scan every built overlay: its many pinned dependencies stay out of
# rtflow's environment. Idempotent: a venv that already has this version is kept.
#
# Usage: tools/checkov.sh   (then .tools/checkov-venv/bin/checkov)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../.tools/checkov-venv"
version="3.3.30"
if [[ -x "$venv/bin/checkov" ]] && [[ "$("$venv/bin/pip" show checkov 2>/dev/null | sed -n "s/^Version: //p")" == "$version" ]]; then
    echo "checkov: $version up to date in $venv"
    exit 0
fi
start=$(date +%s)
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$version"
echo "checkov: $version installed in $venv in $(( $(date +%s) - start )) s"
