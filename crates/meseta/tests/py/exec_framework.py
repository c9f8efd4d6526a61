#!/usr/bin/env python3
"""A pymesos scheduler (`MesosSchedulerDriver`) whose tasks run in a custom executor
(`exec_executor.py`, on `MesosExecutorDriver`), driven by
`crates/meseta/tests/executor_pymesos_test.rs`.

It launches `--tasks` tasks, all naming one executor, on the first offer big enough; expects
each to reach TASK_FINISHED with a `ran:<id>:<data>` framework message from the executor; sends
`ping:1` to the executor and waits for `pong:1`; then sends `exit:3` and waits for the
executor's FAILURE (executorLost with wait status 768). Writes JSON lines to `--out`.
Exit status: 0 on success, 2 on timeout, 3 on an unexpected task state or error.
"""

import argparse
import getpass
import json
import logging
import os
import sys
import threading

from pymesos import MesosSchedulerDriver, Scheduler, decode_data, encode_data

HERE = os.path.dirname(os.path.abspath(__file__))


class Recorder(object):
    def __init__(self, path):
        self._lock = threading.Lock()
        self._f = open(path, "a")

    def write(self, event, **fields):
        fields["event"] = event
        with self._lock:
            self._f.write(json.dumps(fields, sort_keys=True) + "\n")
            self._f.flush()


def scalar(resources, name):
    return sum(r.get("scalar", {}).get("value", 0.0) for r in resources
               if r.get("name") == name)


class ExecScheduler(Scheduler):
    def __init__(self, args, out):
        self.args = args
        self.out = out
        self.launched = False
        self.finished = set()
        self.ran = set()
        self.pinged = False
        self.pong = False
        self.exiting = False
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.failed = None

    def executor_info(self):
        return {
            "executor_id": {"value": "pyexec"},
            "name": "pymesos test executor",
            "command": {"value": "exec %s %s" % (sys.executable,
                                                  os.path.join(HERE, "exec_executor.py"))},
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}},
            ],
            "shutdown_grace_period": {"nanoseconds": 2000000000},
        }

    def registered(self, driver, framework_id, master_info):
        self.out.write("registered", framework_id=framework_id["value"])

    def resourceOffers(self, driver, offers):
        for offer in offers:
            res = offer["resources"]
            need = 0.1 * (self.args.tasks + 1)
            if self.launched or scalar(res, "cpus") < need or scalar(res, "mem") < 32 * (self.args.tasks + 2):
                driver.declineOffer(offer["id"], {"refuse_seconds": 1})
                continue
            tasks = []
            for i in range(self.args.tasks):
                tasks.append({
                    "name": "exec-task-%d" % i,
                    "task_id": {"value": "et%d" % i},
                    "agent_id": offer["agent_id"],
                    "executor": self.executor_info(),
                    "data": encode_data(("payload-%d" % i).encode()),
                    "resources": [
                        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                        {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
                    ],
                })
            self.launched = True
            self.out.write("launch", agent_id=offer["agent_id"]["value"], tasks=len(tasks))
            driver.launchTasks(offer["id"], tasks)

    def statusUpdate(self, driver, update):
        tid = update["task_id"]["value"]
        state = update["state"]
        self.out.write("update", task_id=tid, state=state,
                       executor_id=update.get("executor_id", {}).get("value"),
                       source=update.get("source"), has_uuid="uuid" in update,
                       data=decode_data(update["data"]).decode() if update.get("data") else None,
                       message=update.get("message"))
        with self.lock:
            if state == "TASK_FINISHED":
                self.finished.add(tid)
            elif state not in ("TASK_STARTING", "TASK_RUNNING"):
                self.failed = "task %s: %s (%s)" % (tid, state, update.get("message"))
                self.done.set()
            self.maybe_ping(driver, update)

    def maybe_ping(self, driver, update):
        if (not self.pinged and len(self.finished) == self.args.tasks
                and len(self.ran) == self.args.tasks):
            self.pinged = True
            self.agent_id = update["agent_id"]
            driver.sendFrameworkMessage({"value": "pyexec"}, self.agent_id,
                                        encode_data(b"ping:1"))
            self.out.write("ping")

    def frameworkMessage(self, driver, executor_id, agent_id, message):
        text = decode_data(message).decode("utf-8")
        self.out.write("message", executor_id=executor_id["value"],
                       agent_id=agent_id["value"], data=text)
        with self.lock:
            if text.startswith("ran:"):
                self.ran.add(text.split(":")[1])
                self.maybe_ping(driver, {"agent_id": agent_id})
            elif text == "pong:1" and not self.exiting:
                self.pong = True
                self.exiting = True
                driver.sendFrameworkMessage(executor_id, agent_id, encode_data(b"exit:3"))

    def executorLost(self, driver, executor_id, agent_id, status):
        self.out.write("executor_lost", executor_id=executor_id["value"],
                       agent_id=agent_id["value"], status=status)
        if self.exiting:
            self.done.set()

    def error(self, driver, message):
        self.failed = "error: %s" % message
        self.done.set()


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--master", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--timeout", type=float, default=90)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Recorder(args.out)
    user = getpass.getuser()
    framework = {"user": user, "name": "pymesos-executor-test", "hostname": "localhost",
                 "checkpoint": True}
    sched = ExecScheduler(args, out)
    driver = MesosSchedulerDriver(sched, framework, args.master)
    driver.start()
    finished = sched.done.wait(args.timeout)
    driver.stop()
    driver.join()
    if not finished:
        out.write("timeout")
        return 2
    if sched.failed:
        out.write("failed", why=sched.failed)
        return 3
    out.write("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
