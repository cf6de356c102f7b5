# lib.sh: what run.sh and peers.sh share, sourced by both. Needs $root
# (the repository) and $tmp (a temporary directory the caller removes).

server_pid=
bench_db=

# stop_server stops the server started last (TERM, then KILL after 10 s)
# and drops its database, if it had one of its own. It may be another
# shell's child (one restarted by $tmp/restart): then wait has nothing to
# wait for, and kill -0 tells when it is gone.
stop_server() {
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		# Not a child: gone only when kill -0 says so (its ports with it).
		for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
	fi
	server_pid=
	rm -f "$tmp/server.pid"
	drop_db
}

# create_db makes a fresh database on the Postgres server at
# $CHATBENCH_POSTGRES (an admin URL, e.g.
# postgres://postgres@127.0.0.1:5432/test?sslmode=disable) and sets
# bench_db and bench_db_url, that URL with the new database in its path.
create_db() {
	bench_db="chatbench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
	psql "$CHATBENCH_POSTGRES" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $bench_db" >/dev/null
	bench_db_url=$(python3 -c 'import sys, urllib.parse as p; u = p.urlsplit(sys.argv[1]); print(p.urlunsplit(u._replace(path="/" + sys.argv[2])))' "$CHATBENCH_POSTGRES" "$bench_db")
}

# drop_db drops the database create_db made, if any.
drop_db() {
	if [[ -n $bench_db ]]; then
		psql "$CHATBENCH_POSTGRES" -qc "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" >/dev/null ||
			echo "warning: could not drop database $bench_db" >&2
	fi
	bench_db=
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# build_chat builds the all-in-one and chatbench into $tmp.
build_chat() {
	echo "building into $tmp"
	(cd "$root" && go build -o "$tmp/allinone" ./services/allinone)
	(cd "$root" && go build -o "$tmp/chatbench" ./bench)
}

# pick_cpus sets server_cpu and tool_cpu and raises the open files limit:
# 10,000 idle sockets take 10,000 descriptors in each process.
pick_cpus() {
	ulimit -n "$(ulimit -Hn)" || true
	if (($(ulimit -n) < 12000)); then
		echo "warning: open files limit is $(ulimit -n); S5 needs about 10,100 per process (raise the hard limit)" >&2
	fi
	server_cpu=0 tool_cpu=1
	if (($(nproc) < 2)); then
		echo "warning: one CPU only: server and chatbench share it" >&2
		tool_cpu=0
	fi
}

# wait_ready waits for URL $1 to answer while the server runs; $2 is its log.
wait_ready() {
	for _ in $(seq 150); do
		if curl -fsS "$1" >/dev/null 2>&1; then return 0; fi
		if ! kill -0 "$server_pid" 2>/dev/null; then
			echo "the server exited:" >&2; cat "$2" >&2; return 1
		fi
		sleep 0.2
	done
	curl -fsS "$1" >/dev/null
}

# start_allinone starts a fresh all-in-one (new data dir $tmp/data-$1, free
# HTTP and NATS ports, per-connection limits raised) pinned to server_cpu;
# sets server_pid, http_port, nats_port, server_data and server_log. With
# CHATBENCH_POSTGRES set, its history and accounts use a fresh database on
# that Postgres server (DATABASE_URL), which stop_server drops.
start_allinone() {
	http_port=$(free_port)
	nats_port=$(free_port)
	server_data="$tmp/data-$1"
	server_log="$tmp/allinone-$1.log"
	bench_db_url=
	if [[ -n ${CHATBENCH_POSTGRES:-} ]]; then
		create_db
		echo "history on Postgres: fresh database $bench_db, dropped when the server stops"
	fi
	: >"$server_log"
	launch_allinone
}

# launch_allinone starts the all-in-one on http_port, nats_port and
# server_data, pinned to server_cpu, appending to server_log, and waits
# for /readyz. Its pid is server_pid and in $tmp/server.pid, from which
# run.sh's cleanup stops a server that $tmp/restart started.
launch_allinone() {
	echo "starting the all-in-one on 127.0.0.1:$http_port (NATS $nats_port, data $server_data) pinned to CPU $server_cpu"
	local db_env=()
	if [[ -n ${bench_db_url:-} ]]; then db_env=("DATABASE_URL=$bench_db_url"); fi
	env "${db_env[@]}" \
		CHAT_DATA_DIR="$server_data" \
		CHAT_NATS_PORT=$nats_port \
		GATEWAY_ADDR=127.0.0.1:$http_port \
		GATEWAY_RATE=1000000 GATEWAY_BURST=1000000 \
		GATEWAY_MAX_CONNS_PER_ADDR=1000000 \
		GATEWAY_SEND_QUEUE="${GATEWAY_SEND_QUEUE:-256}" \
		CHAT_LOG_LEVEL=warn GATEWAY_LOG_LEVEL=warn \
		taskset -c "$server_cpu" "$tmp/allinone" >>"$server_log" 2>&1 &
	server_pid=$!
	echo "$server_pid" >"$tmp/server.pid"
	wait_ready "http://127.0.0.1:$http_port/readyz" "$server_log"
}

# write_restart writes $tmp/restart, chatbench's -restart-cmd for S7: it
# stops the all-in-one started last (TERM; its JetStream store and SQLite
# in server_data survive), starts it again on the same ports and data
# (launch_allinone, so pinned to server_cpu: chatbench's own affinity is
# not inherited) and prints the new pid once /readyz answers; all else it
# says goes to stderr.
write_restart() {
	{
		echo '#!/usr/bin/env bash'
		echo 'set -euo pipefail'
		# bench_db_url but not bench_db: the restart keeps the database.
		declare -p root tmp server_cpu http_port nats_port server_data server_log bench_db_url
		echo 'source "$root/bench/lib.sh"'
		echo 'server_pid=$(<"$tmp/server.pid")'
		echo 'stop_server'
		echo 'launch_allinone >&2'
		echo 'echo "$server_pid"'
	} >"$tmp/restart"
}
