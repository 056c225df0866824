#!/usr/bin/env bash
# `npm run demo`: the whole stack on this machine for a demo. Installs what is
# missing (Debian packages when root, node_modules, the build), starts a
# private ejabberd, registers two agent accounts, writes a sites file with the
# site `demo`, runs the bridge in the foreground and prints the demo page and
# how to log in as an agent from a Jabber client. Ctrl-C (SIGINT) or SIGTERM
# stops the bridge and ejabberd, removes the temporary directory and exits 0.
#
# Environment (all optional):
#   DEMO_HTTP_PORT  bridge HTTP port    (default 8080 if free, else a free one)
#   DEMO_C2S_PORT   ejabberd c2s port   (default 5222 if free, else a free one)
#   PARLEY_REDIS_URL   use this Redis instead of the in-memory store
#   PARLEY_LOG_LEVEL   the bridge's log level (default warn, so the banner stays readable)
set -euo pipefail
cd "$(dirname "$0")/.."
readonly ROOT=$PWD

# Fixed on purpose: the private ejabberd listens on 127.0.0.1 only and lives
# as long as this script, and a Jabber client can keep its saved account
# across demo runs. See docs/demo.md.
readonly AGENT_PASSWORDS=(agent1:parley-demo-1 agent2:parley-demo-2)
readonly SITE_ID=demo

say() { printf 'demo: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# --- prerequisites -----------------------------------------------------------

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || node_major=0
((node_major >= 20)) || die "Node.js 20 or newer is required (found: $(node -v 2>/dev/null || echo none)); see https://nodejs.org/en/download"

# Prints the exact `sudo apt-get install …` line and fails when not root.
bash scripts/install-system-deps.sh --no-browser
[[ -d node_modules ]] || { say "installing node_modules (npm ci)"; npm ci; }
# Build when dist/ is missing or older than a source file (e.g. after a git pull).
if [[ ! -f dist/bridge/cli.js || ! -f dist/widget.js ]] ||
  [[ -n $(find bridge stanza-mappers widget -type f -newer dist/bridge/cli.js -print -quit) ]] ||
  [[ -n $(find widget -type f -newer dist/widget.js -print -quit) ]]; then
  say "building (npm run build)"
  npm run --silent build
fi

# --- helpers -----------------------------------------------------------------

# True when nothing listens on 127.0.0.1:PORT (binding is the only sure test).
port_free() {
  node -e '
    const s = require("net").createServer();
    s.once("error", () => process.exit(1));
    s.listen({ host: "127.0.0.1", port: Number(process.argv[1]), exclusive: true }, () => s.close(() => process.exit(0)));
  ' "$1"
}

# A port the kernel considers free right now.
any_free_port() {
  node -e '
    const s = require("net").createServer();
    s.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => { const p = s.address().port; s.close(() => console.log(p)); });
  '
}

# $1 = explicit choice (may be empty), $2 = preferred default.
choose_port() {
  if [[ -n $1 ]]; then
    port_free "$1" || die "port $1 is already in use"
    echo "$1"
  elif port_free "$2"; then
    echo "$2"
  else
    any_free_port
  fi
}

random_token() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# --- start and stop ----------------------------------------------------------

DEMO_DIR=$(mktemp -d "${TMPDIR:-/tmp}/parley-demo.XXXXXX")
bridge_pid=
ejabberd_started=

cleanup() {
  trap - EXIT INT TERM
  if [[ -n $bridge_pid ]] && kill -0 "$bridge_pid" 2>/dev/null; then
    say "stopping the bridge"
    kill -TERM "$bridge_pid" 2>/dev/null || true
    wait "$bridge_pid" 2>/dev/null || true
  fi
  if [[ -n $ejabberd_started ]]; then
    say "stopping ejabberd"
    bash ejabberd-config/private-ejabberd.sh stop --dir "$DEMO_DIR/ejabberd" >/dev/null 2>&1 ||
      bash ejabberd-config/private-ejabberd.sh kill --dir "$DEMO_DIR/ejabberd" >/dev/null 2>&1 || true
  fi
  rm -rf "$DEMO_DIR"
}
on_signal() {
  cleanup
  say "stopped"
  exit 0
}
trap on_signal INT TERM
trap cleanup EXIT

http_port=$(choose_port "${DEMO_HTTP_PORT:-}" 8080)
c2s_port=$(choose_port "${DEMO_C2S_PORT:-}" 5222)

say "starting a private ejabberd (c2s on 127.0.0.1:$c2s_port)"
ejabberd_started=yes
ejabberd_out=$(bash ejabberd-config/private-ejabberd.sh start --dir "$DEMO_DIR/ejabberd" --c2s-port "$c2s_port")
ejabberd_value() { sed -n "s/^$1=//p" <<<"$ejabberd_out"; }
component_port=$(ejabberd_value COMPONENT_PORT)
api_url=$(ejabberd_value API_URL)
xmpp_host=$(ejabberd_value HOST)
component_domain=$(ejabberd_value COMPONENT_DOMAIN)
secret=$(ejabberd_value SECRET)
say "ejabberd is ready (pid $(ejabberd_value PID), files in $DEMO_DIR)"

for entry in "${AGENT_PASSWORDS[@]}"; do
  bash ejabberd-config/private-ejabberd.sh register --dir "$DEMO_DIR/ejabberd" "${entry%%:*}" "${entry#*:}"
done

cat >"$DEMO_DIR/sites.yml" <<EOF
# Written by scripts/demo.sh: the demo site and its two agents.
sites:
  - id: $SITE_ID
    name: Northwind Coffee
    maxChatsPerAgent: 3
    welcome: "Hi! Questions about beans, brewing or an order? We're happy to help."
    offlineMessage: "Nobody is at the roastery right now. Leave a message and we'll write back."
    agents:
      - {jid: agent1@$xmpp_host, name: Alice}
      - {jid: agent2@$xmpp_host, name: Bob}
EOF

admin_token=$(random_token 16)
say "starting the bridge (http://127.0.0.1:$http_port)"
PARLEY_XMPP_SERVICE="xmpp://127.0.0.1:$component_port" \
  PARLEY_XMPP_DOMAIN="$component_domain" \
  PARLEY_XMPP_SECRET="$secret" \
  PARLEY_EJABBERD_API_URL="$api_url" \
  PARLEY_SITES_FILE="$DEMO_DIR/sites.yml" \
  PARLEY_HTTP_HOST=127.0.0.1 \
  PARLEY_HTTP_PORT="$http_port" \
  PARLEY_ADMIN_TOKEN="$admin_token" \
  PARLEY_LOG_LEVEL="${PARLEY_LOG_LEVEL:-warn}" \
  node dist/bridge/cli.js &
bridge_pid=$!
say "bridge pid $bridge_pid"

# Ready once /healthz says the component is connected and the store answers.
node -e '
  const [url, pid] = [process.argv[1], Number(process.argv[2])];
  const deadline = Date.now() + 60_000;
  (async function poll() {
    try { process.kill(pid, 0); } catch { console.error("demo: the bridge exited during start"); process.exit(1); }
    try { if ((await fetch(url)).status === 200) process.exit(0); } catch {}
    if (Date.now() > deadline) { console.error("demo: the bridge is not healthy after 60 s: " + url); process.exit(1); }
    setTimeout(poll, 100);
  })();
' "http://127.0.0.1:$http_port/healthz" "$bridge_pid" || exit 1

store="in-memory store"
[[ -n ${PARLEY_REDIS_URL:-} ]] && store="Redis at $PARLEY_REDIS_URL"
agent1_password=${AGENT_PASSWORDS[0]#*:}
agent2_password=${AGENT_PASSWORDS[1]#*:}
cat <<EOF

  Parley demo is running ($store).

  Demo page (open it in a browser and chat as a visitor):
    http://127.0.0.1:$http_port/demo?site=$SITE_ID

  Log in as an agent from any Jabber client:
    agent1@$xmpp_host   password: $agent1_password   (shown to visitors as Alice)
    agent2@$xmpp_host   password: $agent2_password   (shown to visitors as Bob)
    server 127.0.0.1, port $c2s_port. This private ejabberd offers no TLS:
    allow an unencrypted (plain) connection to localhost in the client.
      Profanity:  /connect agent1@$xmpp_host server 127.0.0.1 port $c2s_port tls disable
      Gajim:      Add account, "Advanced" on; Connection: host 127.0.0.1, port $c2s_port, type Plain
      Conversations requires TLS and cannot log in here (see docs/demo.md).
    Visitors appear in the agent's roster in the group "Northwind Coffee",
    next to the desk contact $SITE_ID@$component_domain (send it !help).

  Admin API:  curl -H 'Authorization: Bearer $admin_token' http://127.0.0.1:$http_port/api/sites

  Press Ctrl-C to stop everything.

EOF

# `wait` returns early when a trapped signal arrives; then on_signal runs.
set +e
wait "$bridge_pid"
status=$?
set -e
bridge_pid=
say "the bridge exited with status $status"
exit "$status"
