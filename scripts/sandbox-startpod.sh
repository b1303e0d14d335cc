#!/usr/bin/env bash
# startPod of a sandboxed exec pod beside an unsandboxed one and beside bare
# `bwrap … true`, in one run: two servers (--sandbox auto, --sandbox off) on
# throwaway SQLite stores, N pods each (`sleep 60`, stopped after each start),
# timed from the client (curl) around the startPod mutation.
# Usage: scripts/sandbox-startpod.sh [path/to/ipa] [N]
set -euo pipefail
ipa=${1:-./ipa}
n=${2:-30}
dir=$(mktemp -d /var/tmp/ipa-sandbox-perf.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

serve() { # port mode
  "$ipa" serve --addr "127.0.0.1:$1" --sandbox "$2" --data-dir "$dir/d$1" \
    --database "sqlite://$dir/db$1.db" --log-level warn >"$dir/log$1" 2>&1 &
  pids+=($!)
}
q() { curl -s "http://127.0.0.1:$1/graphql" -H 'content-type: application/json' -d "$2"; }
stats() { sort -n | awk -v what="$1" '{a[NR]=$1} END {printf "%-28s min %6.1f ms  median %6.1f ms  p90 %6.1f ms  max %6.1f ms\n", what, a[1]/1000, a[int(NR/2)+1]/1000, a[int(NR*0.9)]/1000, a[NR]/1000}'; }
now_us() { echo $(( $(date +%s%N) / 1000 )); }

serve 18951 auto
serve 18952 off
for port in 18951 18952; do
  until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do sleep 0.1; done
done
for port in 18951 18952; do
  for _ in $(seq "$n"); do
    id=$(q $port '{"query":"mutation{createTask(input:{title:\"p\",runtime:\"exec\",runtimeConfig:{command:[\"sleep\",\"60\"]}}){task{id}}}"}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
    t0=$(now_us)
    q $port '{"query":"mutation{startPod(taskId:\"'"$id"'\"){started}}"}' >/dev/null
    echo $(( $(now_us) - t0 ))
    q $port '{"query":"mutation{stopPod(taskId:\"'"$id"'\"){task{id}}}"}' >/dev/null
  done | stats "startPod, $( [ $port = 18951 ] && echo sandboxed || echo unsandboxed )"
done
for _ in $(seq "$n"); do
  t0=$(now_us)
  bwrap --die-with-parent --unshare-all --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp true
  echo $(( $(now_us) - t0 ))
done | stats "bare bwrap … true"
