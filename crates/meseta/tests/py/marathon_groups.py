"""Drives meseta's /v2/groups with the `marathon` PyPI client (0.13.0).

Usage: marathon_groups.py URL. Exits non-zero (with the failing step) on any error.
"""
import sys
import time

from marathon_session import client, listen, parse_errors, step, wait

from marathon import MarathonApp
from marathon.exceptions import ConflictError, MarathonHttpError
from marathon.models.events import MarathonGroupChangeFailed, MarathonGroupChangeSuccess
from marathon.models.group import MarathonGroup

URL = sys.argv[1]
c = client(URL)
events = listen(URL)


def running(app_id, n):
    def ok():
        a = c.get_app(app_id)
        return a.tasks_running == n and not a.deployments
    wait(f"{app_id} has {n} running", ok)


step("create_group")
group = MarathonGroup(
    id="/pyg",
    apps=[
        MarathonApp(id="db", cmd="sleep 1000", cpus=0.05, mem=16, instances=1),
        MarathonApp(id="web", cmd="sleep 1000", cpus=0.05, mem=16, instances=1, dependencies=["db"]),
    ],
)
r = c.create_group(group)
assert "deploymentId" in r and "version" in r, r
running("/pyg/db", 1)
running("/pyg/web", 1)

step("create_group again: conflict")
try:
    c.create_group(group)
    raise AssertionError("second create_group succeeded")
except ConflictError as e:
    assert "already created" in str(e), e

step("get_group")
g = c.get_group("pyg")
assert g.id == "/pyg", g.id
assert sorted(a.id for a in g.apps) == ["/pyg/db", "/pyg/web"], [a.id for a in g.apps]
c.list_groups()

step("scale_group")
r = c.scale_group("pyg", 2)
assert "deploymentId" in r, r
running("/pyg/db", 2)
running("/pyg/web", 2)

step("delete_group")
# A group holding apps goes only with meseta's bulk-delete confirmation.
try:
    c.delete_group("pyg")
    raise AssertionError("deleting a group of apps without ?confirm=true was accepted")
except MarathonHttpError as e:
    assert e.status_code == 409, e
r = c._do_request("DELETE", "/v2/groups/pyg", params={"force": False, "confirm": "true"}).json()
assert "deploymentId" in r, r
wait("apps gone", lambda: c.list_apps() == [])
wait("deployments done", lambda: not c.list_deployments())

step("events")
time.sleep(1)
errors = parse_errors(events)
assert not errors, errors
changes = [e.group_id for e in events if isinstance(e, MarathonGroupChangeSuccess)]
assert changes.count("/pyg") >= 3, changes
failed = [e.group_id for e in events if isinstance(e, MarathonGroupChangeFailed)]
assert failed == ["/pyg"], failed
print("OK")
