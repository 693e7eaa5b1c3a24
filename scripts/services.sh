#!/usr/bin/env bash
# Local backing services for Mega's integration tests: PostgreSQL, Redis,
# NATS (JetStream) and FerretDB (MongoDB wire protocol), all on 127.0.0.1;
# MariaDB, Prometheus and Jaeger come from scripts/services.d/.
#
# Usage: scripts/services.sh up|down|status|env|restart [service...]
#   services: postgres redis nats mongo, plus those in scripts/services.d/
#             (default: all)
#
#   up       install missing packages, start what is not already answering
#   down     stop what `up` started (quiet if nothing runs)
#   restart  down + up (integration tests use it to bounce Redis/NATS)
#   status   one line per service; exit 1 if any is down
#   env      DATABASE_URL/REDIS_URL/NATS_URL/MONGO_URL lines;
#            use `set -a; eval "$(scripts/services.sh env)"; set +a`
#
# Environment:
#   MEGA_SERVICES_DIR      state, data, logs, pid files (default /tmp/mega-services)
#   MEGA_SERVICES_CACHE    build cache for the FerretDB binary
#                          (default $HOME/.cache/mega-services; kept out of the repo)
#   MEGA_PG_PORT MEGA_REDIS_PORT MEGA_NATS_PORT MEGA_NATS_MONITOR_PORT MEGA_MONGO_PORT
#   MEGA_SERVICES_TIMEOUT  readiness timeout per service in seconds (default 60)
#   MEGA_FERRETDB_VERSION  FerretDB version(s) to try building, in order
#
# Every service is our own instance (own data dir, own non-default port), never
# the distribution's system service, so it behaves the same on a fresh machine,
# on one where the system services already run, and in CI.
set -euo pipefail

STATE_DIR=${MEGA_SERVICES_DIR:-/tmp/mega-services}
CACHE_DIR=${MEGA_SERVICES_CACHE:-${HOME:-/root}/.cache/mega-services}
HOST=127.0.0.1
PG_PORT=${MEGA_PG_PORT:-55432}
REDIS_PORT=${MEGA_REDIS_PORT:-56379}
NATS_PORT=${MEGA_NATS_PORT:-54222}
NATS_MON_PORT=${MEGA_NATS_MONITOR_PORT:-58222}
MONGO_PORT=${MEGA_MONGO_PORT:-57017}
TIMEOUT=${MEGA_SERVICES_TIMEOUT:-60}
# v1.24.1 is the wanted version, but the Go proxy serves it only in part (its
# .info is 403, the checksum database has no entry), so it cannot be verified;
# v1.24.0 (same flags) is the fallback that builds.
FERRETDB_VERSIONS=${MEGA_FERRETDB_VERSION:-"v1.24.1 v1.24.0"}

# Fixed local test credentials (loopback only, not a secret).
PG_USER=mega PG_PASSWORD=mega PG_DB=mega

DATABASE_URL="postgres://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/$PG_DB"
REDIS_URL="redis://$HOST:$REDIS_PORT"
NATS_URL="nats://$HOST:$NATS_PORT"
MONGO_URL="mongodb://$HOST:$MONGO_PORT/mega"

LOG_DIR=$STATE_DIR/logs
RUN_DIR=$STATE_DIR/run
PG_ROOT=$STATE_DIR/postgres
PG_DATA=$PG_ROOT/data
PG_SOCK=$PG_ROOT/run
PG_LOG=$LOG_DIR/postgres.log
REDIS_LOG=$LOG_DIR/redis.log
NATS_LOG=$LOG_DIR/nats.log
MONGO_LOG=$LOG_DIR/ferretdb.log
FERRETDB_BIN=$CACHE_DIR/bin/ferretdb

ALL_SERVICES=(postgres redis nats mongo)

say() { printf '==> %s\n' "$*"; }
warn() { printf 'services.sh: warning: %s\n' "$*" >&2; }

# fail SERVICE MESSAGE [LOGFILE]: name the service and its log, show the log's tail.
fail() {
  local svc=$1 msg=$2 log=${3:-}
  printf 'services.sh: error: %s: %s\n' "$svc" "$msg" >&2
  if [[ -n $log ]]; then
    printf '  log: %s\n' "$log" >&2
    if [[ -s $log ]]; then
      printf -- '  --- last lines of %s ---\n' "$log" >&2
      tail -n 20 "$log" | sed 's/^/  | /' >&2
    fi
  fi
  exit 1
}

# ---------------------------------------------------------------- helpers ---

is_root() { [[ $(id -u) -eq 0 ]]; }

# A process that exists and is not a zombie: our daemons are reparented to
# PID 1, which may reap them late, and kill -0 succeeds on a zombie.
proc_running() {
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
tcp_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# port_free SERVICE PORT VAR: fail fast (not after the readiness timeout) when
# something else, which did not pass the service's own probe, holds the port.
port_free() {
  if tcp_open "$2"; then
    fail "$1" "port $HOST:$2 is taken by a process that is not a usable $1; stop it or set $3"
  fi
}

# pid_alive PIDFILE NAME: the pid file's process exists and is NAME (guards
# against pid reuse after a reboot or crash).
pid_alive() {
  local pidfile=$1 name=$2 pid cmd
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  proc_running "$pid" || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$name"* ]]
}

# stop_pidfile SERVICE PIDFILE NAME: TERM, wait, then KILL; quiet if not running.
stop_pidfile() {
  local svc=$1 pidfile=$2 name=$3 pid i
  if ! pid_alive "$pidfile" "$name"; then
    rm -f "$pidfile"
    say "$svc: not running"
    return 0
  fi
  pid=$(<"$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    proc_running "$pid" || break
    sleep 0.1
  done
  if proc_running "$pid"; then
    warn "$svc (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$pidfile"
  say "$svc: stopped (pid $pid)"
}

# wait_ready SERVICE LOGFILE PID PROBE...: poll PROBE until it succeeds; fail
# early if PID (when given) dies, fail after $TIMEOUT seconds.
wait_ready() {
  local svc=$1 log=$2 pid=$3
  shift 3
  local deadline=$((SECONDS + TIMEOUT))
  until "$@"; do
    if [[ -n $pid ]] && ! proc_running "$pid"; then
      fail "$svc" "process exited during startup ($(svc_url "$svc"))" "$log"
    fi
    if ((SECONDS >= deadline)); then
      fail "$svc" "not ready on $(svc_url "$svc") after ${TIMEOUT}s (MEGA_SERVICES_TIMEOUT)" "$log"
    fi
    sleep 0.3
  done
}

# Start a foreground-only daemon detached: own session (a Ctrl-C or a test
# runner killing its process group must not take the service down), no
# inherited stdio (callers using $(...) would otherwise hang) and fd 9 closed
# (it holds our lock). Prints the pid; setsid execs in place, so $! is the daemon.
spawn() {
  local log=$1
  shift
  printf '=== %s services.sh: starting %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"
  setsid "$@" </dev/null >>"$log" 2>&1 9>&- &
  echo $!
}

# ---------------------------------------------------------------- install ---

APT_UPDATED=0
# ensure_pkgs SERVICE PKG...: install Debian packages that are missing;
# `apt-get update` runs only when something must be installed, once per run.
ensure_pkgs() {
  local svc=$1 missing=() p sudo=()
  shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || fail "$svc" "missing packages (${missing[*]}) and no apt-get; install them by hand"
  if ! is_root; then
    sudo -n true 2>/dev/null || fail "$svc" "missing packages (${missing[*]}); run as root or install them: sudo apt-get install ${missing[*]}"
    sudo=(sudo -n)
  fi
  local alog=$LOG_DIR/apt.log
  say "$svc: installing ${missing[*]} (log: $alog)"
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300)
  if ((APT_UPDATED == 0)); then
    "${apt[@]}" update >>"$alog" 2>&1 9>&- || fail "$svc" "apt-get update failed" "$alog"
    APT_UPDATED=1
  fi
  "${apt[@]}" install --no-install-recommends "${missing[@]}" >>"$alog" 2>&1 9>&- ||
    fail "$svc" "apt-get install ${missing[*]} failed" "$alog"
}

# -------------------------------------------------------------- postgres ---

PG_BIN=
# Pick the server binaries: the version the data dir was made with if one
# exists (a cluster only runs with its own major version), else the newest.
pg_resolve_bin() {
  local d v
  if [[ -s $PG_DATA/PG_VERSION ]]; then
    v=$(<"$PG_DATA/PG_VERSION")
    [[ -x /usr/lib/postgresql/$v/bin/initdb ]] && { PG_BIN=/usr/lib/postgresql/$v/bin; return 0; }
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
    [[ -x $d/initdb && -x $d/pg_ctl ]] && { PG_BIN=$d; return 0; }
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    PG_BIN=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
    return 0
  fi
  return 1
}

# Run as the postgres user when we are root: initdb and postgres refuse root.
as_pg() {
  if is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

pg_client() { # psql/pg_isready from the server's bin dir if known, else PATH
  local tool=$1
  shift
  if [[ -n $PG_BIN && -x $PG_BIN/$tool ]]; then "$PG_BIN/$tool" "$@"; else "$tool" "$@"; fi
}

pg_ready() {
  if [[ -n $PG_BIN ]] || command -v pg_isready >/dev/null; then
    pg_client pg_isready -q -h "$HOST" -p "$PG_PORT" -t 2 2>/dev/null
  else
    tcp_open "$PG_PORT"
  fi
}

pg_login_ok() { # the app's own credentials work over TCP
  PGCONNECT_TIMEOUT=3 pg_client psql "$DATABASE_URL" -tAqc 'select 1' >/dev/null 2>&1
}

pg_ours_running() {
  [[ -s $PG_DATA/postmaster.pid ]] && proc_running "$(head -n1 "$PG_DATA/postmaster.pid")"
}

# Create role and database if missing, via the cluster's own Unix socket as
# superuser (local auth is trust), and (re)set the fixed password.
pg_bootstrap() {
  local psql=(as_pg "$PG_BIN/psql" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
  if [[ $("${psql[@]}" -c "select 1 from pg_roles where rolname = '$PG_USER'") != 1 ]]; then
    "${psql[@]}" -c "create role $PG_USER login createdb" >>"$PG_LOG" 2>&1 || fail postgres "create role failed" "$PG_LOG"
  fi
  "${psql[@]}" -c "alter role $PG_USER password '$PG_PASSWORD'" >>"$PG_LOG" 2>&1 || fail postgres "alter role failed" "$PG_LOG"
  if [[ $("${psql[@]}" -c "select 1 from pg_database where datname = '$PG_DB'") != 1 ]]; then
    "${psql[@]}" -c "create database $PG_DB owner $PG_USER" >>"$PG_LOG" 2>&1 || fail postgres "create database failed" "$PG_LOG"
  fi
}

postgres_up() {
  pg_resolve_bin || true
  if pg_ready; then
    if pg_login_ok; then
      say "postgres: already running on $DATABASE_URL"
      return 0
    fi
    if [[ -n $PG_BIN ]] && pg_ours_running; then
      pg_bootstrap
      pg_login_ok || fail postgres "running, but login as $PG_USER fails" "$PG_LOG"
      say "postgres: already running on $DATABASE_URL (role/db ensured)"
      return 0
    fi
    fail postgres "port $PG_PORT answers but is not our cluster and $PG_USER/$PG_PASSWORD login fails; stop it or set MEGA_PG_PORT" "$PG_LOG"
  fi

  # Binaries count, not package names: also works with a non-Debian install.
  [[ -n $PG_BIN ]] || ensure_pkgs postgres postgresql
  pg_resolve_bin || fail postgres "postgresql installed but initdb/pg_ctl not found"
  if is_root; then
    getent passwd postgres >/dev/null || fail postgres "no 'postgres' system user to run the server as"
  fi

  port_free postgres "$PG_PORT" MEGA_PG_PORT
  local t0=$SECONDS
  # The cluster dir belongs to the server's user; the state dir above it only
  # has to be traversable.
  mkdir -p "$PG_ROOT" "$PG_SOCK"
  touch "$PG_LOG"
  if is_root; then chown postgres: "$PG_ROOT" "$PG_SOCK" "$PG_LOG"; fi
  as_pg test -w "$PG_ROOT" ||
    fail postgres "$PG_ROOT is not writable by the postgres user (is a parent directory private?)"

  if [[ ! -s $PG_DATA/PG_VERSION ]]; then
    say "postgres: initdb in $PG_DATA"
    # trust on the Unix socket (only we use it, for bootstrap); md5 on
    # loopback TCP (accepts the scram-hashed password).
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --no-locale -E UTF8 \
      --auth-local=trust --auth-host=md5 >>"$PG_LOG" 2>&1 || fail postgres "initdb failed" "$PG_LOG"
    echo "include_if_exists = 'mega.conf'" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
  fi
  # Rewritten on every start so MEGA_PG_PORT changes apply. Durability is off
  # on purpose: throwaway test data, and fsync dominates test run time.
  as_pg tee "$PG_DATA/mega.conf" >/dev/null <<EOF
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" start >>"$PG_LOG" 2>&1 9>&- ||
    fail postgres "pg_ctl start failed" "$PG_LOG"
  wait_ready postgres "$PG_LOG" "" pg_ready
  pg_bootstrap
  pg_login_ok || fail postgres "started, but login as $PG_USER over TCP fails" "$PG_LOG"
  say "postgres: started on $DATABASE_URL [$((SECONDS - t0))s]"
}

postgres_down() {
  if pg_ours_running && pg_resolve_bin; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >>"$PG_LOG" 2>&1 ||
      fail postgres "pg_ctl stop failed" "$PG_LOG"
    say "postgres: stopped"
  else
    say "postgres: not running"
  fi
}

# ----------------------------------------------------------------- redis ---

redis_ready() {
  if command -v redis-cli >/dev/null; then
    [[ $(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
  else # raw RESP PING, for machines where only the port is provided
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$REDIS_PORT; printf 'PING\r\n' >&3; IFS= read -r l <&3; [[ \$l == +PONG* ]]" 2>/dev/null
  fi
}

redis_up() {
  if redis_ready; then
    say "redis: already running on $REDIS_URL"
    return 0
  fi
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    ensure_pkgs redis redis-server redis-tools
  port_free redis "$REDIS_PORT" MEGA_REDIS_PORT
  local t0=$SECONDS dir=$STATE_DIR/redis pidfile=$RUN_DIR/redis.pid
  mkdir -p "$dir"
  rm -f "$pidfile"
  # No persistence (save "" / no AOF): tests own their data; daemonize writes
  # the pid file for `down`.
  redis-server --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$dir" --daemonize yes --pidfile "$pidfile" --logfile "$REDIS_LOG" \
    </dev/null >>"$REDIS_LOG" 2>&1 9>&- || fail redis "redis-server failed to start" "$REDIS_LOG"
  wait_ready redis "$REDIS_LOG" "" redis_ready
  say "redis: started on $REDIS_URL (pid $(cat "$pidfile" 2>/dev/null || echo ?)) [$((SECONDS - t0))s]"
}

redis_down() { stop_pidfile redis "$RUN_DIR/redis.pid" redis-server; }

# ------------------------------------------------------------------ nats ---

nats_ready() { # JetStream-aware health endpoint on the monitoring port
  curl -fsS --max-time 2 "http://$HOST:$NATS_MON_PORT/healthz?js-enabled-only=true" >/dev/null 2>&1
}

nats_port_answers() { # a NATS server greets with INFO, even without monitoring
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$NATS_PORT; IFS= read -r l <&3; [[ \$l == INFO* ]]" 2>/dev/null
}

nats_up() {
  if nats_ready; then
    say "nats: already running on $NATS_URL"
    return 0
  fi
  if nats_port_answers; then
    warn "nats: a server answers on $NATS_URL but its monitoring port $NATS_MON_PORT does not; leaving it running"
    return 0
  fi
  command -v nats-server >/dev/null || ensure_pkgs nats nats-server
  command -v curl >/dev/null || ensure_pkgs nats curl
  port_free nats "$NATS_PORT" MEGA_NATS_PORT
  port_free nats "$NATS_MON_PORT" MEGA_NATS_MONITOR_PORT
  local t0=$SECONDS pidfile=$RUN_DIR/nats.pid pid
  mkdir -p "$STATE_DIR/nats"
  rm -f "$pidfile"
  # nats-server has no daemon mode: detach it and let it write its pid file.
  # The JetStream store lives in the state dir, so streams survive a restart.
  pid=$(spawn "$NATS_LOG" nats-server -n mega-nats -a "$HOST" -p "$NATS_PORT" -m "$NATS_MON_PORT" \
    -js -sd "$STATE_DIR/nats" -P "$pidfile")
  echo "$pid" >"$pidfile"
  wait_ready nats "$NATS_LOG" "$pid" nats_ready
  say "nats: started on $NATS_URL (pid $pid, monitor http://$HOST:$NATS_MON_PORT) [$((SECONDS - t0))s]"
}

nats_down() { stop_pidfile nats "$RUN_DIR/nats.pid" nats-server; }

# ----------------------------------------------------------------- mongo ---

# A real MongoDB `ping` command as an OP_MSG over a raw socket (python3
# stdlib only; no mongosh or driver needed). Exit 0 iff the reply has ok: 1.
mongo_ping() {
  command -v python3 >/dev/null || { tcp_open "$MONGO_PORT"; return; }
  python3 - "$HOST" "$MONGO_PORT" <<'PY' 2>/dev/null
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])
cstr = lambda s: s.encode() + b"\0"
body = (b"\x10" + cstr("ping") + struct.pack("<i", 1)
        + b"\x02" + cstr("$db") + struct.pack("<i", 6) + b"admin\0" + b"\0")
doc = struct.pack("<i", len(body) + 4) + body
payload = struct.pack("<I", 0) + b"\x00" + doc          # flagBits, section kind 0
msg = struct.pack("<iiii", 16 + len(payload), 1, 0, 2013) + payload  # OP_MSG

with socket.create_connection((host, port), timeout=3) as s:
    s.settimeout(3)
    s.sendall(msg)
    def recvn(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                sys.exit(1)
            b += c
        return b
    length, _, _, op = struct.unpack("<iiii", recvn(16))
    reply = recvn(length - 16)
if op != 2013 or reply[4] != 0:
    sys.exit(1)
d = reply[5:]
n, i = struct.unpack("<i", d[:4])[0], 4
fixed = {1: 8, 7: 12, 8: 1, 9: 8, 10: 0, 16: 4, 17: 8, 18: 8, 19: 16}
while i < n - 1:
    t = d[i]; j = d.index(b"\0", i + 1); name = d[i + 1:j]; i = j + 1
    if name == b"ok":
        v = {1: lambda: struct.unpack("<d", d[i:i + 8])[0], 16: lambda: struct.unpack("<i", d[i:i + 4])[0],
             18: lambda: struct.unpack("<q", d[i:i + 8])[0], 8: lambda: d[i]}.get(t, lambda: 0)()
        sys.exit(0 if v == 1 else 1)
    if t in fixed: i += fixed[t]
    elif t in (2, 13, 14): i += 4 + struct.unpack("<i", d[i:i + 4])[0]
    elif t in (3, 4): i += struct.unpack("<i", d[i:i + 4])[0]
    elif t == 5: i += 5 + struct.unpack("<i", d[i:i + 4])[0]
    else: sys.exit(1)
sys.exit(1)
PY
}

mongo_ready() { tcp_open "$MONGO_PORT" && mongo_ping; }

find_go() {
  if command -v go >/dev/null; then command -v go; return 0; fi
  [[ -x /usr/local/go/bin/go ]] && { echo /usr/local/go/bin/go; return 0; }
  return 1
}

# Build FerretDB once into the cache dir (outside the repo); a few minutes on
# 2 cores, skipped while the binary exists.
# Not `go install ...@version`, for two reasons: it looks up deprecations in
# the module's version list, which the Go proxy refuses (403) for FerretDB;
# and FerretDB panics at start unless build/version/version.txt (a generated,
# unpublished file) holds its version. So: resolve the version through a
# throwaway module (checksum-verified as usual), copy the module source, write
# version.txt, build. The binary is renamed into place at the end, so an
# interrupted build never leaves a half binary behind.
ferretdb_build() {
  [[ -x $FERRETDB_BIN ]] && return 0
  local go blog=$LOG_DIR/ferretdb-build.log tmp v src err t0=$SECONDS
  go=$(find_go) || fail mongo "Go toolchain not found (needed to build FerretDB); install Go >= 1.22"
  mkdir -p "$CACHE_DIR/bin"
  : >"$blog"
  for v in $FERRETDB_VERSIONS; do
    tmp=$(mktemp -d "$CACHE_DIR/.build.XXXXXX")
    say "mongo: building FerretDB $v with $go (takes minutes; log: $blog)"
    # Explicit `|| exit`: set -e does not apply inside an `if` condition.
    if (
      exec 9>&- >"$tmp/build.log" 2>&1
      export GOWORK=off GOFLAGS=-buildvcs=false
      mkdir "$tmp/resolve" && cd "$tmp/resolve" || exit 1
      printf 'module mega.local/ferretdb-build\n\ngo 1.22\n\nrequire github.com/FerretDB/FerretDB %s\n' "$v" >go.mod
      "$go" mod download -json github.com/FerretDB/FerretDB >download.json || { cat download.json; exit 1; }
      src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' download.json)
      [[ -d $src ]] || { echo "module source dir not found:"; cat download.json; exit 1; }
      cp -R "$src" "$tmp/src" && chmod -R u+w "$tmp/src" || exit 1
      echo "$v" >"$tmp/src/build/version/version.txt"
      cd "$tmp/src" && "$go" build -trimpath -o "$tmp/ferretdb" ./cmd/ferretdb || exit 1
      "$tmp/ferretdb" --version
    ); then
      cat "$tmp/build.log" >>"$blog"
      mv -f "$tmp/ferretdb" "$FERRETDB_BIN"
      echo "$v" >"$CACHE_DIR/bin/ferretdb.version"
      rm -rf "$tmp"
      say "mongo: built FerretDB $v -> $FERRETDB_BIN [$((SECONDS - t0))s]"
      return 0
    fi
    cat "$tmp/build.log" >>"$blog"
    # First real error: the JSON "Error" of `go mod download`, else the first line.
    err=$(sed -n 's/^[[:space:]]*"Error": "\([^"]*\)".*/\1/p' "$tmp/build.log" | sed 's/\\n.*//' | head -n1)
    [[ -n $err ]] || err=$(grep -v '^go: downloading' "$tmp/build.log" | head -n1)
    warn "mongo: building FerretDB $v failed: $err"
    rm -rf "$tmp"
  done
  fail mongo "could not build FerretDB ($FERRETDB_VERSIONS)" "$blog"
}

mongo_up() {
  if mongo_ready; then
    say "mongo: already running on $MONGO_URL"
    return 0
  fi
  port_free mongo "$MONGO_PORT" MEGA_MONGO_PORT
  ferretdb_build
  local t0=$SECONDS pidfile=$RUN_DIR/ferretdb.pid pid
  mkdir -p "$STATE_DIR/ferretdb/data" "$STATE_DIR/ferretdb/state"
  # SQLite backend: no PostgreSQL dependency, one file per database.
  # --debug-addr=- : no metrics/pprof listener (its default port 8088 may clash).
  # warn level: info logs every connection open/close.
  pid=$(spawn "$MONGO_LOG" "$FERRETDB_BIN" --handler=sqlite \
    "--sqlite-url=file:$STATE_DIR/ferretdb/data/" \
    "--listen-addr=$HOST:$MONGO_PORT" --telemetry=disable --debug-addr=- \
    "--state-dir=$STATE_DIR/ferretdb/state" --log-level=warn)
  echo "$pid" >"$pidfile"
  wait_ready mongo "$MONGO_LOG" "$pid" mongo_ready
  say "mongo: started FerretDB on $MONGO_URL (pid $pid) [$((SECONDS - t0))s]"
}

mongo_down() { stop_pidfile mongo "$RUN_DIR/ferretdb.pid" ferretdb; }

# ------------------------------------------------------- more services ---

# Each scripts/services.d/NAME.sh adds one service: it appends NAME to
# ALL_SERVICES and defines NAME_up, NAME_down, NAME_ready, NAME_url and
# NAME_env (prints its VAR=value lines); it may set NAME_ALIASES (other names
# accepted on the command line). Files run in name order, after the helpers above.
EXTRA_SERVICES=()
for f in "$(dirname "${BASH_SOURCE[0]}")"/services.d/*.sh; do
  [[ -e $f ]] || continue
  # shellcheck source=/dev/null
  source "$f"
done

# ------------------------------------------------------------------ main ---

svc_url() {
  case $1 in
    postgres) echo "$DATABASE_URL" ;; redis) echo "$REDIS_URL" ;;
    nats) echo "$NATS_URL" ;; mongo) echo "$MONGO_URL" ;;
    *) "${1}_url" ;;
  esac
}

svc_ready() {
  case $1 in
    postgres) pg_resolve_bin || true; pg_ready ;;
    redis) redis_ready ;; nats) nats_ready ;; mongo) mongo_ready ;;
    *) "${1}_ready" ;;
  esac
}

# extra_service NAME: the added service that NAME names (itself or an alias), if any.
extra_service() {
  local e a aliases
  for e in "${EXTRA_SERVICES[@]}"; do
    [[ $1 == "$e" ]] && { echo "$e"; return 0; }
    aliases=${e^^}_ALIASES # MARIADB_ALIASES for mariadb
    for a in ${!aliases:-}; do [[ $1 == "$a" ]] && { echo "$e"; return 0; }; done
  done
  return 1
}

# Normalise service names (a few aliases accepted); default to all.
SERVICES=()
parse_services() {
  local s
  (($#)) || set -- "${ALL_SERVICES[@]}"
  for s in "$@"; do
    case $s in
      postgres | postgresql | pg) SERVICES+=(postgres) ;;
      redis) SERVICES+=(redis) ;;
      nats) SERVICES+=(nats) ;;
      mongo | mongodb | ferretdb) SERVICES+=(mongo) ;;
      *) if e=$(extra_service "$s"); then SERVICES+=("$e"); continue; fi
        echo "services.sh: unknown service '$s' (expected: ${ALL_SERVICES[*]})" >&2; exit 2 ;;
    esac
  done
}

# Serialise up/down/restart so parallel test jobs do not race on ports and
# data dirs. Started daemons get fd 9 closed, so they never hold the lock.
lock_state() {
  mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"
  chmod 755 "$STATE_DIR" 2>/dev/null || true
  exec 9>"$STATE_DIR/.lock"
  flock -w 900 9 || { echo "services.sh: error: could not lock $STATE_DIR/.lock" >&2; exit 1; }
}

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

cmd=${1:-}
(($#)) && shift
case $cmd in
  up)
    parse_services "$@"
    lock_state
    t_all=$SECONDS
    for s in "${SERVICES[@]}"; do "${s}_up"; done
    say "all requested services up [$((SECONDS - t_all))s]"
    ;;
  down)
    parse_services "$@"
    [[ -d $STATE_DIR ]] || exit 0
    lock_state
    for s in "${SERVICES[@]}"; do "${s}_down"; done
    ;;
  restart)
    parse_services "$@"
    lock_state
    for s in "${SERVICES[@]}"; do "${s}_down"; done
    for s in "${SERVICES[@]}"; do "${s}_up"; done
    ;;
  status)
    parse_services "$@"
    rc=0
    for s in "${SERVICES[@]}"; do
      if svc_ready "$s"; then st=up; else st=down rc=1; fi
      printf '%-10s %-4s %s\n' "$s" "$st" "$(svc_url "$s")"
    done
    exit "$rc"
    ;;
  env)
    printf 'DATABASE_URL=%s\nREDIS_URL=%s\nNATS_URL=%s\nMONGO_URL=%s\n' \
      "$DATABASE_URL" "$REDIS_URL" "$NATS_URL" "$MONGO_URL"
    for e in "${EXTRA_SERVICES[@]}"; do "${e}_env"; done
    ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
