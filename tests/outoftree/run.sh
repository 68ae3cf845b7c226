#!/usr/bin/env bash
# Proves that a third-party plugin builds outside the tree from nothing but
# an installed ecflow (header + ecflow-plugin.pc), and that it loads and runs.
#
#   tests/outoftree/run.sh BUILD_DIR
#
#  1. installs BUILD_DIR with `cmake --install BUILD_DIR --prefix TMP`
#     (refusing first if any install destination is absolute, i.e. would
#     land outside TMP);
#  2. builds docs/examples/transform-uppercase with its Makefile and with its
#     CMakeLists.txt, PKG_CONFIG_PATH pointing at TMP only, and checks the
#     compiler used TMP's <ecflow/plugin.h>;
#  3. checks `ecflow plugins inspect transform-uppercase --plugin-path DIR`;
#  4. runs source-generate -> transform-uppercase -> sink-file with the
#     installed binary and compares the output with a run without the
#     transform, byte for byte; checks option validation and ack outcomes.
# Exits 0 when all of it holds, 1 with a message naming the failed step
# otherwise. KEEP_TMP=1 keeps the temporary directory for a look.
set -euo pipefail

die() {
    echo "outoftree: FAIL: $*" >&2
    exit 1
}
step() { echo "outoftree: $*"; }

[[ $# -eq 1 ]] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
[[ -f $1/CMakeCache.txt ]] || die "'$1' is not a CMake build directory"
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
example=$src/docs/examples/transform-uppercase
plugin=transform-uppercase
for tool in cmake pkg-config make cc python3; do
    command -v "$tool" >/dev/null || die "'$tool' is not installed"
done
[[ -x $build/ecflow ]] || die "$build/ecflow is missing: build the tree first"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ecflow-outoftree.XXXXXX")
if [[ ${KEEP_TMP:-0} == 1 ]]; then
    trap 'echo "outoftree: kept $tmp"' EXIT
else
    trap 'rm -rf "$tmp"' EXIT
fi
prefix=$tmp/prefix
unset ECFLOW_PLUGIN_PATH ECFLOW_PROFILE

# ------------------------------------------------------------------ 1. install
step "installing $build into $prefix"
# An absolute DESTINATION ignores --prefix and would write into the real
# system (e.g. /usr/local/lib/ecflow/plugins): refuse before installing.
absolute=$(find "$build" -name cmake_install.cmake -exec \
    grep -h -A1 'list(APPEND CMAKE_ABSOLUTE_DESTINATION_FILES' {} + |
    grep -v 'CMAKE_ABSOLUTE_DESTINATION_FILES' | grep -v '^--$' | tr -d ' ")' || true)
if [[ -n $absolute ]]; then
    die "these install destinations are absolute, so 'cmake --install --prefix' cannot move them:
$absolute
install() destinations must be relative to the prefix (e.g. \${CMAKE_INSTALL_LIBDIR}/ecflow/plugins,
not \${CMAKE_INSTALL_FULL_LIBDIR}/...)"
fi
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; die "cmake --install failed"; }
outside=$(grep -v "^$prefix/" "$build/install_manifest.txt" || true)
[[ -z $outside ]] || die "cmake --install wrote outside the prefix:
$outside"

ecflow=$prefix/bin/ecflow
[[ -x $ecflow ]] || die "the install has no bin/ecflow"
[[ -f $prefix/include/ecflow/plugin.h ]] || die "the install has no include/ecflow/plugin.h"
# GNUInstallDirs puts libraries in lib, lib64 or lib/<multiarch>.
pcfile=$(find "$prefix" -path '*/pkgconfig/ecflow-plugin.pc' | head -n1)
[[ -n $pcfile ]] || die "the install has no pkgconfig/ecflow-plugin.pc"
pcdir=$(dirname "$pcfile")
libdir=$(dirname "$pcdir")
installed_plugins=$libdir/ecflow/plugins
[[ -f $installed_plugins/source-generate.so && -f $installed_plugins/sink-file.so ]] ||
    die "source-generate.so / sink-file.so are not in $installed_plugins"
step "pkg-config file: ${pcfile#$prefix/}"

# ------------------------------------------------------------------ 2. build
export PKG_CONFIG_PATH=$pcdir
cflags=$(pkg-config --cflags ecflow-plugin) || die "pkg-config cannot read $pcfile"
incdir=$(pkg-config --variable=includedir ecflow-plugin)
if [[ ! -f $incdir/ecflow/plugin.h || $(realpath "$incdir") != "$(realpath "$prefix/include")" ]]; then
    die "the installed ecflow-plugin.pc points at includedir '$incdir', not at the prefix it was installed to ($prefix/include):
$(cat "$pcfile")
the .pc file must be relocatable, e.g. prefix=\${pcfiledir}/../.. and includedir=\${prefix}/include"
fi
plugindir_var=$(pkg-config --variable=plugindir ecflow-plugin)
[[ $(realpath -m "$plugindir_var") == "$(realpath "$installed_plugins")" ]] ||
    die "ecflow-plugin.pc says plugindir=$plugindir_var, but the plugins were installed in $installed_plugins"

# Which plugin.h does the compiler actually read?
header=$(cc -std=c11 $cflags -M "$example/transform_uppercase.c" | tr ' \\' '\n\n' | grep 'ecflow/plugin\.h$' || true)
[[ $(realpath "$header") == "$(realpath "$prefix/include/ecflow/plugin.h")" ]] ||
    die "the example compiles against '$header', not the installed $prefix/include/ecflow/plugin.h"

step "building $plugin with its Makefile"
mk=$tmp/make-build
make -s -C "$example" BUILD="$mk" CFLAGS="-O2 -g -Wall -Wextra -Werror" >"$tmp/make.log" 2>&1 ||
    { cat "$tmp/make.log" >&2; die "make failed"; }
[[ -f $mk/$plugin.so ]] || die "make did not produce $mk/$plugin.so"
[[ ! -e $example/$plugin.so ]] || die "the Makefile wrote into the source tree ($example/$plugin.so)"

step "building $plugin with its CMakeLists.txt"
cm=$tmp/cmake-build
{ cmake -S "$example" -B "$cm" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="-Werror" &&
    cmake --build "$cm"; } >"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log" >&2; die "the CMake build failed"; }
[[ -f $cm/$plugin.so ]] || die "the CMake build did not produce $cm/$plugin.so"

# ------------------------------------------------------------------ 3. inspect
for dir in "$mk" "$cm"; do
    out=$("$ecflow" plugins inspect "$plugin" --plugin-path "$dir" 2>&1) ||
        die "'ecflow plugins inspect $plugin --plugin-path $dir' failed:
$out"
    for want in "$plugin 1.0.0" "kind:     transform" "file:     $dir/$plugin.so" \
        "ABI:      1." "ports:    default" "field                string, required" \
        "missing              enum pass|drop|fail" "default: pass"; do
        grep -qF -- "$want" <<<"$out" || die "'plugins inspect' output lacks '$want':
$out"
    done
done
list=$("$ecflow" plugins list --plugin-path "$mk" --plugin-path "$installed_plugins" 2>&1)
grep -qE "^$plugin +transform +1\.0\.0 " <<<"$list" || die "'plugins list' does not show $plugin:
$list"
step "plugins inspect/list show it"

# ------------------------------------------------------------------ 4. run
run() { # run PIPELINE.yaml LOG: the installed binary, the example first on the path
    "$ecflow" run "$1" --plugin-path "$mk" --plugin-path "$installed_plugins" 2>"$2"
}
count=5000
gen="{plugin: source-generate, count: $count, seed: 42, start_time: \"2024-01-01T00:00:00Z\"}"

cat >"$tmp/ref.yaml" <<EOF
stages:
  gen: $gen
  out: {plugin: sink-file, inputs: [gen], path: "$tmp/ref.ndjson", append: false}
EOF
cat >"$tmp/upper.yaml" <<EOF
stages:
  gen:   $gen
  upper: {plugin: $plugin, inputs: [gen], field: device}
  out:   {plugin: sink-file, inputs: [upper], path: "$tmp/upper.ndjson", append: false}
EOF
run "$tmp/ref.yaml" "$tmp/ref.log" || { cat "$tmp/ref.log" >&2; die "the reference pipeline failed"; }
run "$tmp/upper.yaml" "$tmp/upper.log" ||
    { cat "$tmp/upper.log" >&2; die "source-generate -> $plugin -> sink-file failed"; }
grep -qF "generated $count events: $count durable, 0 failed, 0 taken by no sink" "$tmp/upper.log" ||
    { cat "$tmp/upper.log" >&2; die "not every event was acknowledged through $plugin"; }

python3 - "$tmp/ref.ndjson" "$tmp/upper.ndjson" "$count" <<'EOF' || die "the transformed output is not what it should be"
import json, sys
ref = open(sys.argv[1], "rb").read().split(b"\n")
out = open(sys.argv[2], "rb").read().split(b"\n")
n = int(sys.argv[3])
assert ref[-1] == b"" and out[-1] == b"", "output does not end with a newline"
ref, out = ref[:-1], out[:-1]
if len(ref) != n or len(out) != n:
    sys.exit(f"expected {n} lines, got {len(ref)} (reference) and {len(out)} (transformed)")
seen = set()
for i, (r, o) in enumerate(zip(ref, out), 1):
    d = json.loads(r)
    v = d["device"]
    want = r.replace(b'"device":"%s"' % v.encode(), b'"device":"%s"' % v.upper().encode(), 1)
    if o != want:
        sys.exit(f"line {i}: expected\n  {want.decode()}\ngot\n  {o.decode()}")
    d["device"] = v.upper()
    if json.loads(o) != d:
        sys.exit(f"line {i}: JSON differs beyond the device field")
    seen.add(d["device"])
if seen != {"MOBILE", "DESKTOP", "TABLET"}:
    sys.exit(f"unexpected device values {sorted(seen)}")
EOF
step "$count events upper-cased exactly, all acknowledged"

# Ack outcomes per event (batch_size 1 gives every event its own token):
# `missing: fail` fails non-search events back to the source, `missing:
# drop` leaves them to nobody; search events carry a query and are durable.
small=600
searches=$(head -n "$small" "$tmp/ref.ndjson" | grep -c '"event_type":"search"' || true)
[[ $searches -gt 0 && $searches -lt $small ]] || die "the reference stream has $searches searches in $small events"
others=$((small - searches))
for mode in fail drop; do
    cat >"$tmp/$mode.yaml" <<EOF
stages:
  gen:   {plugin: source-generate, count: $small, seed: 42, batch_size: 1, start_time: "2024-01-01T00:00:00Z"}
  upper: {plugin: $plugin, inputs: [gen], field: query, missing: $mode}
  out:   {plugin: sink-file, inputs: [upper], path: "$tmp/$mode.ndjson", append: false}
EOF
    run "$tmp/$mode.yaml" "$tmp/$mode.log" || { cat "$tmp/$mode.log" >&2; die "the 'missing: $mode' pipeline failed"; }
    if [[ $mode == fail ]]; then
        want="generated $small events: $searches durable, $others failed, 0 taken by no sink"
    else
        want="generated $small events: $searches durable, 0 failed, $others taken by no sink"
    fi
    grep -qF "$want" "$tmp/$mode.log" || { cat "$tmp/$mode.log" >&2; die "'missing: $mode': expected '$want'"; }
    lines=$(wc -l <"$tmp/$mode.ndjson")
    [[ $lines -eq $searches ]] || die "'missing: $mode': expected $searches lines, got $lines"
    if grep -q '"query":"[^"]*[a-z]' "$tmp/$mode.ndjson"; then
        die "'missing: $mode': a query was not upper-cased"
    fi
done
step "missing: fail / drop settle as failed / dropped ($searches of $small kept)"

# The core validates the example's options from its table.
cat >"$tmp/typo.yaml" <<EOF
stages:
  gen:   {plugin: source-generate, count: 1}
  upper: {plugin: $plugin, inputs: [gen], feild: device, missing: sometimes}
  out:   {plugin: sink-file, inputs: [upper], path: "-"}
EOF
set +e
out=$("$ecflow" validate "$tmp/typo.yaml" --plugin-path "$mk" --plugin-path "$installed_plugins" 2>&1)
code=$?
set -e
[[ $code -eq 2 ]] || die "validate of a bad $plugin stage exited $code, not 2:
$out"
for want in "did you mean 'field'" "option 'missing': expected one of pass|drop|fail" \
    "option 'field': required option is missing"; do
    grep -qF "$want" <<<"$out" || die "validate output lacks \"$want\":
$out"
done
step "option table validated by the core"

echo "outoftree: PASS"
