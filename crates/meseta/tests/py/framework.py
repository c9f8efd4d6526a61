#!/usr/bin/env python3
"""A pymesos framework driven by `crates/meseta/tests/pymesos_test.rs`.

It talks to a meseta master through the unchanged `pymesos` package (MesosSchedulerDriver), and
writes what happens to `--out` as JSON lines ({"event": ..., ...}) for the Rust test to read.

Modes:
  launch  launch `--tasks` tasks and exit 0 once every one is TASK_FINISHED (the driver then tears
          the framework down). With `--hold`, wait for all of them to be TASK_RUNNING, write
          {"event":"all_running"} and keep running until killed.
  resume  re-subscribe with `--framework-id`, reconcile the tasks `t0..t{N-1}` (task_id only, as
          pymesos does), write {"event":"reconciled"} once all of them came back TASK_RUNNING,
          wait for the file `--go` to exist, kill them, and exit 0 after every TASK_KILLED
          (the driver then tears the framework down).
  calls   once subscribed, make every other call the pymesos driver offers (suppress, revive,
          request, message, inverse offers, operation reconciliation/acks, kill and reconcile of
          an unknown task), writing {"event":"call","name":..,"ok":..} for each; exit 0 once the
          unknown task came back TASK_LOST twice (kill + reconcile) and every call was accepted.

Exit status: 0 on success, 2 on timeout, 3 when the master reported an error or a task failed.
"""

import argparse
import getpass
import json
import logging
import os
import sys
import threading
import time

from pymesos import MesosSchedulerDriver, Scheduler

TERMINAL = {
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR",
    "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN",
}
EPS = 1e-6


class Recorder(object):
    """Appends JSON lines to the output file (thread-safe)."""

    def __init__(self, path):
        self._lock = threading.Lock()
        self._f = open(path, "a")

    def write(self, event, **fields):
        fields["event"] = event
        line = json.dumps(fields, sort_keys=True)
        with self._lock:
            self._f.write(line + "\n")
            self._f.flush()


def scalar(resources, name):
    return sum(
        r.get("scalar", {}).get("value", 0.0)
        for r in resources
        if r.get("name") == name and r.get("type", "SCALAR") == "SCALAR"
    )


class TestScheduler(Scheduler):
    def __init__(self, args, out):
        self.args = args
        self.out = out
        self.lock = threading.Lock()
        self.task_ids = ["t%d" % i for i in range(args.tasks)]
        self.pending = list(self.task_ids) if args.mode == "launch" else []
        self.states = {}
        self.seen = {}  # task id -> set of states ever received
        self.reconciled = set()
        self.done = threading.Event()
        self.failed = None
        self.announced = False
        self.calls_done = False
        self.unknown_lost = 0  # calls mode: TASK_LOST updates of the unknown task

    # -- subscription ----------------------------------------------------------------------
    def registered(self, driver, framework_id, master_info):
        self.out.write("registered", framework_id=framework_id["value"],
                       master=dict(master_info))
        if self.args.mode == "calls":
            threading.Thread(target=self.make_calls, args=(driver,), daemon=True).start()

    def make_calls(self, driver):
        """Every driver call but launch/decline/ack; any non-2xx reply raises in _send."""
        unknown = {"value": "no-such-task"}
        agent = {"value": "no-such-agent"}
        op = {"operation_id": {"value": "op-1"}, "agent_id": agent}
        calls = [
            ("suppressOffers", lambda: driver.suppressOffers()),
            ("suppressOffers(roles)", lambda: driver.suppressOffers(["*"])),
            ("reviveOffers(roles)", lambda: driver.reviveOffers(["*"])),
            ("reviveOffers", lambda: driver.reviveOffers()),
            ("requestResources", lambda: driver.requestResources([{"agent_id": agent}])),
            ("sendFrameworkMessage",
             lambda: driver.sendFrameworkMessage({"value": "e"}, agent, "aGVsbG8=")),
            ("acceptInverseOffers", lambda: driver.acceptInverseOffers([{"value": "io-1"}])),
            ("declineInverseOffer", lambda: driver.declineInverseOffer([{"value": "io-1"}])),
            ("reconcileOperations", lambda: driver.reconcileOperations([op])),
            ("acknowledgeOperationStatusUpdate", lambda: driver.acknowledgeOperationStatusUpdate(
                dict(op, uuid="AAAAAAAAAAAAAAAAAAAAAA==", state="OPERATION_FINISHED"))),
            ("killTask(unknown)", lambda: driver.killTask(unknown)),
            ("reconcileTasks(unknown)", lambda: driver.reconcileTasks([{"task_id": unknown}])),
            ("reconcileTasks(implicit)", lambda: driver.reconcileTasks([])),
        ]
        for name, call in calls:
            try:
                call()
                self.out.write("call", name=name, ok=True)
            except Exception as e:  # the driver raises RuntimeError on a non-2xx reply
                self.out.write("call", name=name, ok=False, why=str(e))
                self.fail("%s: %s" % (name, e))
        with self.lock:
            self.calls_done = True
            self.check_calls_done()

    def check_calls_done(self):
        if self.calls_done and self.unknown_lost >= 2:
            self.done.set()

    def reregistered(self, driver, master_info):
        self.out.write("reregistered", framework_id=driver.framework_id,
                       master=dict(master_info))
        if self.args.mode == "resume":
            driver.reconcileTasks([{"task_id": {"value": t}} for t in self.task_ids])

    def disconnected(self, driver):
        self.out.write("disconnected")

    def error(self, driver, message):
        self.out.write("error", message=message)
        self.fail("master error: %s" % message)

    # -- offers ----------------------------------------------------------------------------
    def resourceOffers(self, driver, offers):
        for offer in offers:
            tasks = self.tasks_for(offer)
            if tasks:
                self.out.write("launch", offer=offer["id"]["value"],
                               agent_id=offer["agent_id"]["value"],
                               tasks=[t["task_id"]["value"] for t in tasks])
                driver.launchTasks(offer["id"], tasks, filters={"refuse_seconds": 1})
            else:
                driver.declineOffer(offer["id"], filters={"refuse_seconds": 3600})

    def tasks_for(self, offer):
        cpus = scalar(offer.get("resources", []), "cpus")
        mem = scalar(offer.get("resources", []), "mem")
        tasks = []
        with self.lock:
            while self.pending and cpus + EPS >= self.args.cpus and mem + EPS >= self.args.mem:
                tid = self.pending.pop(0)
                cpus -= self.args.cpus
                mem -= self.args.mem
                tasks.append(self.task_info(tid, offer))
        return tasks

    def task_info(self, tid, offer):
        return {
            "task_id": {"value": tid},
            "agent_id": offer["agent_id"],
            "name": "pymesos-%s" % tid,
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": self.args.cpus}},
                {"name": "mem", "type": "SCALAR", "scalar": {"value": self.args.mem}},
            ],
            "command": dict(
                {"shell": True, "value": self.args.command},
                **({"user": self.args.task_user} if self.args.task_user else {})),
        }

    def offerRescinded(self, driver, offer_id):
        self.out.write("rescinded", offer=offer_id["value"])

    # -- updates ---------------------------------------------------------------------------
    def statusUpdate(self, driver, status):
        tid = status["task_id"]["value"]
        state = status["state"]
        self.out.write(
            "update", task_id=tid, state=state,
            agent_id=status.get("agent_id", {}).get("value"),
            source=status.get("source"), reason=status.get("reason"),
            message=status.get("message"), has_uuid="uuid" in status,
        )
        with self.lock:
            self.states[tid] = state
            self.seen.setdefault(tid, set()).add(state)
            if self.args.mode == "launch":
                self.on_launch_update(driver, tid, state)
            elif self.args.mode == "calls":
                if tid == "no-such-task" and state == "TASK_LOST":
                    self.unknown_lost += 1
                self.check_calls_done()
            else:
                self.on_resume_update(driver, tid, state, status.get("reason"))

    def on_launch_update(self, driver, tid, state):
        if state in TERMINAL and state != "TASK_FINISHED":
            self.fail("task %s ended in %s" % (tid, state))
            return
        wanted = "TASK_RUNNING" if self.args.hold else "TASK_FINISHED"
        if all(wanted in self.seen.get(t, ()) for t in self.task_ids):
            if self.args.hold:
                if not self.announced:
                    self.announced = True
                    self.out.write("all_running")
                    driver.suppressOffers()
            else:
                self.done.set()

    def on_resume_update(self, driver, tid, state, reason):
        if state == "TASK_RUNNING" and reason == "REASON_RECONCILIATION":
            self.reconciled.add(tid)
            if self.reconciled == set(self.task_ids) and not self.announced:
                self.announced = True
                self.out.write("reconciled")
                threading.Thread(target=self.kill_after_go, args=(driver,), daemon=True).start()
        elif state in TERMINAL:
            if state != "TASK_KILLED":
                self.fail("task %s ended in %s" % (tid, state))
            elif all(self.states.get(t) == "TASK_KILLED" for t in self.task_ids):
                self.done.set()

    def kill_after_go(self, driver):
        while not os.path.exists(self.args.go):
            time.sleep(0.1)
        for tid in self.task_ids:
            driver.killTask({"value": tid})
        self.out.write("killed_sent")

    def fail(self, why):
        if self.failed is None:
            self.failed = why
        self.done.set()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--master", required=True, help="host:port of the meseta master")
    p.add_argument("--out", required=True, help="JSON-lines progress file")
    p.add_argument("--mode", choices=["launch", "resume", "calls"], default="launch")
    p.add_argument("--tasks", type=int, default=1)
    p.add_argument("--command", default="true")
    p.add_argument("--cpus", type=float, default=0.1)
    p.add_argument("--mem", type=float, default=32.0)
    p.add_argument("--name", default="pymesos-test")
    p.add_argument("--failover-timeout", type=float, default=None,
                   help="FrameworkInfo.failover_timeout (pymesos sends 100 when unset)")
    p.add_argument("--framework-id", default=None, help="re-subscribe with this id")
    p.add_argument("--hold", action="store_true",
                   help="launch mode: stay subscribed once every task is RUNNING")
    p.add_argument("--go", default=None, help="resume mode: kill the tasks once this file exists")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--task-user", default=None, help="CommandInfo.user of every task")
    p.add_argument("--principal", default=None, help="authenticate with this principal...")
    p.add_argument("--secret", default=None, help="...and secret (HTTP basic auth)")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    if args.mode == "resume" and not (args.framework_id and args.go):
        sys.exit("resume mode needs --framework-id and --go")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Recorder(args.out)
    # root names no user: the agent runs the tasks as its default (unprivileged) user.
    user = getpass.getuser()
    framework = {"user": "" if user == "root" else user, "name": args.name,
                 "hostname": "localhost"}
    if args.failover_timeout is not None:
        framework["failover_timeout"] = args.failover_timeout
    if args.framework_id:
        framework["id"] = {"value": args.framework_id}
    sched = TestScheduler(args, out)
    # failover=True keeps the framework (no TEARDOWN) when the driver stops: the hold run is
    # meant to be SIGKILLed and leave its tasks to a successor.
    driver = MesosSchedulerDriver(sched, framework, args.master, failover=args.hold,
                                  principal=args.principal, secret=args.secret)
    driver.start()
    finished = sched.done.wait(args.timeout)
    if args.hold and not sched.failed:
        while True:  # until SIGKILL
            time.sleep(1)
    driver.stop()
    driver.join()
    if not finished:
        out.write("timeout", states=sched.states)
        return 2
    if sched.failed:
        out.write("failed", why=sched.failed)
        return 3
    out.write("done", states=sched.states)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
