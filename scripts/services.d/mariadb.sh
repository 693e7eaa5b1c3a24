# MariaDB (MySQL protocol) for @mega/db-mariadb and the MySQL dialect of models/migrations.
# Sourced by scripts/services.sh (see README.md here): our own server (own datadir, port and
# socket under $STATE_DIR), never the distribution's system service.
#
# Environment: MEGA_MARIADB_PORT (default 53306).

MARIADB_PORT=${MEGA_MARIADB_PORT:-53306}
# Fixed local test credentials (loopback only, not a secret).
MARIADB_USER=mega MARIADB_PASSWORD=mega MARIADB_DB=mega
MARIADB_URL="mysql://$MARIADB_USER:$MARIADB_PASSWORD@$HOST:$MARIADB_PORT/$MARIADB_DB"
MARIADB_ROOT=$STATE_DIR/mariadb
MARIADB_DATA=$MARIADB_ROOT/data
MARIADB_SOCK_DIR=$MARIADB_ROOT/run
MARIADB_SOCK=$MARIADB_SOCK_DIR/mariadb.sock
MARIADB_LOG=$LOG_DIR/mariadb.log
MARIADB_PIDFILE=$RUN_DIR/mariadb.pid
MARIADB_ALIASES="mysql maria"

ALL_SERVICES+=(mariadb)
EXTRA_SERVICES+=(mariadb)

# The server runs as `mysql` when we are root (like postgres runs as `postgres`); otherwise as us.
mariadb_os_user() { if is_root; then echo mysql; else id -un; fi; }

as_mysql() {
  if is_root; then
    (cd / && runuser -u mysql -- "$@")
  else
    "$@"
  fi
}

# mariadb-install-db creates an all-privileges account for the OS user it runs as, authenticated by
# unix_socket: bootstrap SQL goes over our socket as that user, no password involved.
mariadb_admin_sql() {
  as_mysql timeout 10 mariadb --no-defaults --protocol=socket --socket="$MARIADB_SOCK" -u "$(mariadb_os_user)" \
    --batch --skip-column-names "$@"
}

# The app's own credentials work over TCP.
mariadb_ready() {
  command -v mariadb >/dev/null || { tcp_open "$MARIADB_PORT"; return; }
  timeout 5 mariadb --no-defaults --protocol=tcp -h "$HOST" -P "$MARIADB_PORT" -u "$MARIADB_USER" \
    "-p$MARIADB_PASSWORD" --connect-timeout=3 -e 'select 1' "$MARIADB_DB" >/dev/null 2>&1
}

# Our server answers on its socket (before the app's user exists).
mariadb_socket_ready() {
  [[ -S $MARIADB_SOCK ]] && mariadb_admin_sql -e 'select 1' >/dev/null 2>&1
}

mariadb_url() { echo "$MARIADB_URL"; }
mariadb_env() { printf 'MARIADB_URL=%s\n' "$MARIADB_URL"; }

# Database and user (from 127.0.0.1 and localhost) with the fixed password. The user may create
# databases (tests isolate themselves in their own), like the postgres role has createdb.
mariadb_bootstrap() {
  mariadb_admin_sql >>"$MARIADB_LOG" 2>&1 <<SQL || fail mariadb "bootstrap (user/database) failed" "$MARIADB_LOG"
CREATE DATABASE IF NOT EXISTS \`$MARIADB_DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$MARIADB_USER'@'127.0.0.1' IDENTIFIED BY '$MARIADB_PASSWORD';
CREATE USER IF NOT EXISTS '$MARIADB_USER'@'localhost' IDENTIFIED BY '$MARIADB_PASSWORD';
ALTER USER '$MARIADB_USER'@'127.0.0.1' IDENTIFIED BY '$MARIADB_PASSWORD';
ALTER USER '$MARIADB_USER'@'localhost' IDENTIFIED BY '$MARIADB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$MARIADB_USER'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO '$MARIADB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL
}

mariadb_up() {
  if mariadb_ready; then
    say "mariadb: already running on $MARIADB_URL"
    return 0
  fi
  if pid_alive "$MARIADB_PIDFILE" mariadbd && mariadb_socket_ready; then
    mariadb_bootstrap
    mariadb_ready || fail mariadb "running, but login as $MARIADB_USER fails" "$MARIADB_LOG"
    say "mariadb: already running on $MARIADB_URL (user/database ensured)"
    return 0
  fi
  command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null && command -v mariadb >/dev/null ||
    ensure_pkgs mariadb mariadb-server mariadb-client
  command -v mariadbd >/dev/null || fail mariadb "mariadb-server installed but mariadbd not found"
  if is_root; then
    getent passwd mysql >/dev/null || fail mariadb "no 'mysql' system user to run the server as"
  fi
  port_free mariadb "$MARIADB_PORT" MEGA_MARIADB_PORT

  local t0=$SECONDS pid user
  user=$(mariadb_os_user)
  mkdir -p "$MARIADB_ROOT" "$MARIADB_SOCK_DIR" "$MARIADB_DATA"
  touch "$MARIADB_LOG"
  if is_root; then chown mysql: "$MARIADB_ROOT" "$MARIADB_SOCK_DIR" "$MARIADB_DATA" "$MARIADB_LOG"; fi
  as_mysql test -w "$MARIADB_ROOT" ||
    fail mariadb "$MARIADB_ROOT is not writable by the $user user (is a parent directory private?)"

  if [[ ! -d $MARIADB_DATA/mysql ]]; then
    say "mariadb: mariadb-install-db in $MARIADB_DATA"
    as_mysql mariadb-install-db --no-defaults --datadir="$MARIADB_DATA" --user="$user" \
      --auth-root-authentication-method=socket --skip-test-db >>"$MARIADB_LOG" 2>&1 9>&- ||
      fail mariadb "mariadb-install-db failed" "$MARIADB_LOG"
  fi
  rm -f "$MARIADB_PIDFILE" "$MARIADB_SOCK"
  # mariadbd drops root itself (--user), so the pid spawn returns stays the server's.
  # --no-defaults: no /etc/mysql config leaks in. Durability is off on purpose (throwaway test
  # data; fsync dominates test run time); small buffers, no performance schema: a shared 2-core box.
  pid=$(spawn "$MARIADB_LOG" mariadbd --no-defaults --user="$user" \
    --datadir="$MARIADB_DATA" --socket="$MARIADB_SOCK" --port="$MARIADB_PORT" --bind-address="$HOST" \
    --pid-file="$MARIADB_ROOT/mariadbd.pid" --log-error="$MARIADB_LOG" --skip-name-resolve \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
    --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --sync-binlog=0 \
    --innodb-buffer-pool-size=64M --performance-schema=OFF --max-connections=200)
  echo "$pid" >"$MARIADB_PIDFILE"
  wait_ready mariadb "$MARIADB_LOG" "$pid" mariadb_socket_ready
  mariadb_bootstrap
  wait_ready mariadb "$MARIADB_LOG" "$pid" mariadb_ready
  say "mariadb: started on $MARIADB_URL (pid $pid) [$((SECONDS - t0))s]"
}

mariadb_down() { stop_pidfile mariadb "$MARIADB_PIDFILE" mariadbd; }
