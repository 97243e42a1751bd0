#!/usr/bin/env bash
# Starts, stops and reports the real services that tributary's tests, benchmarks and quickstart
# use, without Docker:
#   - PostgreSQL (Debian packages) with wal_level=logical, own cluster in .dev/postgres, run as the
#     `postgres` OS user, on 127.0.0.1:${TRIBUTARY_PG_PORT:-5432};
#   - Apache Kafka 4.x (jars from Maven Central), single-node KRaft broker+controller, on
#     127.0.0.1:${TRIBUTARY_KAFKA_PORT:-9092}.
#
# Usage: scripts/services.sh up|down|status|restart postgres|restart kafka
# `up` installs what is missing (apt, Maven), is idempotent, and returns once both services answer.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEV="$ROOT/.dev"
PG_PORT=${TRIBUTARY_PG_PORT:-5432}
KAFKA_PORT=${TRIBUTARY_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${TRIBUTARY_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
KAFKA_DIR="$DEV/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"

# Roles for authentication tests, one per password method the source must speak.
# Passwords here are test fixtures for a loopback-only cluster.
SCRAM_ROLE=tributary
SCRAM_PASSWORD=tributary-scram-pw
MD5_ROLE=tributary_md5
MD5_PASSWORD=tributary-md5-pw
CLEARTEXT_ROLE=tributary_cleartext
CLEARTEXT_PASSWORD=tributary-cleartext-pw

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  log "installing $* with apt-get"
  if [ ! -f "$DEV/.apt-updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    mkdir -p "$DEV" && touch "$DEV/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
    printf '%s\n' "$dir"
  fi
}

ensure_pg_installed() {
  if [ -z "$(pg_bindir)" ]; then
    apt_install postgresql
  fi
  [ -n "$(pg_bindir)" ] || die "PostgreSQL server binaries not found after installing; expected /usr/lib/postgresql/<version>/bin/initdb"
  # The package may start its own cluster on our port; ours must own it.
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | while read -r ver name port status _; do
      if [ "$port" = "$PG_PORT" ] && [ "$status" = online ]; then
        log "stopping the packaged cluster $ver/$name, which holds port $PG_PORT"
        pg_ctlcluster "$ver" "$name" stop || true
      fi
    done
  fi
}

# The cluster must live where the postgres user can reach it. When the checkout sits below a
# directory that user cannot traverse (/root, say), .dev/postgres links to a folder under /var/lib.
pg_home() {
  local home="$DEV/postgres"
  if [ -L "$home" ] || [ -d "$home" ]; then
    readlink -f "$home"; return
  fi
  mkdir -p "$DEV"
  if runuser -u postgres -- test -x "$DEV"; then
    install -d -o postgres -g postgres "$home"
  else
    local elsewhere
    elsewhere="/var/lib/tributary/$(printf '%s' "$ROOT" | md5sum | cut -c1-12)/postgres"
    log "postgres cannot traverse $DEV; keeping the cluster in $elsewhere (linked from .dev/postgres)"
    install -d -o postgres -g postgres "$elsewhere"
    ln -s "$elsewhere" "$home"
  fi
  readlink -f "$home"
}

as_postgres() { runuser -u postgres -- "$@"; }

pg_init() {
  local home=$1 bin=$2
  local data="$home/data"
  if [ -f "$data/PG_VERSION" ]; then return; fi
  log "creating a PostgreSQL cluster in $data"
  install -d -o postgres -g postgres -m 700 "$data"
  as_postgres "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=trust \
    --encoding=UTF8 --locale=C.UTF-8 >"$home/initdb.log" 2>&1 ||
    { cat "$home/initdb.log" >&2; die "initdb failed (log above)"; }
  # Superuser `postgres` is trusted on loopback; every other role must authenticate, each with the
  # method named after it, so the source's authentication paths are exercised for real.
  cat >"$data/pg_hba.conf" <<EOF
# TYPE  DATABASE     USER                  ADDRESS        METHOD
local   all          postgres                             trust
host    all          postgres              127.0.0.1/32   trust
host    replication  postgres              127.0.0.1/32   trust
host    all          $MD5_ROLE         127.0.0.1/32   md5
host    replication  $MD5_ROLE         127.0.0.1/32   md5
host    all          $CLEARTEXT_ROLE   127.0.0.1/32   password
host    replication  $CLEARTEXT_ROLE   127.0.0.1/32   password
local   all          all                                  scram-sha-256
host    all          all                   127.0.0.1/32   scram-sha-256
host    replication  all                   127.0.0.1/32   scram-sha-256
EOF
  echo "include_if_exists = 'tributary.conf'" >>"$data/postgresql.conf"
  chown postgres:postgres "$data/pg_hba.conf" "$data/postgresql.conf"
}

# A private CA and a server certificate for `localhost` (not 127.0.0.1, so tests can tell
# verify-ca from verify-full). Clients trust .dev/postgres/tls/ca.crt.
pg_tls_files() {
  local tls="$1/tls"
  if [ -f "$tls/server.key" ]; then return; fi
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  install -d -m 755 "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tributary test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$tls/server.key" -out "$tls/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=DNS:localhost\n' >"$tls/san.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 3650 -extfile "$tls/san.ext" -out "$tls/server.crt" >/dev/null 2>&1
  chown postgres:postgres "$tls/server.key" "$tls/server.crt"
  chmod 600 "$tls/server.key"
  chmod 644 "$tls/ca.crt" "$tls/server.crt"
}

pg_write_settings() {
  local home=$1
  install -d -o postgres -g postgres "$home/run"
  pg_tls_files "$home"
  cat >"$home/data/tributary.conf" <<EOF
# Written by scripts/services.sh on every start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$home/run'
wal_level = logical
max_replication_slots = 32
max_wal_senders = 32
max_connections = 200
wal_sender_timeout = '10s'
logical_decoding_work_mem = '256MB'
password_encryption = 'scram-sha-256'
max_wal_size = '4GB'
ssl = on
ssl_cert_file = '$home/tls/server.crt'
ssl_key_file = '$home/tls/server.key'
EOF
  chown postgres:postgres "$home/data/tributary.conf"
}

psql_su() {
  "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"
}

pg_create_roles() {
  psql_su >/dev/null <<EOF
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$SCRAM_ROLE') THEN
    CREATE ROLE $SCRAM_ROLE LOGIN REPLICATION CREATEDB;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$MD5_ROLE') THEN
    CREATE ROLE $MD5_ROLE LOGIN REPLICATION CREATEDB;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$CLEARTEXT_ROLE') THEN
    CREATE ROLE $CLEARTEXT_ROLE LOGIN REPLICATION CREATEDB;
  END IF;
END
\$\$;
SET password_encryption = 'scram-sha-256';
ALTER ROLE $SCRAM_ROLE PASSWORD '$SCRAM_PASSWORD';
ALTER ROLE $CLEARTEXT_ROLE PASSWORD '$CLEARTEXT_PASSWORD';
SET password_encryption = 'md5';
ALTER ROLE $MD5_ROLE PASSWORD '$MD5_PASSWORD';
EOF
}

pg_running() {
  local home=$1
  [ -f "$home/data/postmaster.pid" ] && as_postgres "$(pg_bindir)/pg_ctl" -D "$home/data" status >/dev/null 2>&1
}

pg_up() {
  ensure_pg_installed
  local bin home
  bin=$(pg_bindir)
  home=$(pg_home)
  pg_init "$home" "$bin"
  if pg_running "$home"; then
    log "PostgreSQL already running ($home/data)"
  else
    if port_open "$PG_PORT"; then
      die "port $PG_PORT is taken by another process; stop it or set TRIBUTARY_PG_PORT to a free port"
    fi
    pg_write_settings "$home"
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_postgres "$bin/pg_ctl" -D "$home/data" -l "$home/server.log" -w -t 60 start >/dev/null ||
      { tail -n 30 "$home/server.log" >&2; die "PostgreSQL did not start (log: $home/server.log)"; }
  fi
  local i
  for i in $(seq 1 60); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then break; fi
    sleep 1
  done
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL does not accept connections on port $PG_PORT"
  pg_create_roles
  local wal_level
  wal_level=$(psql_su -tAc 'SHOW wal_level')
  [ "$wal_level" = logical ] || die "PostgreSQL runs with wal_level=$wal_level, expected logical"
}

pg_down() {
  local home bin
  home=$(readlink -f "$DEV/postgres" 2>/dev/null || echo "$DEV/postgres")
  bin=$(pg_bindir)
  if [ -n "$bin" ] && [ -f "$home/data/postmaster.pid" ]; then
    log "stopping PostgreSQL"
    as_postgres "$bin/pg_ctl" -D "$home/data" -m fast -w -t 60 stop >/dev/null || true
  fi
}

pg_status() {
  local home
  home=$(readlink -f "$DEV/postgres" 2>/dev/null || echo "$DEV/postgres")
  if [ -n "$(pg_bindir)" ] && pg_running "$home"; then
    local pid
    pid=$(head -n 1 "$home/data/postmaster.pid")
    echo "postgres: running  127.0.0.1:$PG_PORT  pid $pid  data $home/data  log $home/server.log"
    return 0
  fi
  echo "postgres: stopped"
  return 1
}

# ---------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------

ensure_java() {
  if ! command -v java >/dev/null 2>&1; then apt_install openjdk-17-jre-headless; fi
  local major
  major=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  [ "${major%%.*}" -ge 17 ] 2>/dev/null || die "Kafka 4 needs Java 17 or newer; found Java $major (set PATH to a newer java)"
}

ensure_kafka_libs() {
  if [ -f "$KAFKA_LIBS/.complete" ]; then return; fi
  command -v mvn >/dev/null 2>&1 || apt_install maven
  log "resolving Kafka jars from Maven Central into $KAFKA_LIBS (once)"
  rm -rf "$KAFKA_LIBS" "$KAFKA_LIBS.partial"
  mkdir -p "$KAFKA_DIR"
  (cd "$ROOT/scripts/kafka" &&
    mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$KAFKA_LIBS.partial") >&2 || die "mvn could not resolve the Kafka jars (see above)"
  mv "$KAFKA_LIBS.partial" "$KAFKA_LIBS"
  touch "$KAFKA_LIBS/.complete"
}

kafka_java() { java -cp "$KAFKA_LIBS/*" "$@"; }

kafka_write_config() {
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  cat >"$KAFKA_DIR/server.properties" <<EOF
# Written by scripts/services.sh on every start: one node that is broker and KRaft controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
}

kafka_pid() {
  local pid
  [ -f "$KAFKA_DIR/broker.pid" ] || return 1
  pid=$(cat "$KAFKA_DIR/broker.pid")
  kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

kafka_metadata_answers() {
  timeout 60 java -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list >/dev/null 2>&1
}

kafka_up() {
  ensure_java
  ensure_kafka_libs
  if kafka_pid >/dev/null; then
    log "Kafka already running (pid $(kafka_pid))"
  else
    if port_open "$KAFKA_PORT"; then
      die "port $KAFKA_PORT is taken by another process; stop it or set TRIBUTARY_KAFKA_PORT to a free port"
    fi
    kafka_write_config
    if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
      log "formatting Kafka storage in $KAFKA_DIR/data (once)"
      local cluster_id
      cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid)
      kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" >&2
    fi
    log "starting Kafka on 127.0.0.1:$KAFKA_PORT"
    # setsid: the broker must outlive the shell that started it (tests run after this returns).
    setsid java -Xms512m -Xmx1g -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true -Dkafka.logs.dir="$KAFKA_DIR/logs" \
      -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
      -Dtributary.kafka.dir="$KAFKA_DIR" \
      -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
      >"$KAFKA_DIR/broker.out" 2>&1 </dev/null &
    echo $! >"$KAFKA_DIR/broker.pid"
  fi
  local i
  for i in $(seq 1 90); do
    if port_open "$KAFKA_PORT"; then break; fi
    kafka_pid >/dev/null || { tail -n 40 "$KAFKA_DIR/broker.out" "$KAFKA_DIR/logs/server.log" >&2 2>/dev/null || true; die "Kafka exited during start (logs above)"; }
    sleep 1
  done
  kafka_metadata_answers || die "Kafka does not answer metadata requests on 127.0.0.1:$KAFKA_PORT (log: $KAFKA_DIR/logs/server.log)"
}

kafka_down() {
  local pid
  if pid=$(kafka_pid); then
    log "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "Kafka did not stop in 30 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$KAFKA_DIR/broker.pid"
  # A broker whose pid file was lost is still ours if it runs on our config.
  pkill -KILL -f "kafka.Kafka $KAFKA_DIR/server.properties" 2>/dev/null || true
}

kafka_status() {
  local pid
  if pid=$(kafka_pid); then
    echo "kafka:    running  127.0.0.1:$KAFKA_PORT  pid $pid  data $KAFKA_DIR/data  log $KAFKA_DIR/logs/server.log"
    return 0
  fi
  echo "kafka:    stopped"
  return 1
}

# ---------------------------------------------------------------------------------------------

case "${1:-}" in
  up)
    pg_up
    kafka_up
    pg_status
    kafka_status
    ;;
  down)
    kafka_down
    pg_down
    pg_status || true
    kafka_status || true
    ;;
  restart)
    # For failure tests: stop one service and bring it back as it was.
    case "${2:-}" in
      postgres) pg_down; pg_up; pg_status ;;
      kafka) kafka_down; kafka_up; kafka_status ;;
      *) echo "usage: $0 restart postgres|kafka" >&2; exit 2 ;;
    esac
    ;;
  status)
    rc=0
    pg_status || rc=1
    kafka_status || rc=1
    exit $rc
    ;;
  *)
    echo "usage: $0 up|down|status|restart postgres|restart kafka" >&2
    exit 2
    ;;
esac
