#!/usr/bin/env bash
# A one-node Ray cluster on this machine for Hydra's Ray launcher (hydra/launcher=local_ray), kept on 127.0.0.1.
#   bash scripts/local_ray.sh run CMD...   start a cluster, run CMD against it, stop the cluster (even on failure)
#   bash scripts/local_ray.sh start        start one and print the two variables a command joining it needs
#   bash scripts/local_ray.sh stop         stop the one `start` started (by its process id; never `ray stop`,
#                                          which would end every Ray process on the machine)
#   bash scripts/local_ray.sh status
# e.g. bash scripts/local_ray.sh run .venv/bin/python -m memcollab_eval -m hydra/launcher=local_ray \
#        +target=scripted +bank=none,demo_handmade limit=1 benchmarks=[gsm8k]
# Ray's workers run in the directory and with the environment of `start` (or `run`), not of the command that
# sends the jobs: start the cluster where you run the sweeps, with the same MEMCOLLAB_DATA_DIR, or give the
# sweep absolute output_dir and data_dir.
# Settings: PYTHON (default .venv/bin/python, else python3), RAY_LOCAL_DIR (pid file, address, logs; default
# /tmp/memcollab-ray: keep it short, Ray's socket paths must fit in 107 characters), RAY_NUM_CPUS (default:
# all), RAY_OBJECT_STORE_MB (default 200), RAY_START_TIMEOUT (seconds, default 180).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then PYTHON="$here/.venv/bin/python"; else PYTHON=python3; fi
fi
DIR="${RAY_LOCAL_DIR:-/tmp/memcollab-ray}"
PIDFILE="$DIR/head.pid"
ADDRFILE="$DIR/address"
# Ray's switch for a single-node cluster on the loopback address (named after the platforms where that is the
# default); without it Ray swaps 127.0.0.1 for the machine's network address, on the head and in the driver.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0

free_ports() {  # N free TCP ports on 127.0.0.1
  "$PYTHON" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  if running; then
    echo "a cluster is already running (pid $(cat "$PIDFILE"), address $(cat "$ADDRFILE"))" >&2
    return 1
  fi
  "$PYTHON" -c "import ray, hydra_plugins.hydra_ray_launcher" 2>/dev/null || {
    echo "Ray and Hydra's Ray launcher are not installed for $PYTHON: pip install -e '.[ray]'" >&2; return 2; }
  mkdir -p "$DIR"
  rm -f "$ADDRFILE"
  read -r port client agent dash amet dmet <<<"$(free_ports 6)"
  # --block keeps `ray start` in the foreground as the parent of every Ray process; on SIGTERM it stops them.
  AUTOSCALER_METRIC_PORT=$amet DASHBOARD_METRIC_PORT=$dmet setsid "$PYTHON" -m ray.scripts.scripts start --head \
    --block --node-ip-address=127.0.0.1 --port="$port" --ray-client-server-port="$client" \
    --dashboard-agent-listen-port="$agent" --dashboard-port="$dash" --include-dashboard=false \
    --num-cpus="${RAY_NUM_CPUS:-$(nproc)}" --object-store-memory=$(( ${RAY_OBJECT_STORE_MB:-200} * 1000000 )) \
    --temp-dir="$DIR" --disable-usage-stats </dev/null >"$DIR/head.log" 2>&1 &
  echo $! >"$PIDFILE"
  local deadline=$(( SECONDS + ${RAY_START_TIMEOUT:-180} ))
  until grep -q "Ray runtime started" "$DIR/head.log"; do
    if ! running; then
      echo "ray start failed; its log, $DIR/head.log:" >&2; tail -20 "$DIR/head.log" >&2; rm -f "$PIDFILE"; return 1
    fi
    if (( SECONDS > deadline )); then
      echo "ray start did not finish in ${RAY_START_TIMEOUT:-180} s; see $DIR/head.log" >&2; stop; return 1
    fi
    sleep 1
  done
  echo "127.0.0.1:$port" >"$ADDRFILE"
  echo "Ray cluster on 127.0.0.1:$port (pid $(cat "$PIDFILE"), logs in $DIR). Commands that join it need:"
  echo "  export RAY_ADDRESS=127.0.0.1:$port RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"
}

stop() {
  if ! running; then
    echo "no cluster started by this script is running"
    rm -f "$PIDFILE" "$ADDRFILE"
    return 0
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  kill -TERM "$pid"
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  # whatever of its session (setsid made pid its leader) is left, e.g. when the drain timed out
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$PIDFILE" "$ADDRFILE"
  echo "stopped the Ray cluster (pid $pid)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if running; then echo "running: pid $(cat "$PIDFILE"), address $(cat "$ADDRFILE" 2>/dev/null)"; else echo "not running"; exit 1; fi ;;
  run)
    shift
    [[ $# -gt 0 ]] || { echo "usage: $0 run COMMAND..." >&2; exit 2; }
    start >&2
    trap 'stop >&2' EXIT
    RAY_ADDRESS="$(cat "$ADDRFILE")" "$@" ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
