#!/usr/bin/env bash
# run.sh: what `make bench` calls. Builds the all-in-one and chatbench, starts
# a fresh all-in-one (temporary data dir, free ports, per-connection limits
# raised) pinned to CPU 0, runs the scenarios pinned to CPU 1, prints the
# table and stops the server. Extra arguments go to chatbench, e.g.
#   bash bench/run.sh -scenario S1,S4
#   bash bench/run.sh -scale 0.3          # shorter scenarios
#   bash bench/run.sh -scenario S7        # reconnect storm: restarts the server
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chatbench.XXXXXX")
source "$root/bench/lib.sh"
cleanup() {
	# S7 may have restarted the server: the pid file names the live one.
	if [[ -f $tmp/server.pid ]]; then server_pid=$(<"$tmp/server.pid"); fi
	stop_server
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_chat
pick_cpus
start_allinone 1
write_restart

echo "server pinned to CPU $server_cpu (taskset -c $server_cpu), chatbench pinned to CPU $tool_cpu (taskset -c $tool_cpu)"
status=0
taskset -c "$tool_cpu" "$tmp/chatbench" \
	-url "http://127.0.0.1:$http_port" \
	-nats-url "nats://127.0.0.1:$nats_port" \
	-server-pid "$server_pid" -restart-cmd "bash $(printf %q "$tmp/restart")" "$@" || status=$?
if ((status != 0)); then
	echo "--- last lines of the server log"
	tail -n 20 "$server_log"
fi
exit "$status"
