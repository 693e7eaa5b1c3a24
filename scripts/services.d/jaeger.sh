# Jaeger (v2: an OpenTelemetry Collector build) for @mega/tracing's integration tests: an OTLP/HTTP
# receiver and the query API over an in-memory store. Sourced by scripts/services.sh (see README.md
# here). Built once with the Go toolchain into $CACHE_DIR (like FerretDB), configured by a file
# written to $STATE_DIR.
#
# Environment: MEGA_JAEGER_OTLP_PORT (default 54318), MEGA_JAEGER_QUERY_PORT (default 56686),
#   MEGA_JAEGER_GRPC_PORT (query gRPC, default 56685), MEGA_JAEGER_VERSION (module version, v1.75.0).

JAEGER_OTLP_PORT=${MEGA_JAEGER_OTLP_PORT:-54318}
JAEGER_QUERY_PORT=${MEGA_JAEGER_QUERY_PORT:-56686}
JAEGER_GRPC_PORT=${MEGA_JAEGER_GRPC_PORT:-56685}
# The Go module github.com/jaegertracing/jaeger v1.75.0 is the release whose cmd/jaeger is Jaeger v2.12.
JAEGER_VERSION=${MEGA_JAEGER_VERSION:-v1.75.0}
JAEGER_OTLP_URL="http://$HOST:$JAEGER_OTLP_PORT"
JAEGER_QUERY_URL="http://$HOST:$JAEGER_QUERY_PORT"
JAEGER_BIN=$CACHE_DIR/bin/jaeger
JAEGER_LOG=$LOG_DIR/jaeger.log
JAEGER_PIDFILE=$RUN_DIR/jaeger.pid
JAEGER_CONFIG=$STATE_DIR/jaeger/config.yaml
JAEGER_ALIASES="otel tracing" # other names `services.sh up|status` accept

ALL_SERVICES+=(jaeger)
EXTRA_SERVICES+=(jaeger)

jaeger_url() { echo "$JAEGER_QUERY_URL"; }
jaeger_env() { printf 'JAEGER_OTLP_URL=%s\nJAEGER_QUERY_URL=%s\n' "$JAEGER_OTLP_URL" "$JAEGER_QUERY_URL"; }

# Ready when the query API answers and the OTLP receiver accepts connections.
jaeger_ready() {
  tcp_open "$JAEGER_OTLP_PORT" || return 1
  curl -fsS --max-time 2 "$JAEGER_QUERY_URL/api/services" >/dev/null 2>&1
}

# Build once into the cache dir (outside the repo), skipped while the binary exists: ~7 minutes
# on 2 cores (plus ~1.5 GB of module downloads on a fresh machine). Not `go install ...@version`: the module has a replace
# directive, which `go install` refuses. So, as for FerretDB: resolve the version through a throwaway
# module (checksum-verified), copy the module source, build it with its own go.mod; the binary is
# renamed into place at the end, so an interrupted build never leaves a half-written one.
jaeger_build() {
  [[ -x $JAEGER_BIN ]] && return 0
  local go blog=$LOG_DIR/jaeger-build.log tmp src t0=$SECONDS
  go=$(find_go) || fail jaeger "Go toolchain not found (needed to build Jaeger); install Go >= 1.24"
  mkdir -p "$CACHE_DIR/bin"
  tmp=$(mktemp -d "$CACHE_DIR/.build.XXXXXX")
  say "jaeger: building Jaeger ($JAEGER_VERSION) with $go (takes minutes; log: $blog)"
  if ! (
    exec 9>&- >"$blog" 2>&1
    export GOWORK=off GOFLAGS=-buildvcs=false
    mkdir "$tmp/resolve" && cd "$tmp/resolve" || exit 1
    printf 'module mega.local/jaeger-build\n\ngo 1.24\n\nrequire github.com/jaegertracing/jaeger %s\n' "$JAEGER_VERSION" >go.mod
    "$go" mod download -json github.com/jaegertracing/jaeger >download.json || { cat download.json; exit 1; }
    src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' download.json)
    [[ -d $src ]] || { echo "module source dir not found:"; cat download.json; exit 1; }
    cp -R "$src" "$tmp/src" && chmod -R u+w "$tmp/src" || exit 1
    cd "$tmp/src" || exit 1
    nice "$go" build -trimpath -ldflags "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION" \
      -o "$tmp/jaeger" ./cmd/jaeger || exit 1
    "$tmp/jaeger" version
  ); then
    rm -rf "$tmp"
    fail jaeger "could not build Jaeger $JAEGER_VERSION" "$blog"
  fi
  mv -f "$tmp/jaeger" "$JAEGER_BIN"
  echo "$JAEGER_VERSION" >"$CACHE_DIR/bin/jaeger.version"
  rm -rf "$tmp"
  say "jaeger: built $JAEGER_VERSION -> $JAEGER_BIN [$((SECONDS - t0))s]"
}

# All-in-one on loopback: OTLP/HTTP in, traces kept in memory, query API/UI out. No gRPC OTLP, no
# Jaeger/Zipkin receivers, no internal metrics server (its default :8888 would clash).
jaeger_config() {
  mkdir -p "$(dirname "$JAEGER_CONFIG")"
  cat >"$JAEGER_CONFIG" <<YAML
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    # On by default in v2: it would send the query service's own spans to localhost:4317.
    enable_tracing: false
    http:
      endpoint: "$HOST:$JAEGER_QUERY_PORT"
    grpc:
      endpoint: "$HOST:$JAEGER_GRPC_PORT"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "$HOST:$JAEGER_OTLP_PORT"
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
YAML
}

jaeger_up() {
  if jaeger_ready; then
    say "jaeger: already running on $JAEGER_QUERY_URL (OTLP $JAEGER_OTLP_URL)"
    return 0
  fi
  command -v curl >/dev/null || ensure_pkgs jaeger curl
  port_free jaeger "$JAEGER_OTLP_PORT" MEGA_JAEGER_OTLP_PORT
  port_free jaeger "$JAEGER_QUERY_PORT" MEGA_JAEGER_QUERY_PORT
  port_free jaeger "$JAEGER_GRPC_PORT" MEGA_JAEGER_GRPC_PORT
  jaeger_build
  jaeger_config
  local t0=$SECONDS pid
  pid=$(spawn "$JAEGER_LOG" "$JAEGER_BIN" --config "$JAEGER_CONFIG")
  echo "$pid" >"$JAEGER_PIDFILE"
  wait_ready jaeger "$JAEGER_LOG" "$pid" jaeger_ready
  say "jaeger: started on $JAEGER_QUERY_URL, OTLP $JAEGER_OTLP_URL (pid $pid) [$((SECONDS - t0))s]"
}

jaeger_down() { stop_pidfile jaeger "$JAEGER_PIDFILE" jaeger; }
