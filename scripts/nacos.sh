#!/usr/bin/env bash
# Start, stop or check a real Nacos 2.x server (standalone, embedded Derby)
# for lightmesh's integration tests.
#
#   bash scripts/nacos.sh start    # fetch (first time) + start + wait until ready
#   bash scripts/nacos.sh status   # exit 0 when the server answers "ready"
#   bash scripts/nacos.sh stop     # stop the server started by this script
#   bash scripts/nacos.sh kill     # SIGKILL it, as a crash would (fault tests)
#   bash scripts/nacos.sh logs     # print the tail of the server log
#
# On success `start` prints the HTTP address (127.0.0.1:8848) on stdout; all
# progress messages go to stderr, so ADDR=$(bash scripts/nacos.sh start) works.
# gRPC (used by nacos-sdk-go v2) is on HTTP port + 1000 (9848).
#
# Where the server comes from: the upstream Nacos project does not publish its
# server modules to Maven Central (only the client/api/common jars), and no
# other download source is reachable here. The JeecgBoot project publishes a
# rebuild of the Nacos 2.3.2 server modules on Maven Central under
# org.jeecgframework.nacos (same com.alibaba.nacos.* classes; the server
# reports version 2.3.2; nacos-console pulls in config, naming, core, Derby
# and the default plugins). We resolve it with Maven, copy the jars into a
# cache directory and run com.alibaba.nacos.Nacos from a plain classpath that
# keeps Maven's dependency order (the order matters: two hessian jars are on
# the classpath and com.caucho:hessian must come before com.alipay.sofa:hessian,
# as in the upstream fat jar).
#
# Nothing is written into the git work tree: the generated pom.xml, the jars,
# the Nacos home (logs, Derby data, raft data) and the pid file all live under
# LIGHTMESH_NACOS_HOME.
#
# Environment:
#   LIGHTMESH_NACOS_HOME       cache + state dir (default ~/.cache/lightmesh/nacos)
#   LIGHTMESH_NACOS_PORT       HTTP port (default 8848; gRPC = +1000, raft = -1000)
#   LIGHTMESH_NACOS_TIMEOUT    seconds to wait for readiness (default 180)
#   LIGHTMESH_NACOS_JAVA_OPTS  JVM options (default "-Xms256m -Xmx512m ..."; the
#                              SerialGC + C1-only defaults boot ~30% faster on 2 cores)
#   LIGHTMESH_NACOS_FRESH=1    wipe the server's data (configs, instances) on start
#   LIGHTMESH_NACOS_SERVER_ARGS extra Spring/Nacos arguments for the server, e.g.
#                              "--nacos.naming.push.pushTaskDelay=100" (naming
#                              push batching delay, 500 ms by default)
#   LIGHTMESH_NACOS_AUTH=1     start with authentication on, as deployed servers
#                              run (Nacos 3.3 turns it on by default): clients
#                              must log in. The user is "nacos"; its password
#                              is set to LIGHTMESH_NACOS_PASSWORD (required
#                              with auth) once the server is ready, and the
#                              tests read LIGHTMESH_NACOS_USERNAME (nacos) and
#                              LIGHTMESH_NACOS_PASSWORD.
#   LIGHTMESH_NACOS_GROUP / LIGHTMESH_NACOS_VERSION  Maven coordinates of the
#                              nacos-console artifact (default
#                              org.jeecgframework.nacos / 2.3.2)
#   JAVA, MVN                  java / mvn executables (default from PATH)
set -euo pipefail

NACOS_GROUP="${LIGHTMESH_NACOS_GROUP:-org.jeecgframework.nacos}"
NACOS_VERSION="${LIGHTMESH_NACOS_VERSION:-2.3.2}"
NACOS_HOME_DIR="${LIGHTMESH_NACOS_HOME:-${HOME:-/root}/.cache/lightmesh/nacos}"
HTTP_PORT="${LIGHTMESH_NACOS_PORT:-8848}"
GRPC_PORT=$((HTTP_PORT + 1000))
TIMEOUT="${LIGHTMESH_NACOS_TIMEOUT:-180}"
JAVA_OPTS_DEFAULT="-Xms256m -Xmx512m -XX:MaxMetaspaceSize=256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
JAVA_OPTS="${LIGHTMESH_NACOS_JAVA_OPTS:-$JAVA_OPTS_DEFAULT}"
JAVA="${JAVA:-java}"
MVN="${MVN:-mvn}"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

HOST=127.0.0.1
AUTH="${LIGHTMESH_NACOS_AUTH:-0}"
ADDR="${HOST}:${HTTP_PORT}"
BASE_URL="http://${ADDR}/nacos"
READY_URL="${BASE_URL}/v1/console/health/readiness"

DIST_DIR="${NACOS_HOME_DIR}/dist/${NACOS_GROUP}-${NACOS_VERSION}"
RUN_DIR="${NACOS_HOME_DIR}/run-${HTTP_PORT}"
PID_FILE="${RUN_DIR}/nacos.pid"
OUT_LOG="${RUN_DIR}/logs/stdout.log"
MAIN_LOG="${RUN_DIR}/logs/nacos.log"
MAIN_CLASS="com.alibaba.nacos.Nacos"

log() { printf 'nacos.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not on PATH"; }

# ready: the readiness endpoint answers 200 and the gRPC port accepts connections.
ready() {
  local code
  code=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "$READY_URL" 2>/dev/null) || return 1
  [[ "$code" == 200 ]] || return 1
  (exec 3<>"/dev/tcp/${HOST}/${GRPC_PORT}") 2>/dev/null || return 1
}

# our_pid: prints the pid from the pid file when that process is alive and is
# a Nacos JVM (guards against a stale file whose pid was reused).
our_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q "$MAIN_CLASS" || return 1
  echo "$pid"
}

# auth_on: the server refuses a config read without a login (403), as it
# does with authentication on; with it off the read answers 200 or 404.
auth_on() {
  local code
  code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' \
    "${BASE_URL}/v1/cs/configs?dataId=lightmesh-auth-probe&group=DEFAULT_GROUP" 2>/dev/null) || return 1
  [[ "$code" == 403 ]]
}

# check_auth: with LIGHTMESH_NACOS_AUTH=1, a server already running must
# have authentication on: one with it off would let every test "with
# authentication on" pass without logging in, and set_password would
# change its users anyway.
check_auth() {
  [[ "$AUTH" == 1 ]] || return 0
  auth_on && return 0
  log "error: the server at $ADDR runs with authentication off, and LIGHTMESH_NACOS_AUTH=1 asks for it on;"
  log "error: stop it (bash scripts/nacos.sh stop) or start one on another port (LIGHTMESH_NACOS_PORT)"
  return 1
}

port_busy() { (exec 3<>"/dev/tcp/${HOST}/$1") 2>/dev/null; }

fetch() {
  if [[ -f "${DIST_DIR}/.complete" ]]; then
    return 0
  fi
  need "$MVN"
  log "fetching ${NACOS_GROUP}:nacos-console:${NACOS_VERSION} and its dependencies with Maven (first run only)"
  local tmp="${DIST_DIR}.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp/lib"
  cat >"$tmp/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by lightmesh scripts/nacos.sh; resolves the Nacos server runtime -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.lightmesh</groupId>
  <artifactId>nacos-server-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>${NACOS_GROUP}</groupId>
      <artifactId>nacos-console</artifactId>
      <version>${NACOS_VERSION}</version>
    </dependency>
  </dependencies>
</project>
EOF
  if ! (cd "$tmp" && "$MVN" -B -q --strict-checksums -f pom.xml \
        "${DEP_PLUGIN}:copy-dependencies" "${DEP_PLUGIN}:build-classpath" \
        -DincludeScope=runtime \
        -DoutputDirectory="${DIST_DIR}/lib" \
        -Dmdep.prefix="${DIST_DIR}/lib" \
        -Dmdep.outputFile="$tmp/classpath.txt" >"$tmp/mvn.log" 2>&1); then
    tail -n 40 "$tmp/mvn.log" >&2 || true
    rm -rf "${DIST_DIR:?}/lib"
    die "Maven could not resolve the Nacos server (log: $tmp/mvn.log)"
  fi
  # copy-dependencies wrote straight into DIST_DIR/lib (the classpath file
  # names that path); move the rest in and mark the download complete.
  mv "$tmp/pom.xml" "$tmp/classpath.txt" "$tmp/mvn.log" "$DIST_DIR/"
  rm -rf "$tmp"
  local missing=0 jar
  while IFS= read -r jar; do
    [[ -f "$jar" ]] || { log "missing jar: $jar"; missing=1; }
  done < <(tr ':' '\n' <"${DIST_DIR}/classpath.txt")
  [[ $missing == 0 ]] || die "classpath incomplete; remove ${DIST_DIR} and retry"
  touch "${DIST_DIR}/.complete"
  log "cached $(tr ':' '\n' <"${DIST_DIR}/classpath.txt" | wc -l) jars in ${DIST_DIR}/lib"
}

show_log_tail() {
  local f
  for f in "$OUT_LOG" "$MAIN_LOG"; do
    if [[ -s "$f" ]]; then
      log "---- last lines of $f ----"
      tail -n 60 "$f" >&2 || true
    fi
  done
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    if ready; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "the Nacos process (pid $pid) exited before it became ready"
      show_log_tail
      rm -f "$PID_FILE"
      return 1
    fi
    sleep 1
  done
  log "Nacos did not become ready within ${TIMEOUT}s ($READY_URL); stopping it"
  show_log_tail
  terminate "$pid"
  rm -f "$PID_FILE"
  return 1
}

# terminate PID: SIGTERM, wait up to 30 s, then SIGKILL.
terminate() {
  local pid="$1" _
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  log "pid $pid did not exit after 30s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  sleep 1
}

cmd_start() {
  need curl
  mkdir -p "$NACOS_HOME_DIR"
  # Serialise concurrent starts (download + launch) on the same home.
  exec 9>"${NACOS_HOME_DIR}/.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w "$((TIMEOUT + 600))" 9 || die "could not lock ${NACOS_HOME_DIR}/.lock"
  fi

  local pid
  if pid=$(our_pid); then
    if ready; then
      log "already running (pid $pid) and ready at $ADDR"
      check_auth || exit 1
      [[ "$AUTH" != 1 ]] || set_password || exit 1
      echo "$ADDR"
      return 0
    fi
    log "already running (pid $pid), waiting for readiness"
    wait_ready "$pid" || exit 1
    check_auth || exit 1
    [[ "$AUTH" != 1 ]] || set_password || exit 1
    log "ready at $ADDR (grpc ${HOST}:${GRPC_PORT})"
    echo "$ADDR"
    return 0
  fi
  rm -f "$PID_FILE"

  if ready; then
    log "a Nacos server not started by this script is already ready at $ADDR; using it"
    check_auth || exit 1
    [[ "$AUTH" != 1 ]] || set_password || exit 1
    echo "$ADDR"
    return 0
  fi
  local p
  for p in "$HTTP_PORT" "$GRPC_PORT"; do
    if port_busy "$p"; then
      die "port $p on $HOST is already in use by another process (and $READY_URL is not ready)"
    fi
  done

  need "$JAVA"
  fetch
  local auth_opts=(-Dnacos.core.auth.enabled=false)
  if [[ "$AUTH" == 1 ]]; then
    [[ -n "${LIGHTMESH_NACOS_PASSWORD:-}" ]] || die "LIGHTMESH_NACOS_AUTH=1 needs LIGHTMESH_NACOS_PASSWORD (the password the nacos user gets)"
    # The token key signs the access tokens (base64, at least 32 bytes);
    # the identity pair lets cluster members talk to each other.
    auth_opts=(
      -Dnacos.core.auth.enabled=true
      -Dnacos.core.auth.system.type=nacos
      -Dnacos.core.auth.enable.userAgentAuthWhite=false
      -Dnacos.core.auth.plugin.nacos.token.secret.key="$(head -c 48 /dev/urandom | base64 -w0)"
      -Dnacos.core.auth.server.identity.key=lightmesh-ci
      -Dnacos.core.auth.server.identity.value="$(head -c 16 /dev/urandom | base64 -w0)"
    )
  fi

  if [[ "${LIGHTMESH_NACOS_FRESH:-0}" == 1 ]]; then
    log "LIGHTMESH_NACOS_FRESH=1: wiping ${RUN_DIR}"
    rm -rf "$RUN_DIR"
  fi
  mkdir -p "$RUN_DIR/logs" "$RUN_DIR/tomcat"
  : >"$OUT_LOG"

  local t0=$SECONDS
  log "starting Nacos ${NACOS_VERSION} (home ${RUN_DIR})"
  # setsid: own session, so the server outlives this script and its caller's
  # signals; the inner shell records its own pid and then becomes the JVM.
  # shellcheck disable=SC2086,SC2016 # JAVA_OPTS is a space-separated option list
  setsid bash -c 'echo $$ >"$1"; cd "$2"; shift 2; exec "$@"' _ "$PID_FILE" "$RUN_DIR" \
    "$JAVA" $JAVA_OPTS \
    -Dnacos.standalone=true \
    -Dnacos.home="$RUN_DIR" \
    -Dnacos.logs.path="$RUN_DIR/logs" \
    -DJM.LOG.PATH="$RUN_DIR/logs" \
    -DJM.SNAPSHOT.PATH="$RUN_DIR" \
    -Dderby.stream.error.file="$RUN_DIR/logs/derby.log" \
    -Dnacos.server.ip="$HOST" \
    "${auth_opts[@]}" \
    -Dnacos.istio.mcp.server.enabled=false \
    -Djava.io.tmpdir="$RUN_DIR/tomcat" \
    -cp "$(cat "${DIST_DIR}/classpath.txt")" \
    "$MAIN_CLASS" \
    --server.port="$HTTP_PORT" \
    --server.address="$HOST" \
    --server.tomcat.basedir="$RUN_DIR/tomcat" \
    --server.tomcat.accesslog.enabled=false \
    ${LIGHTMESH_NACOS_SERVER_ARGS:-} \
    </dev/null >>"$OUT_LOG" 2>&1 9>&- &
  local _
  for _ in $(seq 1 50); do
    [[ -s "$PID_FILE" ]] && break
    sleep 0.1
  done
  pid=$(cat "$PID_FILE" 2>/dev/null) || die "the server process did not start (see $OUT_LOG)"

  wait_ready "$pid" || exit 1
  if [[ "$AUTH" == 1 ]]; then
    set_password || exit 1
  fi
  log "ready at $ADDR (grpc ${HOST}:${GRPC_PORT}, pid $pid, auth $([[ "$AUTH" == 1 ]] && echo on || echo off)) after $((SECONDS - t0))s"
  echo "$ADDR"
}

# Secrets go to curl as files (/dev/fd/N, from printf: a builtin), never
# on its command line, which any user can read in ps while curl runs.

# login USER PASSWORD: prints the access token, fails when refused.
login() {
  local out
  out=$(curl -s -m 10 -X POST "${BASE_URL}/v1/auth/login" --data-urlencode "username=$1" \
    --data-urlencode password@<(printf '%s' "$2")) || return 1
  [[ "$out" == *accessToken* ]] || return 1
  sed -E 's/.*"accessToken":"([^"]+)".*/\1/' <<<"$out"
}

# set_password gives the nacos user LIGHTMESH_NACOS_PASSWORD (Nacos 2.3
# creates it with the password "nacos"); a server whose data survived an
# earlier start may have it already.
set_password() {
  local want="$LIGHTMESH_NACOS_PASSWORD" token="" _
  # The login endpoint answers a few seconds after readiness.
  for _ in $(seq 1 30); do
    if login nacos "$want" >/dev/null; then
      return 0
    fi
    if token=$(login nacos nacos); then
      break
    fi
    sleep 1
  done
  [[ -n "$token" ]] || { log "error: cannot log in as nacos, with the default password or LIGHTMESH_NACOS_PASSWORD"; return 1; }
  curl -s -m 10 -o /dev/null -G -X PUT "${BASE_URL}/v1/auth/users" --data-urlencode "username=nacos" \
    --data-urlencode newPassword@<(printf '%s' "$want") --data-urlencode accessToken@<(printf '%s' "$token") || return 1
  # The server reads its users from its store every few seconds.
  for _ in $(seq 1 30); do
    if login nacos "$want" >/dev/null; then
      log "auth on: user nacos has the password from LIGHTMESH_NACOS_PASSWORD"
      return 0
    fi
    sleep 1
  done
  log "error: the new password of nacos does not work"
  return 1
}

cmd_stop() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$PID_FILE"
    log "not running (no live pid file in $RUN_DIR)"
    return 0
  fi
  log "stopping Nacos (pid $pid)"
  terminate "$pid"
  rm -f "$PID_FILE"
  log "stopped"
}

# cmd_kill: SIGKILL the server started by this script and wait until it is
# gone, as a crash or an OOM kill would end it (the fault tests use it).
cmd_kill() {
  local pid _
  if ! pid=$(our_pid); then
    die "not running (no live pid file in $RUN_DIR)"
  fi
  log "killing Nacos (pid $pid) with SIGKILL"
  kill -KILL "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$PID_FILE"
}

cmd_status() {
  local pid
  if ready; then
    if pid=$(our_pid); then
      log "ready at $ADDR (pid $pid)"
    else
      log "ready at $ADDR (not started by this script)"
    fi
    echo "$ADDR"
    return 0
  fi
  if pid=$(our_pid); then
    log "running (pid $pid) but not ready at $READY_URL"
  else
    log "not running"
  fi
  return 1
}

cmd_logs() {
  show_log_tail
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  kill) cmd_kill ;;
  status) cmd_status ;;
  logs) cmd_logs ;;
  *)
    echo "usage: $0 {start|stop|kill|status|logs}" >&2
    exit 2
    ;;
esac
