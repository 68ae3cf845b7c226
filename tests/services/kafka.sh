#!/usr/bin/env bash
# tests/services/kafka.sh - run a real Apache Kafka broker (single node, KRaft combined
# mode, PLAINTEXT) on 127.0.0.1 for tests and the quick start. No Docker, no ZooKeeper.
#
#   kafka.sh start  [DIR]   start a broker whose state lives in DIR; when it answers, print
#                           exactly "127.0.0.1:PORT" (the bootstrap address) on stdout.
#                           If DIR already holds a live broker, just print its address.
#   kafka.sh status [DIR]   print the bootstrap address and exit 0 if DIR's broker answers;
#                           exit 1 if no broker runs there, 2 if it runs but does not answer.
#   kafka.sh stop   [DIR]   stop DIR's broker (TERM, then KILL after KAFKA_STOP_TIMEOUT s),
#                           wait until it is gone, delete its data. Logs stay in DIR/logs.
#   kafka.sh pause  [DIR]   an outage: stop DIR's broker process (KAFKA_PAUSE_SIGNAL, default
#                           TERM = clean shutdown; KILL = a crash) and wait until it is gone,
#                           but keep its data, ports and config. Prints nothing on stdout.
#   kafka.sh resume [DIR]   start DIR's paused broker again: same ports, same data, same
#                           cluster; when it answers, print "127.0.0.1:PORT" as start does.
#                           If it is already running, just print its address.
#   kafka.sh fetch          only download the broker jars into the cache.
#
# Only the bootstrap address goes to stdout; every other message goes to stderr, so
#     BOOTSTRAP=$(tests/services/kafka.sh start "$dir")  ...  tests/services/kafka.sh stop "$dir"
# is the whole contract. One broker per DIR; brokers in different DIRs never share ports.
# pause/resume sit inside it: clients keep their bootstrap address across an outage.
#
# DIR (state dir: server.properties, data/, logs/, kafka.pid, bootstrap) defaults to
#     ${KAFKA_STATE_DIR:-${TMPDIR:-/tmp}/ecflow-kafka-$USER} and is created if missing.
# Each start begins from empty data: topics never survive a stop/start (start on a paused
# DIR starts over too); only pause/resume keeps them.
#
# Environment (all optional):
#   KAFKA_VERSION         broker version (default 3.9.1; see tests/services/README.md)
#   ECFLOW_CACHE          cache root (default ~/.cache/ecflow); jars are kept OUTSIDE the
#                         source tree in $ECFLOW_CACHE/kafka-$KAFKA_VERSION/libs
#   KAFKA_STATE_DIR       default DIR (see above)
#   KAFKA_START_TIMEOUT   seconds to wait for the broker to answer (default 90)
#   KAFKA_STOP_TIMEOUT    seconds between TERM and KILL (default 30)
#   KAFKA_PAUSE_SIGNAL    signal pause sends first: TERM (default) or KILL
#   KAFKA_NUM_PARTITIONS  partitions of auto-created topics (default 3)
#   KAFKA_EXTRA_PROPS     extra server.properties lines, appended verbatim (newline separated)
#   KAFKA_HEAP_OPTS       default "-Xms256m -Xmx512m"
#   KAFKA_JVM_OPTS        default "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto"
#
# Missing tools are installed on the fly (CI runs on fresh machines): java via
# `apt-get install default-jre-headless`, maven (only when the jars are not cached yet).
set -euo pipefail

# The caller's stdout is kept on fd 3 for the one line it should get; all chatter -> stderr.
exec 3>&1 1>&2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=${KAFKA_VERSION:-3.9.1}
cache_root=${ECFLOW_CACHE:-${HOME:-/tmp}/.cache/ecflow}
libs=$cache_root/kafka-$KAFKA_VERSION/libs
start_timeout=${KAFKA_START_TIMEOUT:-90}
stop_timeout=${KAFKA_STOP_TIMEOUT:-30}
heap_opts=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
jvm_opts=${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto}

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- tools ----
apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && sudo="sudo -n"; } ||
        die "need root or sudo to apt-get install $*"
    log "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q "$@" >/dev/null 2>&1 ||
        { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q "$@" >/dev/null; } ||
        die "apt-get install $* failed"
}
need_java() { command -v java >/dev/null || apt_install default-jre-headless; }
need_maven() { command -v mvn >/dev/null || apt_install maven; }

# ----------------------------------------------------------------- jars ----
# Idempotent and safe to run concurrently: jars land in a temp dir first and are moved
# into place in one rename; a "complete" marker tells a finished cache from a broken one.
fetch_jars() {
    [ -f "$libs/.complete" ] && return 0
    need_maven
    mkdir -p "$(dirname "$libs")"
    local tmp mvn_log
    tmp=$(mktemp -d "$libs.tmp.XXXXXX")
    mvn_log=$tmp.log
    log "fetching Kafka $KAFKA_VERSION jars into $libs"
    if ! mvn -q -B -Dstyle.color=never -f "$here/kafka/pom.xml" \
            dependency:copy-dependencies -Dkafka.version="$KAFKA_VERSION" \
            -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
        cat "$mvn_log" >&2; rm -rf "$tmp" "$mvn_log"
        die "maven could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
    fi
    rm -f "$mvn_log"
    ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "no kafka jar fetched"; }
    touch "$tmp/.complete"
    if [ -f "$libs/.complete" ]; then
        rm -rf "$tmp"                       # another run won the race
    else
        rm -rf "$libs"; mv "$tmp" "$libs"
    fi
}

# ---------------------------------------------------------------- ports ----
# Prints N distinct free TCP ports on 127.0.0.1, taken at random BELOW the kernel's
# ephemeral range, so outgoing connections never grab them and two concurrent runs
# almost never draw the same one (a bind clash is still caught: start then retries).
free_ports() {
    local n=$1
    if command -v python3 >/dev/null; then
        python3 - "$n" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except Exception:
    lo = 32768
hi = lo - 1 if lo > 12000 else 65535
lo = 10000 if lo > 12000 else 49152
held, ports = [], []
while len(ports) < n:
    p = random.randint(lo, hi)
    if p in ports:
        continue
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close()
        continue
    held.append(s)
    ports.append(p)
print(" ".join(map(str, ports)))
PY
    else
        local ports=() p
        while [ ${#ports[@]} -lt "$n" ]; do
            p=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
            [[ " ${ports[*]-} " == *" $p "* ]] && continue
            (exec 8<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue   # someone listens
            ports+=("$p")
        done
        echo "${ports[*]}"
    fi
}

# ---------------------------------------------------------------- probe ----
# Succeeds when the broker on 127.0.0.1:$1 answers a Metadata request that lists a broker
# on that port (i.e. the broker is registered and unfenced, so clients can use it).
probe() {
    local port=$1
    if command -v python3 >/dev/null; then
        python3 - "$port" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
def s16(b, o): return struct.unpack_from(">h", b, o)[0], o + 2
def s32(b, o): return struct.unpack_from(">i", b, o)[0], o + 4
try:
    c = socket.create_connection(("127.0.0.1", port), timeout=3)
    cid = b"ecflow-probe"
    # Metadata v4 (served by Kafka 2.x .. 4.x): empty topic list, no auto-creation.
    body = struct.pack(">hhih", 3, 4, 7, len(cid)) + cid + struct.pack(">ib", 0, 0)
    c.sendall(struct.pack(">i", len(body)) + body)
    def recv(n):
        b = b""
        while len(b) < n:
            x = c.recv(n - len(b))
            if not x:
                raise EOFError
            b += x
        return b
    size = struct.unpack(">i", recv(4))[0]
    r = recv(size)
    o = 4 + 4                              # correlation id, throttle time
    nb, o = s32(r, o)
    for _ in range(nb):
        _node, o = s32(r, o)
        hl, o = s16(r, o); o += hl
        p, o = s32(r, o)
        rl, o = s16(r, o); o += max(rl, 0)
        if p == port:
            sys.exit(0)
except Exception:
    pass
sys.exit(1)
PY
    elif command -v kcat >/dev/null; then
        kcat -b "127.0.0.1:$port" -L -m 3 2>/dev/null | grep -q ":$port"
    else
        (exec 8<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
            grep -q 'Kafka Server started' "$state/logs/server.log" 2>/dev/null
    fi
}

# ----------------------------------------------------------- state dir -----
state=${2:-${KAFKA_STATE_DIR:-${TMPDIR:-/tmp}/ecflow-kafka-${USER:-$(id -un)}}}
state=$(realpath -m -- "$state")   # absolute: the pid check matches it in the command line

# pid of DIR's broker if it is alive (and really is that broker), else nothing.
broker_pid() {
    local pid
    pid=$(cat "$state/kafka.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $state/server.properties" || return 1
    echo "$pid"
}

lock_state() {
    mkdir -p "$state"
    exec 9>"$state/.lock"
    flock -w 300 9 || die "could not lock $state"
}

write_config() {
    local port=$1 cport=$2
    cat >"$state/server.properties" <<EOF
# Written by tests/services/kafka.sh: single-node KRaft broker for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$state/data
num.partitions=${KAFKA_NUM_PARTITIONS:-3}
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
# 10 instead of 50: the first consumer-group join creates them all
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
    [ -z "${KAFKA_EXTRA_PROPS:-}" ] || printf '%s\n' "$KAFKA_EXTRA_PROPS" >>"$state/server.properties"
    cat >"$state/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$state/logs/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.zookeeper=WARN
EOF
}

java_cmd() {   # java_cmd MAIN ARGS... (no heap options: those differ per tool)
    local main=$1; shift
    # shellcheck disable=SC2086
    java $jvm_opts -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$state/log4j.properties" -Dkafka.logs.dir="$state/logs" \
        -cp "$libs/*" "$main" "$@"
}

# One attempt: fresh data, new ports, format, launch, wait. 0 = ready, 1 = failed,
# 2 = a port was taken under us (worth another try).
start_once() {
    local port cport cluster_id
    read -r port cport < <(free_ports 2)
    rm -rf "$state/data" "$state/logs" "$state/bootstrap" "$state/kafka.pid" "$state/paused"
    mkdir -p "$state/data" "$state/logs"
    write_config "$port" "$cport"

    # A base64url UUID; one starting with '-' would be read as a flag by the
    # storage tool, so the first character is forced to a letter.
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    cluster_id="A${cluster_id:1}"
    java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$state/server.properties" \
        >"$state/logs/format.log" 2>&1 || { cat "$state/logs/format.log" >&2; return 1; }

    launch
    log "broker pid $launched_pid, port $port (controller $cport), state $state"
    wait_answer "$launched_pid" "$port" "$cport"
}

# Runs the broker on DIR's config and data; sets launched_pid and writes kafka.pid.
# Notes where its logs end now: on resume they already hold earlier runs.
launch() {
    log_marks="$(stat -c %s "$state/logs/server.log" 2>/dev/null || echo 0) $(
                 stat -c %s "$state/logs/stdout.log" 2>/dev/null || echo 0)"
    # setsid: the broker outlives the caller's terminal/process group; fds 3 and 9 are
    # closed so `$(kafka.sh start)` returns and the state lock is released.
    # shellcheck disable=SC2086
    setsid java $heap_opts $jvm_opts -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$state/log4j.properties" -Dkafka.logs.dir="$state/logs" \
        -cp "$libs/*" kafka.Kafka "$state/server.properties" \
        </dev/null >>"$state/logs/stdout.log" 2>&1 3>&- 9>&- &
    launched_pid=$!
    echo "$launched_pid" >"$state/kafka.pid"
}

# Waits until the broker (pid $1) answers on port $2. 0 = ready (DIR/bootstrap written),
# 1 = failed (broker stopped), 2 = one of its ports ($2, $3) was taken.
wait_answer() {
    local pid=$1 port=$2 cport=$3 deadline
    deadline=$((SECONDS + start_timeout))
    while [ $SECONDS -lt $deadline ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            if new_log_lines | grep -qE 'BindException|Address already in use'; then
                log "port clash on $port/$cport"
                return 2
            fi
            log "broker exited early; last lines of $state/logs:"
            tail -n 30 "$state/logs/server.log" "$state/logs/stdout.log" >&2 || true
            return 1
        fi
        if probe "$port"; then
            echo "127.0.0.1:$port" >"$state/bootstrap"
            return 0
        fi
        sleep 0.5
    done
    log "broker did not answer within ${start_timeout}s; last lines of $state/logs/server.log:"
    tail -n 30 "$state/logs/server.log" >&2 || true
    stop_pid "$pid"
    return 1
}

# What the broker logged since launch (both logs).
new_log_lines() {
    local server_mark stdout_mark
    read -r server_mark stdout_mark <<<"${log_marks:-}"
    tail -c +"$(( ${server_mark:-0} + 1 ))" "$state/logs/server.log" 2>/dev/null || true
    tail -c +"$(( ${stdout_mark:-0} + 1 ))" "$state/logs/stdout.log" 2>/dev/null || true
}

stop_pid() {
    local pid=$1 sig=${2:-TERM} deadline
    kill -"$sig" "$pid" 2>/dev/null || return 0
    deadline=$((SECONDS + stop_timeout))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        log "broker $pid ignored TERM for ${stop_timeout}s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # It may be our child (start) or not (stop): poll /proc until it is really gone.
    while [ -e "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
}

# ------------------------------------------------------------- commands ----
cmd_start() {
    lock_state
    local pid t0=$SECONDS rc
    if pid=$(broker_pid) && [ -f "$state/bootstrap" ] && probe "$(cut -d: -f2 "$state/bootstrap")"; then
        log "broker already running in $state (pid $pid)"
        cat "$state/bootstrap" >&3
        return 0
    fi
    [ -z "${pid:-}" ] || stop_pid "$pid"     # alive but not answering: start over
    need_java
    fetch_jars
    for _ in 1 2 3; do   # a new try only after a port clash
        rc=0; start_once || rc=$?
        case $rc in
            0) log "ready in $((SECONDS - t0))s"; cat "$state/bootstrap" >&3; return 0 ;;
            2) log "retrying with other ports"; continue ;;
            *) break ;;
        esac
    done
    rm -f "$state/kafka.pid" "$state/bootstrap"
    die "could not start Kafka $KAFKA_VERSION (logs in $state/logs)"
}

cmd_stop() {
    [ -d "$state" ] || { log "nothing to stop: no $state"; return 0; }
    lock_state
    local pid
    if pid=$(broker_pid); then
        log "stopping broker pid $pid"
        stop_pid "$pid"
    else
        log "no broker running in $state"
    fi
    rm -rf "$state/data" "$state/kafka.pid" "$state/bootstrap" "$state/paused"
}

# A port from DIR's server.properties: listener NAME (PLAINTEXT or CONTROLLER).
config_port() {
    sed -n "s/^listeners=.*$1:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p" "$state/server.properties"
}

cmd_pause() {
    [ -d "$state" ] || die "nothing to pause: no $state"
    lock_state
    local pid sig=${KAFKA_PAUSE_SIGNAL:-TERM}
    case $sig in TERM|KILL) ;; *) die "KAFKA_PAUSE_SIGNAL must be TERM or KILL, not '$sig'" ;; esac
    if ! pid=$(broker_pid); then
        [ -f "$state/paused" ] && { log "broker in $state is paused already"; return 0; }
        die "no broker running in $state"
    fi
    log "pausing broker pid $pid (SIG$sig); data, ports and config stay in $state"
    stop_pid "$pid" "$sig"
    rm -f "$state/kafka.pid"
    touch "$state/paused"
}

cmd_resume() {
    [ -d "$state" ] || die "nothing to resume: no $state"
    lock_state
    local pid port cport rc t0=$SECONDS deadline
    if pid=$(broker_pid); then
        port=$(config_port PLAINTEXT)
        if [ -n "$port" ] && probe "$port"; then
            log "broker already running in $state (pid $pid)"
            echo "127.0.0.1:$port" >"$state/bootstrap"
            cat "$state/bootstrap" >&3
            return 0
        fi
        stop_pid "$pid"     # alive but not answering: run it again
    fi
    [ -f "$state/server.properties" ] && [ -f "$state/data/meta.properties" ] ||
        die "nothing to resume in $state: no broker data (start one; stop deletes the data)"
    port=$(config_port PLAINTEXT)
    cport=$(config_port CONTROLLER)
    [ -n "$port" ] && [ -n "$cport" ] || die "no listener ports in $state/server.properties"
    need_java
    fetch_jars
    # The ports are the broker's identity for its clients: wait for them rather than move.
    deadline=$((SECONDS + 30))
    while :; do
        launch
        log "resuming broker: pid $launched_pid, port $port (controller $cport), state $state"
        rc=0; wait_answer "$launched_pid" "$port" "$cport" || rc=$?
        [ $rc -eq 2 ] && [ $SECONDS -lt $deadline ] && { sleep 1; continue; }
        break
    done
    if [ $rc -ne 0 ]; then
        rm -f "$state/kafka.pid"
        [ $rc -eq 2 ] && die "port $port or $cport is taken by another process: cannot resume"
        die "could not resume Kafka in $state (logs in $state/logs)"
    fi
    rm -f "$state/paused"
    log "resumed in $((SECONDS - t0))s"
    cat "$state/bootstrap" >&3
}

cmd_status() {
    local pid
    if ! pid=$(broker_pid); then
        if [ -f "$state/paused" ]; then log "paused ($state): kafka.sh resume brings it back"
        else log "not running ($state)"; fi
        return 1
    fi
    if [ -f "$state/bootstrap" ] && probe "$(cut -d: -f2 "$state/bootstrap")"; then
        cat "$state/bootstrap" >&3
        return 0
    fi
    log "pid $pid is alive but the broker does not answer"
    return 2
}

case ${1:-} in
    start)  cmd_start ;;
    stop)   cmd_stop ;;
    status) cmd_status ;;
    pause)  cmd_pause ;;
    resume) cmd_resume ;;
    fetch)  fetch_jars; log "jars in $libs" ;;
    *)      sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 64 ;;
esac
