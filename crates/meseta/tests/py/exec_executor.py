#!/usr/bin/env python3
"""A custom executor on pymesos' own `MesosExecutorDriver`, started by the meseta agent for the
tasks of `exec_framework.py` (crates/meseta/tests/executor_pymesos_test.rs).

Each task: TASK_RUNNING, a framework message `ran:<task id>:<task data>` to the scheduler,
then TASK_FINISHED. Framework messages from the scheduler: `ping:<x>` is answered with
`pong:<x>`; `exit:<code>` stops the driver and exits with <code> (the scheduler then sees the
executor's FAILURE). Writes what it sees as JSON lines to `$MESOS_SANDBOX/executor.jsonl`.
"""

import base64
import json
import logging
import os
import sys
import threading

from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data


def record(event, **fields):
    fields["event"] = event
    with open(os.path.join(os.environ.get("MESOS_SANDBOX", "."), "executor.jsonl"), "a") as f:
        f.write(json.dumps(fields, sort_keys=True) + "\n")


class TestExecutor(Executor):
    def __init__(self):
        self.exit_code = None
        self.stop = threading.Event()

    def registered(self, driver, executor_info, framework_info, agent_info):
        env = {k: v for k, v in os.environ.items() if k.startswith("MESOS_")}
        record("registered", executor_id=executor_info["executor_id"]["value"],
               framework_id=framework_info["id"]["value"], env=env)

    def launchTask(self, driver, task):
        task_id = task["task_id"]["value"]
        data = decode_data(task["data"]).decode("utf-8") if task.get("data") else ""
        record("launch", task_id=task_id, data=data)

        def run():
            driver.sendStatusUpdate({"task_id": task["task_id"], "state": "TASK_RUNNING",
                                     "data": encode_data(b"running")})
            driver.sendFrameworkMessage(encode_data(("ran:%s:%s" % (task_id, data)).encode()))
            driver.sendStatusUpdate({"task_id": task["task_id"], "state": "TASK_FINISHED",
                                     "message": "done by the custom executor"})

        threading.Thread(target=run, daemon=True).start()

    def killTask(self, driver, task_id):
        record("kill", task_id=task_id["value"])
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_KILLED"})

    def frameworkMessage(self, driver, message):
        text = decode_data(message).decode("utf-8")
        record("message", data=text)
        if text.startswith("ping:"):
            driver.sendFrameworkMessage(encode_data(("pong:" + text[5:]).encode()))
        elif text.startswith("exit:"):
            self.exit_code = int(text[5:])
            self.stop.set()

    def shutdown(self, driver):
        record("shutdown")
        self.exit_code = 0
        self.stop.set()

    def error(self, driver, message):
        record("error", message=message)


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    executor = TestExecutor()
    driver = MesosExecutorDriver(executor, use_addict=True)
    driver.start()
    executor.stop.wait()
    driver.stop()
    record("exit", code=executor.exit_code)
    os._exit(executor.exit_code or 0)


if __name__ == "__main__":
    main()
