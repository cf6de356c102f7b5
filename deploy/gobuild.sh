#!/bin/sh
# gobuild.sh SERVICE OUTDIR builds one binary as the images do: static
# (CGO_ENABLED=0), trimmed, from its own module without the workspace
# (GOWORK=off), so each module's go.mod and go.sum must be complete. The
# Dockerfile runs it, and so does the deploy test for the processes it starts.
set -eu
service=$1
out=$2
case "$service" in
gateway) dir=services/gateway pkg=./cmd/gateway ;;
history) dir=services/history pkg=./cmd/history ;;
bot) dir=services/bot pkg=./cmd/bot ;;
sms-worker) dir=services/smsworker pkg=./cmd/sms-worker ;;
accounts) dir=services/accounts pkg=./cmd/accounts ;;
allinone) dir=services/allinone pkg=. ;;
healthprobe) dir=deploy pkg=./cmd/healthprobe ;;
nats-server) dir=deploy pkg=github.com/nats-io/nats-server/v2 ;;
*)
	echo "gobuild.sh: unknown service $service" >&2
	exit 2
	;;
esac
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/../$dir"
CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags="-s -w" -o "$out/$service" "$pkg"
