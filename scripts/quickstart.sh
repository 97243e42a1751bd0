#!/usr/bin/env bash
# The whole pipeline on this machine, in one command:
#   PostgreSQL (shop) ──source──▶ Kafka ──window-aggregate──▶ shop_analytics.analytics.orders_revenue_1m
#                                       └─postgres-sink────▶ shop_replica.public.customers
# It starts PostgreSQL and Kafka (scripts/services.sh), builds the release binary, starts
# `tributary serve`, creates the demo database, registers the connectors in connectors/ over
# REST, runs a live order workload and prints what came out.
#
# Usage: scripts/quickstart.sh          run (again: harmless, it picks up what is there)
#        scripts/quickstart.sh --stop   stop tributary, drop the demo databases, stop the services
# Environment: QUICKSTART_SECONDS (how long the live workload runs, default 40).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$ROOT/.dev/quickstart"
REST=http://127.0.0.1:8083
REGISTRY=http://127.0.0.1:8081
KAFKA=127.0.0.1:9092
PG_PORT=5432
WORKLOAD_SECONDS=${QUICKSTART_SECONDS:-40}
CONNECTORS=(postgres-source postgres-sink-customers window-revenue)
# "already exists, skipping" on a second run is no news.
export PGOPTIONS="-c client_min_messages=warning"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'quickstart: error: %s\n' "$*" >&2; exit 1; }

psql_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/psql" ]; then echo "$dir/psql"; else command -v psql; fi
}
sql() { # sql <database> <statement>: rows unaligned, no headers
  "$(psql_bin)" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$1" -At -c "$2"
}
sql_table() { # sql_table <database> <query>: a readable table
  "$(psql_bin)" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$1" -c "$2"
}

serve_running() { curl -fsS -o /dev/null "$REST/" 2>/dev/null; }

connector_name() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["name"])' "$ROOT/connectors/$1.json"; }

stop_all() {
  # Read once: `status | grep -q` would end the status early, and pipefail turn that into "no".
  local services
  services=$("$ROOT/scripts/services.sh" status 2>/dev/null || true)
  if serve_running; then
    # Stopped, offsets forgotten, deleted: a later run starts the demo connectors afresh on new
    # databases instead of resuming from positions that no longer exist.
    step "removing the demo connectors"
    for file in "${CONNECTORS[@]}"; do
      name=$(connector_name "$file")
      curl -fsS -o /dev/null -X PUT "$REST/connectors/$name/stop" 2>/dev/null || continue
      curl -fsS -o /dev/null -X DELETE "$REST/connectors/$name/offsets" || note "could not reset the offsets of $name"
      curl -fsS -o /dev/null -X DELETE "$REST/connectors/$name" && note "deleted $name"
    done
  fi
  if [ -d "$ROOT/.dev/kafka/libs" ] && grep -q '^kafka: *running' <<<"$services"; then
    # The demo's change topics go too: a later run must not replay events of rows that are gone.
    step "deleting the demo topics (shop.*)"
    java -cp "$ROOT/.dev/kafka/libs/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA" \
      --delete --if-exists --topic 'shop\..*' 2>/dev/null || note "could not delete the shop.* topics"
  fi
  step "stopping tributary serve"
  if [ -f "$STATE/tributary.pid" ] && kill -0 "$(cat "$STATE/tributary.pid")" 2>/dev/null; then
    kill "$(cat "$STATE/tributary.pid")"
    for _ in $(seq 1 50); do kill -0 "$(cat "$STATE/tributary.pid")" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$STATE/tributary.pid"
  if grep -q '^postgres: *running' <<<"$services"; then
    step "dropping the demo databases and the replication slot"
    sql postgres "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                   WHERE slot_name = 'tributary_shop' AND NOT active" >/dev/null || true
    for db in shop shop_replica shop_analytics; do
      sql postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    done
  fi
  step "stopping PostgreSQL and Kafka"
  "$ROOT/scripts/services.sh" down
  rm -rf "$STATE"
  echo "stopped."
}

if [ "${1:-}" = "--stop" ]; then stop_all; exit 0; fi
[ $# -eq 0 ] || die "unknown argument $1 (use no argument to run, --stop to tear down)"

mkdir -p "$STATE"

step "1/7 PostgreSQL and Kafka"
"$ROOT/scripts/services.sh" up
command -v curl >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl; }
if ! command -v kcat >/dev/null 2>&1; then
  note "installing kcat (to show records from the topics)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat
fi

step "2/7 building tributary (release; the first build takes a few minutes)"
(cd "$ROOT" && cargo build --release --quiet)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tributary"
[ -x "$BIN" ] || die "no binary at $BIN after cargo build --release"

step "3/7 demo databases: shop (source), shop_replica, shop_analytics"
for db in shop shop_replica shop_analytics; do
  if [ "$(sql postgres "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = "0" ]; then
    sql postgres "CREATE DATABASE $db" >/dev/null
    note "created database $db"
  fi
done
"$(psql_bin)" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d shop -f "$ROOT/demo/shop.sql" >/dev/null
note "shop: $(sql shop "SELECT count(*) FROM customers") customers, $(sql shop "SELECT count(*) FROM orders") orders"
sql shop_analytics "CREATE SCHEMA IF NOT EXISTS analytics" >/dev/null

step "4/7 tributary serve (REST $REST, schema registry $REGISTRY)"
if serve_running; then
  note "already running"
else
  nohup "$BIN" serve --config "$ROOT/config/tributary.toml" >"$STATE/tributary.log" 2>&1 &
  echo $! >"$STATE/tributary.pid"
  for _ in $(seq 1 300); do
    serve_running && break
    kill -0 "$(cat "$STATE/tributary.pid")" 2>/dev/null || { tail -n 20 "$STATE/tributary.log" >&2; die "tributary serve exited; log above ($STATE/tributary.log)"; }
    sleep 0.2
  done
  serve_running || die "tributary serve did not answer on $REST; see $STATE/tributary.log"
  note "started (pid $(cat "$STATE/tributary.pid"), log $STATE/tributary.log)"
fi

step "5/7 registering the connectors over REST"
for file in "${CONNECTORS[@]}"; do
  json="$ROOT/connectors/$file.json"
  name=$(connector_name "$file")
  # PUT .../config creates, updates, or (the same config again) leaves a connector running.
  config=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["config"]))' "$json")
  code=$(curl -sS -o "$STATE/response.json" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
              --data "$config" "$REST/connectors/$name/config")
  case "$code" in
    200|201) note "$name ($file.json): $( [ "$code" = 201 ] && echo created || echo 'registered (updated, or unchanged and left running)')" ;;
    *) cat "$STATE/response.json" >&2; echo >&2; die "registering $name answered HTTP $code" ;;
  esac
done
for file in "${CONNECTORS[@]}"; do
  name=$(connector_name "$file")
  state=""
  for _ in $(seq 1 100); do
    state=$(curl -fsS "$REST/connectors/$name/status" | python3 -c 'import json,sys; s=json.load(sys.stdin); print((s["tasks"] or [{"state":"?"}])[0]["state"])')
    [ "$state" = RUNNING ] && break
    [ "$state" = FAILED ] && { curl -fsS "$REST/connectors/$name/status" >&2; echo >&2; die "$name failed"; }
    sleep 0.2
  done
  note "$name: $state"
done

step "6/7 live order workload for ${WORKLOAD_SECONDS}s (inserts, status updates, refunds as deletes)"
end=$((SECONDS + WORKLOAD_SECONDS))
round=0
while [ $SECONDS -lt $end ]; do
  round=$((round + 1))
  # Some orders arrive a little out of order (created_at up to 20 s in the past).
  sql shop "
    BEGIN;
    INSERT INTO orders (customer_id, amount, status, created_at)
      SELECT 1 + floor(random() * 2000)::int, round((5 + random() * 200)::numeric, 2), 'new',
             now() - (random() * 20) * interval '1 second'
        FROM generate_series(1, 40);
    UPDATE orders SET status = 'paid', amount = amount + 1
     WHERE id IN (SELECT id FROM orders WHERE status = 'new' AND created_at > now() - interval '1 minute'
                   ORDER BY random() LIMIT 10);
    DELETE FROM orders
     WHERE id IN (SELECT id FROM orders WHERE status = 'new' AND created_at > now() - interval '1 minute'
                   ORDER BY random() LIMIT 2);
    UPDATE customers SET email = 'moved' || $round || '@example.com'
     WHERE id = 1 + floor(random() * 2000)::int;
    COMMIT;" >/dev/null
  if [ $((round % 10)) -eq 0 ]; then
    note "$(sql shop "SELECT count(*) FROM orders") orders in shop, $((end - SECONDS))s to go"
  fi
  sleep 0.5
done
note "workload done; waiting a few seconds for the last changes to flow through"
sleep 8

step "7/7 what came out"
echo
echo "--- change events on topic shop.public.orders, the newest of each kind (Debezium JSON payload):"
kcat -b "$KAFKA" -C -t shop.public.orders -o -300 -e -q -X isolation.level=read_committed 2>/dev/null |
  python3 -c '
import json, sys
newest = {}
for line in sys.stdin:
    line = line.strip()
    if line:
        payload = json.loads(line).get("payload") or {}
        newest[payload.get("op")] = payload
for op in ("c", "u", "d"):
    payload = newest.get(op)
    if payload:
        source = payload.get("source") or {}
        shown = {"op": op, "before": payload.get("before"), "after": payload.get("after"),
                 "source": {k: source.get(k) for k in ("table", "txId", "lsn")}}
        print(json.dumps(shown))
'
echo
echo "--- analytics.orders_revenue_1m in shop_analytics (revenue per customer per minute, top 10 by revenue):"
sql_table shop_analytics "SELECT customer_id, window_start, window_end, revenue, orders, avg_amount, max_amount
                            FROM analytics.orders_revenue_1m ORDER BY revenue DESC, window_start LIMIT 10" ||
  note "(the table is not there yet; see $STATE/tributary.log)"
revenue_in_analytics() {
  sql shop_analytics "SELECT customer_id || ' ' || extract(epoch FROM window_start)::bigint || ' ' || revenue || ' ' || orders
                        FROM analytics.orders_revenue_1m ORDER BY 1" 2>/dev/null
}
revenue_by_group_by() {
  sql shop "SELECT customer_id || ' ' || (floor(extract(epoch FROM created_at) / 60) * 60)::bigint || ' ' || sum(amount) || ' ' || count(*)
              FROM orders GROUP BY customer_id, floor(extract(epoch FROM created_at) / 60) ORDER BY 1"
}
printf '    %-44s %s\n' "windows in the analytics table:" "$(sql shop_analytics "SELECT count(*) FROM analytics.orders_revenue_1m" 2>/dev/null || echo 'not there yet')"
printf '    %-44s %s\n' "windows differing from GROUP BY over orders:" "$(diff <(revenue_in_analytics) <(revenue_by_group_by) | grep -c '^[<>]' || true)"
echo
echo "--- replica (shop_replica.public.customers) beside its source (shop.public.customers):"
printf '    %-28s %s\n' "source rows:" "$(sql shop "SELECT count(*) FROM customers")"
printf '    %-28s %s\n' "replica rows:" "$(sql shop_replica "SELECT count(*) FROM customers" 2>/dev/null || echo 'not there yet')"
customers_of() { sql "$1" "SELECT id || ' ' || name || ' ' || email || ' ' || country FROM customers ORDER BY id" 2>/dev/null; }
printf '    %-28s %s\n' "rows that differ:" "$(diff <(customers_of shop) <(customers_of shop_replica) | grep -c '^[<>]' || true)"
echo
echo "--- connectors:"
for file in "${CONNECTORS[@]}"; do
  name=$(connector_name "$file")
  curl -fsS "$REST/connectors/$name/status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
task = (s["tasks"] or [{"state": "-"}])[0]["state"]
print("    %-28s %-7s connector %-8s task %s" % (s["name"], s["type"], s["connector"]["state"], task))'
done
cat <<EOF

Everything keeps running. Where to look:
    REST API (Kafka Connect-compatible)  $REST/connectors
    schema registry (Confluent API)      $REGISTRY/subjects
    Prometheus metrics                   $REST/metrics
    tributary log                        $STATE/tributary.log
    databases (psql -h 127.0.0.1 -U postgres -d ...)  shop, shop_replica, shop_analytics
Tear down with: scripts/quickstart.sh --stop
EOF
