# shellcheck shell=bash
# Sourced by scripts/test and .ci/run: finds or starts the live servers the tests use.
#
# testservers_start probes the usual local servers and, for each one that does not answer the
# way the tests need it, starts a private throwaway server instead:
#   PostgreSQL 127.0.0.1:5432, user postgres without password, a superuser (CREATE ROLE, CREATE DATABASE)
#   MariaDB    127.0.0.1:3306, root with an empty password that may CREATE USER and grant
#   Redis      redis://127.0.0.1:6379/0 answering PING
# A private server keeps its data under var/testservers/<pid>/, listens on a free port on
# 127.0.0.1 only (trust/empty-password logins from loopback only, no Unix socket for
# PostgreSQL), reads no system configuration file (/etc/postgresql, /etc/mysql, /etc/redis) and
# runs as the unprivileged user whalefall-test when started by root (created if missing).
# testservers_stop (a trap on EXIT, INT and TERM, set by testservers_start) stops the private
# servers and removes their data. System servers are only ever probed: never started, stopped
# or reconfigured.
#
# The coordinates reach the tests (tests/livedb.py, bench/) through the environment, exported
# whichever server they name (the host is always 127.0.0.1):
#   WHALEFALL_TEST_PG_PORT, WHALEFALL_TEST_MARIADB_PORT, WHALEFALL_TEST_REDIS_URL
# A coordinate already set by the caller is used as given, without probing (.ci/run starts the
# servers once and passes them to both of its scripts/test runs).
#
# WHALEFALL_TEST_SERVERS=auto     probe, private server where the probe fails (default)
#                        private  always private servers
#                        system   never start anything: the defaults above, as they are

# shellcheck disable=SC2034 # read by scripts/test and .ci/run, which pass it to scripts/_bootstrap.sh
TESTSERVER_PACKAGES=(postgresql mariadb-server redis-server)
TESTSERVER_USER="whalefall-test"
_TS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_TS_DIR=""
_TS_STARTED=()

_ts_say() { echo "==> $*"; }

_ts_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_ts_pg_bin() {
  local bin
  bin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$bin" ] && [ -x "$bin/initdb" ] || return 1
  echo "$bin"
}

# Runs a command as the unprivileged server user when we are root, else as ourselves.
_ts_as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$TESTSERVER_USER" -- "$@"
  else
    "$@"
  fi
}

_ts_probe_pg() {
  local bin
  bin="$(_ts_pg_bin)" || return 1
  [ "$(PGCONNECT_TIMEOUT=3 PGPASSFILE=/dev/null PGPASSWORD='' PGSERVICEFILE=/dev/null \
    timeout 10 "$bin/psql" -XAtqw "host=127.0.0.1 port=$1 user=postgres dbname=postgres" \
    -c "SELECT rolsuper FROM pg_roles WHERE rolname = current_user" 2>/dev/null)" = "t" ]
}

_ts_mariadb() { # PORT ARGS...: the mariadb client as root without password, no option files
  local port="$1"
  shift
  timeout 10 mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P "$port" -u root --password= \
    --connect-timeout=3 "$@"
}

_ts_probe_mariadb() {
  command -v mariadb >/dev/null || return 1
  [ "$(_ts_mariadb "$1" -NBe "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES
        WHERE PRIVILEGE_TYPE = 'CREATE USER' AND IS_GRANTABLE = 'YES' AND GRANTEE = CONCAT(
          QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', 1)), '@', QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', -1)))" \
    2>/dev/null)" = "1" ]
}

_ts_probe_redis() {
  command -v redis-cli >/dev/null || return 1
  [ "$(timeout 5 redis-cli -u "$1" ping 2>/dev/null)" = "PONG" ]
}

# True when /proc says PID is a live process whose command line mentions DIR (our own server).
_ts_is_ours() {
  local pid="$1" dir="$2"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir"
}

_ts_kill_pidfile() { # PIDFILE DIR: TERM the process of PIDFILE if it is ours, wait for it, KILL at last
  local pidfile="$1" dir="$2" pid
  [ -f "$pidfile" ] || return 0
  pid="$(head -n 1 "$pidfile" 2>/dev/null || true)"
  _ts_is_ours "$pid" "$dir" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    _ts_is_ours "$pid" "$dir" || return 0
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# Stops whatever private server still runs from the run directory DIR, and removes DIR.
_ts_stop_dir() {
  local dir="$1" bin
  if [ -f "$dir/pg/data/postmaster.pid" ] && bin="$(_ts_pg_bin)"; then
    _ts_as_user "$bin/pg_ctl" -D "$dir/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
      || _ts_kill_pidfile "$dir/pg/data/postmaster.pid" "$dir"
  fi
  _ts_kill_pidfile "$dir/mariadb/mariadbd.pid" "$dir"
  _ts_kill_pidfile "$dir/redis/redis.pid" "$dir"
  rm -rf "$dir"
}

_ts_ensure_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id -u "$TESTSERVER_USER" >/dev/null 2>&1 && return 0
  _ts_say "creating the system user $TESTSERVER_USER (runs the private test servers)"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    "$TESTSERVER_USER"
}

# The run directory: var/testservers/<pid>, owned by the server user. Directories of earlier
# runs whose process is gone are cleaned up first (their servers stopped).
_ts_rundir() {
  [ -n "$_TS_DIR" ] && return 0
  local base="$_TS_ROOT/var/testservers" old
  mkdir -p "$base"
  for old in "$base"/*/; do
    old="${old%/}"
    [ -d "$old" ] || continue
    [ -d "/proc/$(basename "$old")" ] && continue # its scripts/test still runs
    _ts_stop_dir "$old"
  done
  _ts_ensure_user
  _TS_DIR="$base/$$"
  mkdir -p "$_TS_DIR"
  if [ "$(id -u)" -eq 0 ]; then
    chown "$TESTSERVER_USER:" "$_TS_DIR"
    if ! runuser -u "$TESTSERVER_USER" -- test -w "$_TS_DIR"; then
      # a parent directory the server user cannot enter (a checkout under /root, say)
      rmdir "$_TS_DIR"
      _TS_DIR="$(mktemp -d /tmp/whalefall-testservers.XXXXXX)"
      chown "$TESTSERVER_USER:" "$_TS_DIR"
      _ts_say "$TESTSERVER_USER cannot reach $base: private server data goes to $_TS_DIR"
    fi
  fi
}

_ts_wait() { # WHAT LOG CMD...: retry CMD for up to 60 s
  local what="$1" log="$2"
  shift 2
  for _ in $(seq 1 120); do
    "$@" && return 0
    sleep 0.5
  done
  echo "$what did not come up; its log ($log):" >&2
  tail -n 30 "$log" >&2 || true
  return 1
}

_ts_start_pg() {
  local bin port dir data
  bin="$(_ts_pg_bin)" || {
    echo "PostgreSQL server binaries are missing (Debian package postgresql)" >&2
    return 1
  }
  port="$(_ts_free_port)"
  dir="$_TS_DIR/pg"
  data="$dir/data"
  _ts_as_user mkdir -p "$dir" || return 1
  _ts_as_user "$bin/initdb" -D "$data" -U postgres -A trust --encoding=UTF8 --locale=C.UTF-8 -N \
    >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    return 1
  }
  # the one way in: TCP from 127.0.0.1, trusted; no Unix socket, nothing from elsewhere
  echo "host all all 127.0.0.1/32 trust" | _ts_as_user tee "$data/pg_hba.conf" >/dev/null
  _ts_as_user tee -a "$data/postgresql.conf" >/dev/null <<EOF
# scripts/_testservers.sh: a throwaway server for the tests
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
timezone = 'Etc/UTC'
log_timezone = 'Etc/UTC'
EOF
  _TS_STARTED+=(pg)
  _ts_as_user "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start >/dev/null || {
    tail -n 30 "$dir/server.log" >&2
    return 1
  }
  _ts_wait "private PostgreSQL" "$dir/server.log" _ts_probe_pg "$port" || return 1
  export WHALEFALL_TEST_PG_PORT="$port"
  _ts_say "PostgreSQL: private server at 127.0.0.1:$port ($data)"
}

_ts_start_mariadb() {
  if ! command -v mariadbd >/dev/null || ! command -v mariadb-install-db >/dev/null; then
    echo "MariaDB server binaries are missing (Debian package mariadb-server)" >&2
    return 1
  fi
  local port dir data sock user_opt=()
  port="$(_ts_free_port)"
  dir="$_TS_DIR/mariadb"
  data="$dir/data"
  sock="$dir/mariadbd.sock"
  [ "${#sock}" -lt 100 ] || sock="$(mktemp -u /tmp/whalefall-mariadbd.XXXXXX).sock"
  _ts_as_user mkdir -p "$dir" || return 1
  [ "$(id -u)" -eq 0 ] && user_opt=("--user=$TESTSERVER_USER")
  mariadb-install-db --no-defaults "${user_opt[@]}" --datadir="$data" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve >"$dir/install-db.log" 2>&1 || {
    cat "$dir/install-db.log" >&2
    return 1
  }
  # root@127.0.0.1 with an empty password, as the tests log in; no anonymous or non-loopback accounts
  _ts_as_user tee "$dir/init.sql" >/dev/null <<'EOF'
DELETE FROM mysql.global_priv WHERE User = '' OR Host NOT IN ('localhost', '127.0.0.1');
DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '127.0.0.1');
FLUSH PRIVILEGES;
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
EOF
  _TS_STARTED+=(mariadb)
  setsid mariadbd --no-defaults "${user_opt[@]}" --datadir="$data" --bind-address=127.0.0.1 --port="$port" \
    --socket="$sock" --pid-file="$dir/mariadbd.pid" --log-error="$dir/error.log" --init-file="$dir/init.sql" \
    --skip-name-resolve --skip-log-bin --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 </dev/null >>"$dir/stdout.log" 2>&1 &
  _ts_wait "private MariaDB" "$dir/error.log" _ts_probe_mariadb "$port" || return 1
  export WHALEFALL_TEST_MARIADB_PORT="$port"
  _ts_say "MariaDB: private server at 127.0.0.1:$port ($data)"
}

_ts_start_redis() {
  command -v redis-server >/dev/null || {
    echo "redis-server is missing (Debian package redis-server)" >&2
    return 1
  }
  local port dir
  port="$(_ts_free_port)"
  dir="$_TS_DIR/redis"
  _ts_as_user mkdir -p "$dir" || return 1
  _TS_STARTED+=(redis)
  # no configuration file: these arguments are the whole configuration; nothing is persisted
  _ts_as_user redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize yes \
    --set-proc-title no --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" || return 1
  _ts_wait "private Redis" "$dir/redis.log" _ts_probe_redis "redis://127.0.0.1:$port/0" || return 1
  export WHALEFALL_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
  _ts_say "Redis: private server at $WHALEFALL_TEST_REDIS_URL"
}

testservers_stop() {
  [ -n "$_TS_DIR" ] || return 0
  if [ "${#_TS_STARTED[@]}" -gt 0 ]; then
    _ts_say "stopping the private test servers (${_TS_STARTED[*]})"
  fi
  _ts_stop_dir "$_TS_DIR"
  _TS_DIR=""
  _TS_STARTED=()
}

testservers_start() {
  local mode="${WHALEFALL_TEST_SERVERS:-auto}"
  case "$mode" in
    auto | private | system) ;;
    *)
      echo "WHALEFALL_TEST_SERVERS must be auto, private or system (not '$mode')" >&2
      return 2
      ;;
  esac
  trap testservers_stop EXIT
  trap 'testservers_stop; trap - INT; kill -INT $$' INT
  trap 'testservers_stop; trap - TERM; kill -TERM $$' TERM

  if [ -n "${WHALEFALL_TEST_PG_PORT:-}" ]; then
    _ts_say "PostgreSQL: 127.0.0.1:$WHALEFALL_TEST_PG_PORT (WHALEFALL_TEST_PG_PORT)"
  elif [ "$mode" = system ]; then
    export WHALEFALL_TEST_PG_PORT=5432
    _ts_say "PostgreSQL: 127.0.0.1:5432 (WHALEFALL_TEST_SERVERS=system, not probed)"
  elif [ "$mode" = auto ] && _ts_probe_pg 5432; then
    export WHALEFALL_TEST_PG_PORT=5432
    _ts_say "PostgreSQL: the server running at 127.0.0.1:5432"
  else
    _ts_rundir && _ts_start_pg || return 1
  fi

  if [ -n "${WHALEFALL_TEST_MARIADB_PORT:-}" ]; then
    _ts_say "MariaDB: 127.0.0.1:$WHALEFALL_TEST_MARIADB_PORT (WHALEFALL_TEST_MARIADB_PORT)"
  elif [ "$mode" = system ]; then
    export WHALEFALL_TEST_MARIADB_PORT=3306
    _ts_say "MariaDB: 127.0.0.1:3306 (WHALEFALL_TEST_SERVERS=system, not probed)"
  elif [ "$mode" = auto ] && _ts_probe_mariadb 3306; then
    export WHALEFALL_TEST_MARIADB_PORT=3306
    _ts_say "MariaDB: the server running at 127.0.0.1:3306"
  else
    _ts_rundir && _ts_start_mariadb || return 1
  fi

  if [ -n "${WHALEFALL_TEST_REDIS_URL:-}" ]; then
    _ts_say "Redis: $WHALEFALL_TEST_REDIS_URL (WHALEFALL_TEST_REDIS_URL)"
  elif [ "$mode" = system ]; then
    export WHALEFALL_TEST_REDIS_URL=redis://127.0.0.1:6379/0
    _ts_say "Redis: redis://127.0.0.1:6379/0 (WHALEFALL_TEST_SERVERS=system, not probed)"
  elif [ "$mode" = auto ] && _ts_probe_redis redis://127.0.0.1:6379/0; then
    export WHALEFALL_TEST_REDIS_URL=redis://127.0.0.1:6379/0
    _ts_say "Redis: the server running at redis://127.0.0.1:6379/0"
  else
    _ts_rundir && _ts_start_redis || return 1
  fi
}
