"""The marathon and chronos-python clients given the list of HA masters, across a failover.

Usage: ha_clients.py PHASE HOST:PORT[,HOST:PORT...]
  before: create an app and a job through the list;
  after:  (the leader was killed meanwhile) both are still there, and new writes work.
Prints "OK" and exits 0, or raises at the first step that failed.
"""
import sys

from marathon_session import client  # noqa: F401 - sets the alias marathon needs

import chronos
from marathon import MarathonApp, MarathonClient

PHASE, HOSTS = sys.argv[1], sys.argv[2].split(",")
apps = MarathonClient(["http://" + h for h in HOSTS])
jobs = chronos.connect(HOSTS)


def job(name):
    return {
        "name": name,
        "command": "echo " + name,
        "owner": "ops@example.com",
        "disabled": False,
        "schedule": "R/2099-01-01T00:00:00Z/PT24H",
        "epsilon": "PT60S",
        "cpus": 0.1,
        "mem": 32,
    }


if PHASE == "before":
    apps.create_app("ha-py-before", MarathonApp(cmd="sleep 3600", mem=16, cpus=0.1, instances=0))
    jobs.add(job("ha-py-before"))
else:
    ids = [a.id for a in apps.list_apps()]
    assert "/ha-py-before" in ids, ids
    names = [j["name"] for j in jobs.list()]
    assert "ha-py-before" in names, names
    apps.create_app("ha-py-after", MarathonApp(cmd="sleep 3600", mem=16, cpus=0.1, instances=0))
    assert apps.get_app("ha-py-after").id == "/ha-py-after"
    jobs.add(job("ha-py-after"))
    assert "ha-py-after" in [j["name"] for j in jobs.list()]
print("OK")
