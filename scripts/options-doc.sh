#!/usr/bin/env bash
# options-doc.sh BUILD_DIR [--check]
# docs/options.md, the options reference of the shipped plugins, is what
# `ecflow plugins inspect --format markdown` prints for BUILD_DIR's plugins.
# Without --check this rewrites it (commit the result); with --check (the
# ctest cli/options-doc) it fails when the committed file differs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: options-doc.sh BUILD_DIR [--check]}" && pwd)
fresh="$build/options.md"
# Only the shipped plugins: not ECFLOW_PLUGIN_PATH (the tests put their
# fixture plugins on it), and the build's plugins ahead of any installed ones.
env -u ECFLOW_PLUGIN_PATH "$build/ecflow" plugins inspect --format markdown \
  --plugin-path "$build/plugins" >"$fresh"
if [ "${2:-}" = --check ]; then
  if ! cmp -s "$fresh" "$root/docs/options.md"; then
    diff -u "$root/docs/options.md" "$fresh" | head -60 >&2 || true
    echo "docs/options.md is stale: run 'bash scripts/options-doc.sh $1' and commit docs/options.md" >&2
    exit 1
  fi
  echo "docs/options.md is what $build/ecflow prints"
else
  cp "$fresh" "$root/docs/options.md"
  echo "wrote docs/options.md from $build"
fi
