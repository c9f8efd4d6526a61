#!/usr/bin/env bash
# End-to-end isolation checks of the meseta binary under a pure cgroup v2 hierarchy.
# Runs INSIDE the VM booted by ../shared/tools/cgroup-v2-vm (see .ci/run), as root:
#   cgroup-v2-vm --rwdir <repo> --rwdir /tmp -- bash <repo>/.ci/cgroup-v2-lane.sh <repo>/target/debug/meseta
# Prints one PASS/FAIL line per check and exits non-zero if any check failed.
set -u
BIN=$(readlink -f "${1:?usage: cgroup-v2-lane.sh <path of the meseta binary>}")
CG=/sys/fs/cgroup
FAILS=0
pass() { echo "PASS $1"; }
fail() {
  echo "FAIL $1: $2"
  FAILS=$((FAILS + 1))
}

if [ "$(stat -fc %T "$CG" 2>/dev/null)" != cgroup2fs ]; then
  echo "FAIL setup: $CG is not a cgroup v2 file system"
  exit 1
fi
[ -x "$BIN" ] || { echo "FAIL setup: no meseta binary at $BIN"; exit 1; }
# Run the binary from the VM's memory: read over the shared file system, each start of a debug
# build (hundreds of MB) took seconds.
if cp "$BIN" /dev/shm/meseta-lane 2>/dev/null; then BIN=/dev/shm/meseta-lane; fi

T=$(mktemp -d /tmp/meseta-v2lane.XXXXXX)
chmod 755 "$T"
mkdir -m 1777 "$T/shared" # tasks run as nobody: marker files go here
STARTED=()
cleanup() {
  for p in "${STARTED[@]}"; do kill -9 "$p" 2>/dev/null; done
  [ "$FAILS" = 0 ] || { echo "--- logs in $T:"; tail -n 15 "$T"/*.log 2>/dev/null; }
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_for SECS CMD...: poll CMD every 0.3 s until it succeeds or SECS pass.
wait_for() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.3
  done
}

# task_field NAME FIELD: FIELD (id, state) of the task whose name is NAME in the master's state.
task_field() {
  "$BIN" --master "$MASTER" task list --all --json 2>/dev/null | python3 -c '
import json, sys
try:
    tasks = json.load(sys.stdin)
except ValueError:  # not up yet: nothing to report
    sys.exit(0)
for t in tasks:
    if t.get("name") == sys.argv[1]:
        print(t.get(sys.argv[2], "")); break' "$1" "$2"
}
task_in_state() { [ "$(task_field "$1" state)" = "$2" ]; }
agent_active() {
  curl -sf "$MASTER/master/slaves" | python3 -c '
import json, sys
try:
    slaves = json.load(sys.stdin).get("slaves", [])
except ValueError:  # the master is not up yet
    sys.exit(1)
sys.exit(0 if any(s.get("active") for s in slaves) else 1)'
}
# The cgroup directory of task id $1 (under meseta/<agent-id>/).
task_cgroup() { ls -d "$CG"/meseta/*/"$1" 2>/dev/null | head -n 1; }
leftover_cgroups() { find "$CG/meseta" -mindepth 1 -type d 2>/dev/null; }

# (e) `meseta dev` stopped with SIGINT leaves nothing under /sys/fs/cgroup/meseta (run first, while
# nothing else uses the tree).
DP=$(free_port)
MASTER=http://127.0.0.1:$DP
"$BIN" dev --listen "127.0.0.1:$DP" --data-dir "$T/dev" --resources "cpus:2;mem:1024" >"$T/dev.log" 2>&1 &
DEV=$!
STARTED+=("$DEV")
if ! wait_for 60 agent_active; then
  fail "dev-cleanup" "meseta dev did not come up"
else
  "$BIN" --master "$MASTER" execute --name devtask --command "sleep 300" --resources "cpus:0.1;mem:32" \
    >"$T/devtask.log" 2>&1 &
  STARTED+=("$!")
  if ! wait_for 60 task_in_state devtask TASK_RUNNING; then
    fail "dev-cleanup" "dev task never running"
  elif [ -z "$(leftover_cgroups)" ]; then
    fail "dev-cleanup" "no task cgroup under $CG/meseta while the task runs"
  else
    kill -INT "$DEV"
    if ! wait_for 30 bash -c "! kill -0 $DEV 2>/dev/null"; then
      fail "dev-cleanup" "meseta dev still running 30 s after SIGINT"
    elif [ -n "$(leftover_cgroups)" ]; then
      fail "dev-cleanup" "left behind: $(leftover_cgroups | tr '\n' ' ')"
    else
      pass "dev-cleanup: nothing left under $CG/meseta after meseta dev stopped on SIGINT"
    fi
  fi
fi
kill -9 "$DEV" 2>/dev/null

# A master and an agent as separate processes.
MP=$(free_port)
AP=$(free_port)
MASTER=http://127.0.0.1:$MP
"$BIN" master --listen "127.0.0.1:$MP" --data-dir "$T/master" >"$T/master.log" 2>&1 &
STARTED+=("$!")
start_agent() {
  "$BIN" agent --master "$MASTER" --listen "127.0.0.1:$AP" --work-dir "$T/agent" \
    --resources "cpus:2;mem:1024" >>"$T/agent.log" 2>&1 &
  AGENT=$!
  STARTED+=("$AGENT")
}
# (f) A stale empty agent cgroup of an agent that no longer exists is removed at agent start.
mkdir -p "$CG/meseta/stale-agent/stale-task"
# Left behind long ago: agents leave cgroups younger than ten minutes alone.
touch -d '1 hour ago' "$CG/meseta/stale-agent/stale-task" "$CG/meseta/stale-agent"
start_agent
if ! wait_for 60 agent_active; then
  echo "FAIL setup: the agent did not register"
  exit 1
fi
if [ -e "$CG/meseta/stale-agent" ]; then
  fail "stale-prune" "$CG/meseta/stale-agent still there after agent start"
else
  pass "stale-prune: a stale empty agent cgroup was removed at agent start"
fi

# (a) limits and (c) kill with grace, on one task.
"$BIN" --master "$MASTER" execute --name limits \
  --command "trap 'echo term > $T/shared/limits-term; exit 0' TERM; sleep 300 & wait \$!" \
  --resources "cpus:0.5;mem:64" >"$T/limits.log" 2>&1 &
STARTED+=("$!")
if ! wait_for 60 task_in_state limits TASK_RUNNING; then
  fail "limits" "task never running"
  fail "kill-grace" "task never running"
else
  ID=$(task_field limits id)
  DIR=$(task_cgroup "$ID")
  got="memory.max=$(cat "$DIR/memory.max" 2>&1) cpu.max=$(cat "$DIR/cpu.max" 2>&1) pids.max=$(cat "$DIR/pids.max" 2>&1)"
  want="memory.max=67108864 cpu.max=50000 100000 pids.max=4096"
  if [ "$got" = "$want" ]; then pass "limits: $got"; else fail "limits" "got '$got' in '$DIR', want '$want'"; fi

  "$BIN" --master "$MASTER" task kill "$ID" >>"$T/limits.log" 2>&1
  if ! wait_for 60 task_in_state limits TASK_KILLED; then
    fail "kill-grace" "task not TASK_KILLED but $(task_field limits state)"
  elif [ "$(cat "$T/shared/limits-term" 2>/dev/null)" != term ]; then
    fail "kill-grace" "TASK_KILLED but the TERM trap did not run"
  else
    pass "kill-grace: SIGTERM trap ran, then TASK_KILLED"
  fi
fi

# (b) A memory hog ends TASK_FAILED with REASON_CONTAINER_LIMITATION_MEMORY.
timeout 120 "$BIN" --master "$MASTER" execute --name hog --command "head -c 300M /dev/zero | tail" \
  --resources "cpus:0.5;mem:64" >"$T/hog.log" 2>&1
last=$(grep "TASK_" "$T/hog.log" | tail -n 1)
case "$last" in
  *TASK_FAILED*REASON_CONTAINER_LIMITATION_MEMORY*) pass "oom: $last" ;;
  *) fail "oom" "last update '$last'" ;;
esac

# (d) kill -9 the agent, start it again on the same work dir: the task is reattached.
"$BIN" --master "$MASTER" execute --name reattach --command "sleep 300" --resources "cpus:0.1;mem:32" \
  >"$T/reattach.log" 2>&1 &
STARTED+=("$!")
if ! wait_for 60 task_in_state reattach TASK_RUNNING; then
  fail "reattach" "task never running"
else
  ID=$(task_field reattach id)
  DIR=$(task_cgroup "$ID")
  before=$(cat "$DIR/cgroup.procs" 2>/dev/null | sort | tr '\n' ' ')
  kill -9 "$AGENT"
  wait "$AGENT" 2>/dev/null
  start_agent
  reattached() { grep -q "reattaching to running task" "$T/agent.log" && agent_active; }
  if ! wait_for 60 reattached; then
    fail "reattach" "the restarted agent did not reattach and register"
  else
    sleep 1 # let the master settle the re-registration before reading its state
    after=$(cat "$DIR/cgroup.procs" 2>/dev/null | sort | tr '\n' ' ')
    state=$(task_field reattach state)
    if [ -z "$before" ] || [ "$before" != "$after" ]; then
      fail "reattach" "pids before '$before' after '$after'"
    elif [ "$state" != TASK_RUNNING ]; then
      fail "reattach" "master state $state"
    else
      "$BIN" --master "$MASTER" task kill "$ID" >>"$T/reattach.log" 2>&1
      if wait_for 60 task_in_state reattach TASK_KILLED; then
        pass "reattach: same pids ($before) still TASK_RUNNING after agent kill -9 + restart, then killed"
      else
        fail "reattach" "reattached task not killable: $(task_field reattach state)"
      fi
    fi
  fi
fi

echo "cgroup v2 lane: $FAILS failure(s)"
[ "$FAILS" = 0 ]
