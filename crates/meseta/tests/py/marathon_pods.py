"""Pods through the `marathon` PyPI client (0.13.0).

The client has no pod methods of its own: pod requests go through its request path
(`_do_request`: its headers, its error classes per status), and what it does parse is checked
on pod traffic: `list_deployments` with `affectedPods` and `pod` actions, the event stream with
`pod_created_event`/`pod_updated_event`/`pod_deleted_event`, `instance_changed_event` and the
deployment events of pods, and `list_groups`.

Usage: marathon_pods.py URL (a cluster where pod /sleepy runs). Exits non-zero on any error.
"""
import json
import sys
import time

from marathon_session import client, listen, parse_errors, step, wait

from marathon.exceptions import ConflictError, MarathonHttpError, NotFoundError
from marathon.models.deployment import MarathonDeployment
from marathon.models.events import (
    MarathonPodCreatedEvent,
    MarathonPodDeletedEvent,
    MarathonPodUpdatedEvent,
)

URL = sys.argv[1]
c = client(URL)
events = listen(URL)


def req(method, path, body=None):
    data = json.dumps(body) if body is not None else None
    return c._do_request(method, path, data=data)


POD = {
    "id": "/py/pod",
    "scaling": {"kind": "fixed", "instances": 1},
    "containers": [
        {"name": "main", "resources": {"cpus": 0.1, "mem": 16},
         "exec": {"command": {"shell": "exec sleep 600"}}}
    ],
}

step("create")
r = req("POST", "/v2/pods", POD)
assert r.status_code == 201, r.status_code
dep = r.headers["Marathon-Deployment-Id"]
assert r.json()["id"] == "/py/pod"

step("deployments parse with affectedPods")
deployments = c.list_deployments()
mine = [d for d in deployments if d.id == dep]
if mine:
    d = mine[0]
    assert isinstance(d, MarathonDeployment)
    assert d.affected_pods == ["/py/pod"], d.affected_pods
    assert d.steps[0].actions[0].pod == "/py/pod"
    assert d.steps[0].actions[0].action == "StartPod"
wait("created pod deployed", lambda: not any(x.id == dep for x in c.list_deployments()))

step("list and get")
pods = req("GET", "/v2/pods").json()
assert "/py/pod" in [p["id"] for p in pods], pods
assert req("GET", "/v2/pods/py/pod").json()["scaling"]["instances"] == 1

step("errors map to the client's exceptions")
try:
    req("POST", "/v2/pods", POD)
    raise AssertionError("a second create succeeded")
except ConflictError:
    pass
try:
    req("GET", "/v2/pods/py/none")
    raise AssertionError("an unknown pod was found")
except NotFoundError:
    pass
try:
    req("POST", "/v2/pods", {"id": "/py/bad", "containers": []})
    raise AssertionError("an invalid pod was accepted")
except MarathonHttpError as e:
    assert e.status_code == 422, e.status_code

step("scale")
scaled = dict(POD, scaling={"kind": "fixed", "instances": 2})
r = req("PUT", "/v2/pods/py/pod", scaled)
assert r.status_code == 200
wait("scaled to 2 stable", lambda: sum(
    1 for i in req("GET", "/v2/pods/py/pod::status").json()["instances"]
    if i["status"] == "STABLE") == 2 and not c.list_deployments())

step("kill instances")
status = req("GET", "/v2/pods/py/pod::status").json()
ids = [i["id"] for i in status["instances"]]
one = req("DELETE", f"/v2/pods/py/pod::instances/{ids[0]}").json()
assert one["id"] == ids[0], one
many = req("DELETE", "/v2/pods/py/pod::instances", [ids[1]]).json()
assert [i["id"] for i in many] == [ids[1]], many
wait("killed instances replaced", lambda: (lambda st: sum(
    1 for i in st["instances"] if i["status"] == "STABLE" and i["id"] not in ids) == 2)(
        req("GET", "/v2/pods/py/pod::status").json()))

step("groups parse")
groups = c.list_groups()
assert groups is not None

step("delete")
r = req("DELETE", "/v2/pods/py/pod")
assert r.status_code == 202
wait("pod gone", lambda: "/py/pod" not in [p["id"] for p in req("GET", "/v2/pods").json()])

step("events")
time.sleep(1)
errors = parse_errors(events)
assert not errors, errors
kinds = {type(e) for e in events}
for k in (MarathonPodCreatedEvent, MarathonPodUpdatedEvent, MarathonPodDeletedEvent):
    assert k in kinds, (k, sorted(t.__name__ for t in kinds))
created = [e for e in events if isinstance(e, MarathonPodCreatedEvent)][0]
assert created.uri == "/v2/pods", created.uri
print("events seen:", sorted(t.__name__ for t in kinds))
print("OK")
