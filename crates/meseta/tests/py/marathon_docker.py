"""Creates a DOCKER app with the `marathon` PyPI client (0.13.0) as its users write it: a BRIDGE
network and port mappings under `container.docker`, the image given on the command line.

Usage: marathon_docker.py URL IMAGE. The app must run, answer HTTP on its host port, and
`get_app` must parse it back with the same container. Exits non-zero on any error; prints OK.
"""
import sys
import urllib.request

from marathon_session import client, step, wait

from marathon import MarathonApp
from marathon.models.container import (
    MarathonContainer,
    MarathonContainerPortMapping,
    MarathonDockerContainer,
)

URL, IMAGE = sys.argv[1], sys.argv[2]
c = client(URL)

step("create a DOCKER app with a BRIDGE network")
app = MarathonApp(
    cmd="mkdir -p $MESOS_SANDBOX/www && echo hi-from-marathon-python > $MESOS_SANDBOX/www/index.html && exec httpd -f -p 8080 -h $MESOS_SANDBOX/www",
    cpus=0.1,
    mem=32,
    instances=1,
    container=MarathonContainer(
        docker=MarathonDockerContainer(
            image=IMAGE,
            network="BRIDGE",
            port_mappings=[MarathonContainerPortMapping(container_port=8080, host_port=0, protocol="tcp")],
        )
    ),
)
created = c.create_app("py-docker", app)
assert created.id == "/py-docker", created.id

step("the task runs on a host port")
wait("a running task", lambda: any(t.state == "TASK_RUNNING" for t in c.list_tasks("py-docker")))
task = next(t for t in c.list_tasks("py-docker") if t.state == "TASK_RUNNING")
assert task.ports and task.ports[0] > 0, task.ports


def answers():
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{task.ports[0]}/index.html", timeout=2) as r:
            return b"hi-from-marathon-python" in r.read()
    except OSError:
        return False


step("HTTP through the host port reaches the container")
wait("HTTP on the host port", answers, timeout=30)

step("get_app parses the container back")
got = c.get_app("py-docker")
assert got.container is not None, got
assert got.container.type == "DOCKER", got.container.type
assert got.container.docker.image == IMAGE, got.container.docker.image
mappings = got.container.port_mappings or got.container.docker.port_mappings or []
assert [m.container_port for m in mappings] == [8080], mappings

step("delete")
c.delete_app("py-docker", force=True)
wait("the app is gone", lambda: all(a.id != "/py-docker" for a in c.list_apps()))
print("OK")
