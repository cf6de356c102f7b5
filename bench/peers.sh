#!/usr/bin/env bash
# peers.sh: what `make bench-peers` calls. The same scenarios against the
# chat and against Centrifugo, one server at a time on CPU 0, chatbench on
# CPU 1, then one table of both peers' figures and their ratios.
#   bash bench/peers.sh                     # every scenario, one run each
#   RUNS=3 bash bench/peers.sh              # median [min-max] of 3 runs
#   bash bench/peers.sh -scenario S1,S4     # extra arguments go to chatbench
# Centrifugo is installed once with go install into bin/ (gitignored).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chatbench-peers.XXXXXX")
source "$root/bench/lib.sh"
cleanup() {
	stop_server
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

runs=${RUNS:-1}
if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
	echo "RUNS=$runs: want a whole number of runs, 1 or more" >&2
	exit 2
fi

centrifugo_version=v6.9.1
centrifugo_dir="$root/bin/centrifugo-$centrifugo_version"
centrifugo="$centrifugo_dir/centrifugo"
if [[ ! -x $centrifugo ]]; then
	echo "installing Centrifugo $centrifugo_version into $centrifugo_dir (once)"
	mkdir -p "$centrifugo_dir"
	GOBIN="$centrifugo_dir" go install "github.com/centrifugal/centrifugo/v6@$centrifugo_version"
fi
echo "centrifugo: $(go version -m "$centrifugo" | awk '$1 == "mod" { print $2, $3 }')"

build_chat
pick_cpus

# start_centrifugo starts Centrifugo pinned to server_cpu with a config
# that lets anonymous clients (no token) connect, and subscribe and publish
# in the namespace chatbench uses, over the JSON protocol on
# /connection/websocket. Nothing else is on: no history, presence,
# join/leave or recovery; client queue and limits at their defaults.
start_centrifugo() {
	http_port=$(free_port)
	server_log="$tmp/centrifugo-$1.log"
	local config="$tmp/centrifugo-$1.json"
	cat >"$config" <<-JSON
		{
		  "http_server": {"address": "127.0.0.1", "port": $http_port},
		  "log": {"level": "warn"},
		  "health": {"enabled": true},
		  "client": {"allow_anonymous_connect_without_token": true},
		  "channel": {
		    "namespaces": [{
		      "name": "bench",
		      "allow_subscribe_for_anonymous": true,
		      "allow_subscribe_for_client": true,
		      "allow_publish_for_anonymous": true,
		      "allow_publish_for_subscriber": true
		    }]
		  }
		}
	JSON
	echo "starting Centrifugo on 127.0.0.1:$http_port pinned to CPU $server_cpu"
	(cd "$tmp" && exec taskset -c "$server_cpu" "$centrifugo" --config="$config") >"$server_log" 2>&1 &
	server_pid=$!
	wait_ready "http://127.0.0.1:$http_port/health" "$server_log"
}

status=0
chat_files=() centrifugo_files=()
for run in $(seq "$runs"); do
	for peer in chat centrifugo; do
		echo
		echo "=== run $run of $runs: $peer"
		if [[ $peer == chat ]]; then
			start_allinone "$run"
			nats=(-nats-url "nats://127.0.0.1:$nats_port")
		else
			start_centrifugo "$run"
			nats=()
		fi
		out="$tmp/$peer.$run.json"
		echo "server pinned to CPU $server_cpu, chatbench pinned to CPU $tool_cpu"
		rc=0
		taskset -c "$tool_cpu" "$tmp/chatbench" -peer "$peer" \
			-url "http://127.0.0.1:$http_port" "${nats[@]}" \
			-server-pid "$server_pid" -json "$out" "$@" || rc=$?
		if ((rc != 0)); then
			status=1
			echo "--- chatbench exited $rc; last lines of the $peer log"
			tail -n 20 "$server_log"
		fi
		stop_server
		if [[ -f $out ]]; then
			if [[ $peer == chat ]]; then chat_files+=("$out"); else centrifugo_files+=("$out"); fi
		fi
	done
done

echo
echo "=== chat vs centrifugo ($runs run(s) each; server on CPU $server_cpu, chatbench on CPU $tool_cpu)"
if ((${#chat_files[@]} + ${#centrifugo_files[@]} > 0)); then
	"$tmp/chatbench" compare "${chat_files[@]}" "${centrifugo_files[@]}"
fi
exit "$status"
