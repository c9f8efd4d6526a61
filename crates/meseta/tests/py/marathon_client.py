"""Drives meseta's /v2 API with the `marathon` PyPI client (0.13.0), as its upstream itests do.

Usage: marathon_client.py URL. Exits non-zero (with the failing step) on any error.
"""
import sys
import time

from marathon_session import client, listen, parse_errors, step, wait

from marathon import MarathonApp
from marathon.models.events import MarathonDeploymentSuccess

URL = sys.argv[1]
c = client(URL)


def wait_deployments(what, timeout=60):
    wait(f"{what}: deployments finished", lambda: not c.list_deployments(), timeout)


step("info")
info = c.get_info()
assert info.version >= "0.11.0", info.version
assert c.ping()

events = listen(URL)

step("create trivial app")
app = c.create_app("test-trivial-app", MarathonApp(cmd="sleep 3600", mem=16, cpus=0.1, instances=5))
assert app.id == "/test-trivial-app", app.id
assert len(c.list_deployments()) == 1, c.list_deployments()
assert [a.id for a in c.list_apps()] == ["/test-trivial-app"]

step("tasks listed once deployed")
deadline = time.time() + 60
while c.get_app("test-trivial-app", embed_tasks=True).deployments:
    assert time.time() < deadline, "deployment did not finish"
    time.sleep(0.3)
tasks = c.list_tasks("test-trivial-app")
assert len(tasks) == 5, tasks
assert all(t.state == "TASK_RUNNING" for t in tasks), [t.state for t in tasks]
assert len(c.list_endpoints()) == 5

step("kill a task with scale")
app = c.get_app("test-trivial-app")
c.kill_task("test-trivial-app", app.tasks[0].id, scale=True)
wait_deployments("scale kill")
assert c.get_app("test-trivial-app").instances == 4

step("kill given tasks (replaced)")
app = c.get_app("test-trivial-app", embed_tasks=True)
killed = {t.id for t in app.tasks[:2]}
assert c.kill_given_tasks(list(killed))
deadline = time.time() + 60
while True:
    ts = c.list_tasks("test-trivial-app")
    if len(ts) == 4 and not killed & {t.id for t in ts} and all(t.state == "TASK_RUNNING" for t in ts):
        break
    assert time.time() < deadline, f"killed tasks not replaced: {[(t.id, t.state) for t in ts]}"
    time.sleep(0.3)

step("scale")
c.scale_app("test-trivial-app", instances=2)
wait_deployments("scale")
assert len(c.list_tasks("test-trivial-app")) == 2

step("update and restart")
app = c.get_app("test-trivial-app")
app.cmd = "sleep 3000"
c.update_app("test-trivial-app", app)
wait_deployments("update")
before = {t.id for t in c.list_tasks("test-trivial-app")}
c.restart_app("test-trivial-app")
wait_deployments("restart")
after = c.list_tasks("test-trivial-app")
assert len(after) == 2 and not before & {t.id for t in after}, (before, after)
versions = c.list_versions("test-trivial-app")
assert len(versions) >= 3, versions
assert c.get_app("test-trivial-app").cmd == "sleep 3000"

step("queue and groups parse")
c.list_queue()
c.list_groups()

step("delete")
c.delete_app("/test-trivial-app", force=True)
wait_deployments("delete")
assert c.list_apps() == []

step("events")
time.sleep(1)
errors = parse_errors(events)
assert not errors, errors
assert any(isinstance(e, MarathonDeploymentSuccess) for e in events), [type(e).__name__ for e in events]
print("events seen:", sorted({type(e).__name__ for e in events}))
print("OK")
