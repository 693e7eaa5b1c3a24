# Prometheus for @mega/metrics' integration tests: a real server that scrapes Mega apps' /metrics.
# Sourced by scripts/services.sh (see README.md here). Debian's `prometheus` package, our own
# instance (own port, data dir and config under $STATE_DIR), never the distribution's system service.
#
# Targets are set by the tests, not here: the generated config reads every
# $PROMETHEUS_TARGETS_DIR/*.json (file_sd_configs) once a second, so a test writes
#   [{ "targets": ["127.0.0.1:<port>"], "labels": { "mega_test": "<id>" } }]
# to its own file, queries $PROMETHEUS_URL/api/v1/query, and removes the file. Scrapes run every
# second (timeout 1 s). A target's `__metrics_path__` label overrides /metrics.
#
# Environment: MEGA_PROMETHEUS_PORT (default 59090).

PROMETHEUS_PORT=${MEGA_PROMETHEUS_PORT:-59090}
PROMETHEUS_URL="http://$HOST:$PROMETHEUS_PORT"
PROMETHEUS_ROOT=$STATE_DIR/prometheus
PROMETHEUS_DATA=$PROMETHEUS_ROOT/data
PROMETHEUS_TARGETS_DIR=$PROMETHEUS_ROOT/targets
PROMETHEUS_CONFIG=$PROMETHEUS_ROOT/prometheus.yml
PROMETHEUS_LOG=$LOG_DIR/prometheus.log
PROMETHEUS_PIDFILE=$RUN_DIR/prometheus.pid
PROMETHEUS_ALIASES="prom"

ALL_SERVICES+=(prometheus)
EXTRA_SERVICES+=(prometheus)

prometheus_url() { echo "$PROMETHEUS_URL"; }
prometheus_env() { printf 'PROMETHEUS_URL=%s\nPROMETHEUS_TARGETS_DIR=%s\n' "$PROMETHEUS_URL" "$PROMETHEUS_TARGETS_DIR"; }

# Ready when the server says so and it runs with our config (another Prometheus on the port would
# scrape the wrong targets): its config endpoint names our targets directory.
prometheus_ready() {
  curl -fsS --max-time 2 "$PROMETHEUS_URL/-/ready" >/dev/null 2>&1 || return 1
  curl -fsS --max-time 2 "$PROMETHEUS_URL/api/v1/status/config" 2>/dev/null | grep -qF "$PROMETHEUS_TARGETS_DIR"
}

prometheus_write_config() {
  mkdir -p "$PROMETHEUS_DATA" "$PROMETHEUS_TARGETS_DIR"
  cat >"$PROMETHEUS_CONFIG" <<YAML
# Written by scripts/services.d/prometheus.sh; rewritten on every start.
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: mega
    metrics_path: /metrics
    file_sd_configs:
      - files: ['$PROMETHEUS_TARGETS_DIR/*.json']
        refresh_interval: 1s
YAML
}

prometheus_up() {
  if prometheus_ready; then
    say "prometheus: already running on $PROMETHEUS_URL"
    return 0
  fi
  command -v prometheus >/dev/null || ensure_pkgs prometheus prometheus
  command -v prometheus >/dev/null || fail prometheus "the prometheus package is installed but the prometheus binary is not on PATH"
  if pid_alive "$PROMETHEUS_PIDFILE" prometheus; then
    stop_pidfile prometheus "$PROMETHEUS_PIDFILE" prometheus
  fi
  port_free prometheus "$PROMETHEUS_PORT" MEGA_PROMETHEUS_PORT
  local t0=$SECONDS pid
  prometheus_write_config
  # Short retention, no web console: throwaway test data on a shared machine.
  pid=$(spawn "$PROMETHEUS_LOG" prometheus --config.file="$PROMETHEUS_CONFIG" \
    --storage.tsdb.path="$PROMETHEUS_DATA" --storage.tsdb.retention.time=2h \
    --web.listen-address="$HOST:$PROMETHEUS_PORT" --web.enable-lifecycle --log.level=warn)
  echo "$pid" >"$PROMETHEUS_PIDFILE"
  wait_ready prometheus "$PROMETHEUS_LOG" "$pid" prometheus_ready
  say "prometheus: started on $PROMETHEUS_URL (pid $pid, targets in $PROMETHEUS_TARGETS_DIR) [$((SECONDS - t0))s]"
}

prometheus_down() { stop_pidfile prometheus "$PROMETHEUS_PIDFILE" prometheus; }
