#!/usr/bin/env bash
# Runs a private ejabberd (23.01+) for development and tests: no systemd, no
# root daemon, no system config, nothing shared with other instances. Several
# instances can run at once (parallel test files): each has its own directory,
# Erlang node name, distribution port and listener ports.
#
#   private-ejabberd.sh start    --dir DIR [--c2s-port N] [--component-port N]
#                                [--http-port N] [--host localhost]
#                                [--component-domain chat.localhost] [--secret S]
#                                [--resume-timeout SECONDS] [--loglevel LEVEL]
#   private-ejabberd.sh register --dir DIR USER PASSWORD
#   private-ejabberd.sh stop     --dir DIR
#   private-ejabberd.sh kill     --dir DIR
#
# `stop` is graceful (SIGTERM: mnesia is written); `kill` is SIGKILL, like a
# crash: quick for throwaway instances, but recent registrations may be lost.
#
# `start` prints KEY=value lines (C2S_PORT, COMPONENT_PORT, HTTP_PORT, API_URL,
# PID, HOST, COMPONENT_DOMAIN, SECRET) once ejabberd really serves requests.
# Starting again on the same DIR reuses its node name (mnesia data is tied to
# it, so registered users survive), and by default its ports and secret.
#
# Everything here follows docs in /work/shared/guides/EJABBERD.md ("Running a
# private ejabberd"); the why of each ejabberd option is in ./ejabberd.yml.
set -euo pipefail

readonly SYSTEM_EJABBERDCTL=/usr/sbin/ejabberdctl
readonly START_DEADLINE_SECONDS=${PRIVATE_EJABBERD_START_TIMEOUT:-60}
readonly STOP_DEADLINE_SECONDS=30
# What DIR/instance.env holds. Unset first: the caller's environment must not
# leak in (npm exports NODE=/path/to/node, some shells export HOST).
readonly INSTANCE_VARS=(NODE COOKIE DIST_PORT HOST COMPONENT_DOMAIN SECRET C2S_PORT
  COMPONENT_PORT HTTP_PORT RESUME_TIMEOUT LOGLEVEL)
unset "${INSTANCE_VARS[@]}"

die() { echo "private-ejabberd: $*" >&2; exit 1; }
usage() { sed -n '7,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# --- installation ------------------------------------------------------------

ensure_ejabberd_installed() {
  [[ -x $SYSTEM_EJABBERDCTL ]] && return
  if [[ $(id -u) -ne 0 ]]; then
    echo "ejabberd is not installed. Install it with:" >&2
    echo "  sudo apt-get install -y ejabberd" >&2
    exit 1
  fi
  echo "private-ejabberd: installing ejabberd (apt-get)" >&2
  # A fresh machine may have no package lists yet: update only when needed.
  DEBIAN_FRONTEND=noninteractive apt-get install -y ejabberd >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y ejabberd >&2; }
}

# --- ports ------------------------------------------------------------------

# Ports any socket on this machine uses now, from /proc (no ss/netstat needed).
# Lines look like "  0: 0100007F:1F90 00000000:0000 0A ...": the port is the
# hex after the colon of the second field.
# Ports taken on the addresses ejabberd listens on (127.0.0.1, any, ::1): a socket of
# another loopback address (a load generator's 127.0.0.2:port) does not take them.
ports_in_use() {
  local _ local_address
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
    while read -r _ local_address _; do
      case ${local_address%%:*} in
        0100007F | 00000000 | 00000000000000000000000000000000 | 00000000000000000000000001000000)
          echo $((16#${local_address##*:})) ;;
      esac
    done | sort -un
}

# A free port below the kernel's ephemeral range, so it cannot collide with
# ports the kernel hands out to outgoing connections or to bind(port 0).
pick_free_port() {
  local ephemeral_start range_low=20000 range_high candidate attempt taken
  read -r ephemeral_start _ </proc/sys/net/ipv4/ip_local_port_range
  range_high=$((ephemeral_start - 1))
  ((range_high - range_low >= 1000)) || range_high=30000
  taken=" $(ports_in_use | tr '\n' ' ') ${PICKED_PORTS:-} "
  for attempt in $(seq 1 200); do
    candidate=$((range_low + (RANDOM << 15 | RANDOM) % (range_high - range_low + 1)))
    if [[ $taken != *" $candidate "* ]]; then
      echo "$candidate"
      return
    fi
  done
  die "no free port found in $range_low-$range_high"
}

port_accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- HTTP without curl: bash's /dev/tcp, one request per connection --------

# Sets HTTP_STATUS and HTTP_BODY; returns 1 when nothing answered.
http_post_json() {
  local port=$1 path=$2 body=$3 fd line
  local LC_ALL=C # so ${#body} counts bytes, as Content-Length must
  HTTP_STATUS=000 HTTP_BODY=
  { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  printf 'POST %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
    "$path" "$port" "${#body}" "$body" >&"$fd" 2>/dev/null || { exec {fd}>&-; return 1; }
  if ! IFS=' ' read -r -t 10 _ HTTP_STATUS _ <&"$fd"; then exec {fd}>&-; return 1; fi
  while IFS= read -r -t 10 line <&"$fd"; do [[ $line == $'\r' ]] && break; done
  while IFS= read -r -t 10 line <&"$fd" || [[ -n $line ]]; do HTTP_BODY+=$line; done
  exec {fd}>&-
}

json_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# --- instance files ----------------------------------------------------------

# DIR/instance.env remembers what `start` chose, for `register`, `stop` and
# restarts on the same DIR.
load_instance() {
  [[ -f $DIR/instance.env ]] || return 1
  # shellcheck disable=SC1091
  source "$DIR/instance.env"
}

write_instance() {
  local name
  for name in "${INSTANCE_VARS[@]}"; do
    printf '%s=%q\n' "$name" "${!name}"
  done >"$DIR/instance.env"
}

write_ejabberd_yml() {
  cat >"$DIR/ejabberd.yml" <<EOF
# Generated by private-ejabberd.sh for a private dev/test instance.
# Annotated production equivalent: ejabberd-config/ejabberd.yml
loglevel: $LOGLEVEL
hosts: [$HOST]
auth_method: internal
acme: {auto: false}

listen:
  - port: $C2S_PORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    shaper: none            # Debian's default shaper limits c2s to 3000 B/s
    max_stanza_size: 262144
  - port: $COMPONENT_PORT
    ip: "127.0.0.1"
    module: ejabberd_service
    shaper: none
    max_stanza_size: 262144
    hosts:
      $COMPONENT_DOMAIN:
        password: "$SECRET"
  - port: $HTTP_PORT
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api

acl:
  chat_component:
    server: $COMPONENT_DOMAIN
  loopback:
    ip: ["127.0.0.0/8", "::1/128"]

access_rules:
  chat_component_rule:
    allow: chat_component

api_permissions:
  "console commands":
    from: [ejabberd_ctl]
    who: all
    what: "*"
  "loopback http api":
    from: [mod_http_api]
    who:
      ip: 127.0.0.1/8
    what: "*"

shaper_rules:
  max_user_offline_messages: 5000

modules:
  mod_admin_extra: {}
  mod_roster: {}
  mod_offline: {}
  mod_carboncopy: {}
  mod_stream_mgmt:
    resume_timeout: $RESUME_TIMEOUT
    # What reached a dropped agent's waiting session goes to their next one, not back as a bounce.
    resend_on_timeout: if_offline
  mod_ping: {}
  mod_disco: {}
  mod_privilege:
    roster:
      both: chat_component_rule
    presence:
      roster: chat_component_rule
      managed_entity: chat_component_rule
    message:
      outgoing: chat_component_rule
EOF
}

write_ejabberdctl_cfg() {
  cat >"$DIR/ejabberdctl.cfg" <<EOF
# Generated by private-ejabberd.sh. Sourced by ./ejabberdctl (bash).
ERLANG_NODE=$NODE
# With a fixed distribution port no epmd is started or needed, so instances
# never share a daemon.
ERL_DIST_PORT=$DIST_PORT
# Own cookie per instance; no crash dumps filling the disk during tests.
# +sss 2048: 16 MB scheduler stacks. With the default (1 MB), one stanza nested ~5,000
# elements deep (35 KB, from any account) overflows a scheduler's stack while it is
# parsed and the whole node dies with a segfault (ejabberd 23.01, Erlang 25);
# max_stanza_size 262144 allows ~37,000 levels, which 16 MB holds.
ERL_OPTIONS="-setcookie $COOKIE -env ERL_CRASH_DUMP_BYTES 0 +sss 2048"
SPOOL_DIR=$DIR/spool
LOGS_DIR=$DIR/logs
EJABBERD_PID_PATH=$DIR/ejabberd.pid
CONTRIB_MODULES_PATH=$DIR/modules
CONTRIB_MODULES_CONF_DIR=$DIR/modules.d
EJABBERD_BYPASS_WARNINGS=true
EOF
}

write_config_files() {
  mkdir -p "$DIR/spool" "$DIR/logs" "$DIR/modules" "$DIR/modules.d"
  write_instance
  write_ejabberd_yml
  write_ejabberdctl_cfg
  if [[ -f /etc/ejabberd/inetrc ]]; then
    cp /etc/ejabberd/inetrc "$DIR/inetrc"
  else
    printf '{lookup,["file","native"]}.\n{host,{127,0,0,1}, ["localhost"]}.\n' >"$DIR/inetrc"
  fi
  # The packaged ejabberdctl insists on user `ejabberd`; this copy runs as the
  # caller (root or not).
  sed 's/^INSTALLUSER=ejabberd$/INSTALLUSER=/' "$SYSTEM_EJABBERDCTL" >"$DIR/ejabberdctl"
  chmod +x "$DIR/ejabberdctl"
}

# --- process -----------------------------------------------------------------

# Exists and is not a zombie (a container's init may be slow to reap).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# The beam pid from the pid file, only if that process is still our node
# (pids are reused).
running_pid() {
  local pid
  [[ -f $DIR/ejabberd.pid ]] || return 1
  pid=$(tr -d ' \n' <"$DIR/ejabberd.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$NODE" || return 1
  echo "$pid"
}

wait_until_ready() {
  local deadline=$((SECONDS + START_DEADLINE_SECONDS)) pid=
  # An open port is not readiness (mnesia may still be creating tables): wait
  # for the API to answer, then for the listeners.
  until http_post_json "$HTTP_PORT" /api/status '{}' && [[ $HTTP_STATUS == 200 ]]; do
    if [[ -z $pid ]]; then
      pid=$(running_pid) || pid=
    elif ! alive "$pid"; then
      fail_start "ejabberd exited during start"
    fi
    ((SECONDS < deadline)) || fail_start "not ready after ${START_DEADLINE_SECONDS}s"
    sleep 0.05
  done
  until port_accepts "$C2S_PORT" && port_accepts "$COMPONENT_PORT"; do
    ((SECONDS < deadline)) || fail_start "listeners not open after ${START_DEADLINE_SECONDS}s"
    sleep 0.05
  done
}

fail_start() {
  echo "private-ejabberd: $1; last log lines ($DIR/logs/ejabberd.log):" >&2
  tail -n 30 "$DIR/logs/ejabberd.log" >&2 2>/dev/null || true
  stop_instance >&2 || true
  exit 1
}

start_instance() {
  if running_pid >/dev/null; then
    die "already running in $DIR (pid $(running_pid)); stop it first"
  fi
  rm -f "$DIR/ejabberd.pid"
  # ejabberdctl's stderr only holds a warning about running as root.
  "$DIR/ejabberdctl" --config-dir "$DIR" start 2>>"$DIR/logs/ejabberdctl.log" ||
    fail_start "ejabberdctl start failed"
  wait_until_ready
  cat <<EOF
C2S_PORT=$C2S_PORT
COMPONENT_PORT=$COMPONENT_PORT
HTTP_PORT=$HTTP_PORT
API_URL=http://127.0.0.1:$HTTP_PORT/api
PID=$(running_pid)
HOST=$HOST
COMPONENT_DOMAIN=$COMPONENT_DOMAIN
SECRET=$SECRET
EOF
}

stop_instance() {
  local pid deadline
  if ! pid=$(running_pid); then
    rm -f "$DIR/ejabberd.pid"
    echo "private-ejabberd: not running in $DIR"
    return 0
  fi
  # SIGTERM lets mnesia write its tables (SIGKILL loses recent registrations).
  kill -TERM "$pid"
  deadline=$((SECONDS + STOP_DEADLINE_SECONDS))
  while alive "$pid"; do
    if ((SECONDS >= deadline)); then
      echo "private-ejabberd: pid $pid ignored SIGTERM for ${STOP_DEADLINE_SECONDS}s, killing" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.05
  done
  rm -f "$DIR/ejabberd.pid"
}

# --- commands ----------------------------------------------------------------

cmd_start() {
  local c2s_port= component_port= http_port= host= component_domain= secret= resume_timeout= loglevel=
  while (($#)); do
    case $1 in
      --dir) DIR=$2 ;;
      --c2s-port) c2s_port=$2 ;;
      --component-port) component_port=$2 ;;
      --http-port) http_port=$2 ;;
      --host) host=$2 ;;
      --component-domain) component_domain=$2 ;;
      --secret) secret=$2 ;;
      --resume-timeout) resume_timeout=$2 ;;
      --loglevel) loglevel=$2 ;;
      *) usage ;;
    esac
    shift 2 || usage
  done
  [[ -n ${DIR:-} ]] || usage
  ensure_ejabberd_installed
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd -P)

  # Defaults: what this DIR used before, else fresh values.
  load_instance || true
  NODE=${NODE:-parley-$(random_hex 6)@localhost}
  COOKIE=${COOKIE:-$(random_hex 16)}
  HOST=${host:-${HOST:-localhost}}
  COMPONENT_DOMAIN=${component_domain:-${COMPONENT_DOMAIN:-chat.$HOST}}
  SECRET=${secret:-${SECRET:-$(random_hex 16)}}
  # 2 s: a test that drops an agent's connection sees the unavailable presence
  # after 2 s instead of ejabberd's 300 s, while a client that reconnects
  # within xmpp.js's 1 s reconnect delay can still resume its session.
  RESUME_TIMEOUT=${resume_timeout:-${RESUME_TIMEOUT:-2}}
  LOGLEVEL=${loglevel:-${LOGLEVEL:-warning}}
  # These values go into YAML and shell files unquoted.
  [[ $SECRET =~ ^[A-Za-z0-9._~+/=-]+$ ]] || die "--secret may only contain A-Z a-z 0-9 . _ ~ + / = -"
  [[ $HOST$COMPONENT_DOMAIN =~ ^[a-z0-9.-]+$ ]] || die "--host and --component-domain must be lower-case DNS names"
  [[ $RESUME_TIMEOUT =~ ^[0-9]+$ ]] || die "--resume-timeout must be whole seconds"
  C2S_PORT=${c2s_port:-${C2S_PORT:-$(pick_free_port)}}
  PICKED_PORTS="$C2S_PORT"
  COMPONENT_PORT=${component_port:-${COMPONENT_PORT:-$(pick_free_port)}}
  PICKED_PORTS+=" $COMPONENT_PORT"
  HTTP_PORT=${http_port:-${HTTP_PORT:-$(pick_free_port)}}
  PICKED_PORTS+=" $HTTP_PORT"
  # A new distribution port on every start: the old one may be in TIME_WAIT.
  DIST_PORT=$(pick_free_port)

  write_config_files
  start_instance
}

cmd_stop() {
  [[ ${1:-} == --dir && -n ${2:-} ]] || usage
  DIR=$2
  [[ -d $DIR ]] || { echo "private-ejabberd: no instance in $DIR"; return 0; }
  load_instance || { echo "private-ejabberd: no instance in $DIR"; return 0; }
  stop_instance
}

cmd_kill() {
  [[ ${1:-} == --dir && -n ${2:-} ]] || usage
  DIR=$2
  load_instance || { echo "private-ejabberd: no instance in $DIR"; return 0; }
  local pid
  if pid=$(running_pid); then
    kill -KILL "$pid"
    while alive "$pid"; do sleep 0.02; done # SIGKILL cannot be ignored
  fi
  rm -f "$DIR/ejabberd.pid"
}

cmd_register() {
  [[ ${1:-} == --dir && $# -eq 4 ]] || usage
  DIR=$2
  load_instance || die "no instance in $DIR (run start first)"
  local body
  body="{\"user\":$(json_string "$3"),\"host\":$(json_string "$HOST"),\"password\":$(json_string "$4")}"
  http_post_json "$HTTP_PORT" /api/register "$body" || die "ejabberd in $DIR does not answer on port $HTTP_PORT"
  [[ $HTTP_STATUS == 200 ]] || die "register $3@$HOST failed: HTTP $HTTP_STATUS $HTTP_BODY"
}

case ${1:-} in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  kill) shift; cmd_kill "$@" ;;
  register) shift; cmd_register "$@" ;;
  *) usage ;;
esac
