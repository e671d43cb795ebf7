#!/usr/bin/env bash
# Build, start, stop a real SPIRE server and agent (v1.13.3) for
# lightmesh's Workload API integration test (identity/workload).
#
#   bash scripts/spire.sh install   # build spire-server + spire-agent once (cached)
#   bash scripts/spire.sh start     # install + start server and agent, wait until healthy
#   bash scripts/spire.sh entry ARGS...  # spire-server entry create ARGS..., -parentID = our agent
#   bash scripts/spire.sh delete ENTRY_ID...  # spire-server entry delete
#   bash scripts/spire.sh stop      # stop the agent and the server started by this script
#   bash scripts/spire.sh logs      # print the tail of both logs
#
# On success `start` prints the agent's Workload API address
# (unix:///.../agent.sock) on stdout, the form workload.NewSource and
# SPIFFE_ENDPOINT_SOCKET take; progress goes to stderr, so
# export LIGHTMESH_SPIRE_SOCKET=$(bash scripts/spire.sh start) works.
#
# Where SPIRE comes from: no OS package ships it and GitHub is reached only
# through the Go module proxy, which serves github.com/spiffe/spire v1.13.3
# (not @latest, not v1.12.4) when it is required as a tool of a module:
# `go get -tool ...@v1.13.3` in a throwaway module under the cache dir, then
# `go install` (cgo: SQLite). The build takes minutes (6-10 on a quiet
# 2-core machine, 24 on a loaded one); the binaries are kept and reused.
#
# The server: trust domain lightmesh.test, SQLite datastore and keys in
# memory (fresh at each start), join_token node attestation, listening on
# 127.0.0.1 only. The agent: attested by a join token the script
# generates, insecure_bootstrap (it trusts the local server on first
# contact), unix workload attestor (selectors unix:uid:N, unix:gid:N, ...).
# Everything (build module, binaries, configs, data, sockets, logs, pid
# files) lives under LIGHTMESH_SPIRE_HOME, nothing in the git work tree.
#
# Environment:
#   LIGHTMESH_SPIRE_HOME     cache + state dir (default ~/.cache/lightmesh/spire)
#   SPIRE_BIN_DIR            use spire-server and spire-agent from this dir
#                            instead of building them
#   LIGHTMESH_SPIRE_PORT     server port on 127.0.0.1 (default 18081)
#   LIGHTMESH_SPIRE_TIMEOUT  seconds to wait for health (default 60)
set -euo pipefail

SPIRE_VERSION=v1.13.3
TRUST_DOMAIN=lightmesh.test
HOME_DIR="${LIGHTMESH_SPIRE_HOME:-${HOME:-/root}/.cache/lightmesh/spire}"
PORT="${LIGHTMESH_SPIRE_PORT:-18081}"
TIMEOUT="${LIGHTMESH_SPIRE_TIMEOUT:-60}"
BIN_DIR="${SPIRE_BIN_DIR:-${HOME_DIR}/bin}"
SERVER="${BIN_DIR}/spire-server"
AGENT="${BIN_DIR}/spire-agent"
RUN_DIR="${HOME_DIR}/run-${PORT}"
SERVER_SOCK="${RUN_DIR}/server/api.sock"
AGENT_SOCK="${RUN_DIR}/agent/agent.sock"
AGENT_ID_FILE="${RUN_DIR}/agent-id"

log() { printf 'spire.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# have_binaries: both binaries exist and report the version we build.
have_binaries() {
  local b v
  for b in "$SERVER" "$AGENT"; do
    [[ -x "$b" ]] || return 1
    v=$("$b" --version 2>&1) || return 1
    [[ "$v" == "${SPIRE_VERSION#v}"* ]] || { log "$b reports $v, want ${SPIRE_VERSION#v}"; return 1; }
  done
}

cmd_install() {
  if have_binaries; then
    log "using $SERVER and $AGENT ($("$SERVER" --version 2>&1))"
    return 0
  fi
  [[ -z "${SPIRE_BIN_DIR:-}" ]] || die "SPIRE_BIN_DIR=$SPIRE_BIN_DIR has no spire-server/spire-agent ${SPIRE_VERSION}"
  command -v go >/dev/null || die "go is required to build SPIRE"
  command -v gcc >/dev/null || command -v cc >/dev/null || die "a C compiler is required (SPIRE's SQLite datastore needs cgo)"
  mkdir -p "$HOME_DIR"
  exec 8>"${HOME_DIR}/.build.lock"
  if command -v flock >/dev/null 2>&1; then flock -w 3600 8 || die "could not lock ${HOME_DIR}/.build.lock"; fi
  have_binaries && return 0
  local mod="${HOME_DIR}/build" t0=$SECONDS
  rm -rf "$mod"
  mkdir -p "$mod" "$BIN_DIR"
  log "building SPIRE ${SPIRE_VERSION} from its Go module (first run only; minutes)"
  (
    cd "$mod"
    export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=1
    go mod init lightmesh.local/spire-build >/dev/null 2>&1
    go get -tool "github.com/spiffe/spire/cmd/spire-server@${SPIRE_VERSION}" "github.com/spiffe/spire/cmd/spire-agent@${SPIRE_VERSION}"
    GOBIN="$BIN_DIR" go install github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
  ) >"${HOME_DIR}/build.log" 2>&1 || { tail -n 40 "${HOME_DIR}/build.log" >&2; die "building SPIRE failed (log: ${HOME_DIR}/build.log)"; }
  have_binaries || die "the build left no usable binaries in $BIN_DIR"
  log "built SPIRE ${SPIRE_VERSION} into $BIN_DIR in $((SECONDS - t0))s"
}

# pid_of NAME: the pid from RUN_DIR/NAME.pid when that process is alive
# and runs our binary (guards against a stale file whose pid was reused).
pid_of() {
  local f="${RUN_DIR}/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q "spire-$1" || return 1
  echo "$pid"
}

server_healthy() { "$SERVER" healthcheck -socketPath "$SERVER_SOCK" >/dev/null 2>&1; }
agent_healthy() { "$AGENT" healthcheck -socketPath "$AGENT_SOCK" >/dev/null 2>&1; }

# launch NAME ARGS...: start a process in its own session (it outlives
# this script) writing RUN_DIR/NAME.pid and RUN_DIR/NAME.log.
launch() {
  local name="$1" _
  shift
  rm -f "${RUN_DIR}/${name}.pid"
  # 8>&- 9>&-: the daemons must not hold the script's locks, or the next
  # start or install waits for them forever.
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "${RUN_DIR}/${name}.pid" "$@" \
    </dev/null >>"${RUN_DIR}/${name}.log" 2>&1 8>&- 9>&- &
  for _ in $(seq 1 50); do
    [[ -s "${RUN_DIR}/${name}.pid" ]] && return 0
    sleep 0.1
  done
  die "spire-$name did not start (see ${RUN_DIR}/${name}.log)"
}

# wait_healthy NAME CHECK: until CHECK succeeds, the process dies or TIMEOUT.
wait_healthy() {
  local name="$1" check="$2" deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    "$check" && return 0
    if ! pid_of "$name" >/dev/null; then
      log "spire-$name exited before it became healthy"
      tail -n 40 "${RUN_DIR}/${name}.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  log "spire-$name was not healthy within ${TIMEOUT}s"
  tail -n 40 "${RUN_DIR}/${name}.log" >&2 || true
  return 1
}

write_configs() {
  cat >"${RUN_DIR}/server.conf" <<EOF
server {
  bind_address = "127.0.0.1"
  bind_port = "${PORT}"
  socket_path = "${SERVER_SOCK}"
  trust_domain = "${TRUST_DOMAIN}"
  data_dir = "${RUN_DIR}/server/data"
  log_level = "INFO"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "${RUN_DIR}/server/data/datastore.sqlite3"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
}
EOF
  cat >"${RUN_DIR}/agent.conf" <<EOF
agent {
  data_dir = "${RUN_DIR}/agent/data"
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "${PORT}"
  socket_path = "${AGENT_SOCK}"
  trust_domain = "${TRUST_DOMAIN}"
  insecure_bootstrap = true
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
EOF
}

cmd_start() {
  mkdir -p "$HOME_DIR"
  exec 9>"${HOME_DIR}/.start.lock"
  if command -v flock >/dev/null 2>&1; then flock -w 3600 9 || die "could not lock ${HOME_DIR}/.start.lock"; fi
  if pid_of server >/dev/null && pid_of agent >/dev/null && server_healthy && agent_healthy; then
    log "already running and healthy (server pid $(pid_of server), agent pid $(pid_of agent))"
    echo "unix://${AGENT_SOCK}"
    return 0
  fi
  cmd_stop 2>/dev/null || true
  if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then
    die "port ${PORT} on 127.0.0.1 is already in use (set LIGHTMESH_SPIRE_PORT)"
  fi
  cmd_install
  # Keys live in memory, so a server's data outlives it only as entries
  # no key can serve: every start is fresh.
  rm -rf "$RUN_DIR"
  mkdir -p "${RUN_DIR}/server/data" "${RUN_DIR}/agent/data"
  write_configs
  local t0=$SECONDS token
  launch server "$SERVER" run -config "${RUN_DIR}/server.conf"
  wait_healthy server server_healthy || { cmd_stop; exit 1; }
  token=$("$SERVER" token generate -socketPath "$SERVER_SOCK" -ttl 600 | sed -n 's/^Token: //p')
  [[ -n "$token" ]] || { cmd_stop; die "spire-server token generate gave no token"; }
  # A join-token agent is spiffe://TD/spire/agent/join_token/TOKEN: the
  # parent of the entries `entry` creates.
  echo "spiffe://${TRUST_DOMAIN}/spire/agent/join_token/${token}" >"$AGENT_ID_FILE"
  launch agent "$AGENT" run -config "${RUN_DIR}/agent.conf" -joinToken "$token"
  wait_healthy agent agent_healthy || { cmd_stop; exit 1; }
  log "SPIRE $("$SERVER" --version 2>&1) healthy after $((SECONDS - t0))s: server 127.0.0.1:${PORT} (admin socket ${SERVER_SOCK}), agent $(cat "$AGENT_ID_FILE")"
  echo "unix://${AGENT_SOCK}"
}

# cmd_entry ARGS...: create a registration entry under our agent, e.g.
#   entry -spiffeID spiffe://lightmesh.test/api -selector unix:uid:$(id -u) -x509SVIDTTL 20
cmd_entry() {
  [[ -s "$AGENT_ID_FILE" ]] || die "not started (no ${AGENT_ID_FILE}); run: bash scripts/spire.sh start"
  "$SERVER" entry create -socketPath "$SERVER_SOCK" -parentID "$(cat "$AGENT_ID_FILE")" "$@" >&2
}

cmd_delete() {
  local id rc=0
  for id in "$@"; do
    "$SERVER" entry delete -socketPath "$SERVER_SOCK" -entryID "$id" >&2 || rc=1
  done
  return $rc
}

# terminate NAME: SIGTERM, wait up to 10 s, then SIGKILL.
terminate() {
  local pid _
  pid=$(pid_of "$1") || { rm -f "${RUN_DIR}/$1.pid"; return 0; }
  log "stopping spire-$1 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "${RUN_DIR}/$1.pid"; return 0; }
    sleep 0.1
  done
  log "spire-$1 (pid $pid) did not exit after 10s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "${RUN_DIR}/$1.pid"
}

cmd_stop() {
  terminate agent
  terminate server
}

cmd_logs() {
  local f
  for f in "${RUN_DIR}/server.log" "${RUN_DIR}/agent.log"; do
    [[ -s "$f" ]] || continue
    log "---- last lines of $f ----"
    tail -n 60 "$f" >&2
  done
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  entry) shift; cmd_entry "$@" ;;
  delete) shift; cmd_delete "$@" ;;
  stop) cmd_stop ;;
  logs) cmd_logs ;;
  *)
    echo "usage: $0 {install|start|entry ARGS...|delete ENTRY_ID...|stop|logs}" >&2
    exit 2
    ;;
esac
