#!/usr/bin/env bash
# run.sh: what `make bench` calls. Builds the all-in-one and chatbench, starts
# a fresh all-in-one (temporary data dir, free ports, per-connection limits
# raised) pinned to CPU 0, runs the scenarios pinned to CPU 1, prints the
# table and stops the server. Extra arguments go to chatbench, e.g.
#   bash bench/run.sh -scenario S1,S4
#   bash bench/run.sh -scale 0.3          # shorter scenarios
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chatbench.XXXXXX")
server_pid=
cleanup() {
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

echo "building into $tmp"
(cd "$root" && go build -o "$tmp/allinone" ./services/allinone)
(cd "$root" && go build -o "$tmp/chatbench" ./bench)

# 10,000 idle sockets take 10,000 descriptors in each process.
ulimit -n "$(ulimit -Hn)" || true
if (($(ulimit -n) < 12000)); then
	echo "warning: open files limit is $(ulimit -n); S5 needs about 10,100 per process (raise the hard limit)" >&2
fi

cpus=$(nproc)
server_cpu=0 tool_cpu=1
if ((cpus < 2)); then
	echo "warning: one CPU only: server and chatbench share it" >&2
	tool_cpu=0
fi

http_port=$(free_port)
nats_port=$(free_port)
echo "starting the all-in-one on 127.0.0.1:$http_port (NATS $nats_port) pinned to CPU $server_cpu"
CHAT_DATA_DIR="$tmp/data" \
	CHAT_NATS_PORT=$nats_port \
	GATEWAY_ADDR=127.0.0.1:$http_port \
	GATEWAY_RATE=1000000 GATEWAY_BURST=1000000 \
	GATEWAY_MAX_CONNS_PER_ADDR=1000000 \
	GATEWAY_SEND_QUEUE="${GATEWAY_SEND_QUEUE:-256}" \
	CHAT_LOG_LEVEL=warn GATEWAY_LOG_LEVEL=warn \
	taskset -c "$server_cpu" "$tmp/allinone" >"$tmp/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 150); do
	if curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then break; fi
	if ! kill -0 "$server_pid" 2>/dev/null; then
		echo "the all-in-one exited:" >&2; cat "$tmp/server.log" >&2; exit 1
	fi
	sleep 0.2
done
curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null

echo "server pinned to CPU $server_cpu (taskset -c $server_cpu), chatbench pinned to CPU $tool_cpu (taskset -c $tool_cpu)"
status=0
taskset -c "$tool_cpu" "$tmp/chatbench" \
	-url "http://127.0.0.1:$http_port" \
	-nats-url "nats://127.0.0.1:$nats_port" \
	-server-pid "$server_pid" "$@" || status=$?
if ((status != 0)); then
	echo "--- last lines of the server log"
	tail -n 20 "$tmp/server.log"
fi
exit "$status"
