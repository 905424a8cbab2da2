#!/usr/bin/env bash
# Datasette (issue 11): every canned query of contrib/datasette/metadata.yml answers on the
# demo database with rows that match what the entra-sync CLI says. Installs Datasette with pip
# (pinned; skipped when that version is present).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

DATASETTE_VERSION=0.65.5
if [ "$(datasette --version 2>/dev/null)" != "datasette, version $DATASETTE_VERSION" ]; then
  python3 -m pip install -q --disable-pip-version-check "datasette==$DATASETTE_VERSION"
fi

cargo build -q --example demo --bin entra-sync
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && "$root/target/debug/examples/demo" >demo.log 2>&1) || { cat "$work/demo.log"; exit 1; }
python3 .ci/datasette_check.py "$work/demo" "$root/target/debug/entra-sync" contrib/datasette/metadata.yml
