"""chronos-python against meseta's Chronos API: add, list, search, run, stat, graph and delete jobs.

Usage: chronos_client.py HOST:PORT. Prints "OK" and exits 0 when every step behaved like Chronos;
raises (non-zero exit) at the first step that did not. Used by crates/meseta/tests/jobs_test.rs.
"""

import sys
import time

import chronos


def wait_for(what, fn, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def job_named(client, name):
    for job in client.list():
        if job["name"] == name:
            return job
    return None


def main():
    client = chronos.connect([sys.argv[1]])  # default: Chronos 3 paths under /v1
    parent = {
        "name": "py-parent",
        "command": "echo parent",
        "owner": "ops@example.com",
        "disabled": False,
        "schedule": "R/2099-01-01T00:00:00Z/PT24H",
        "epsilon": "PT60S",
        "cpus": 0.1,
        "mem": 32,
    }
    child = {
        "name": "py-child",
        "command": "echo child",
        "owner": "ops@example.com",
        "disabled": False,
        "parents": ["py-parent"],
        "cpus": 0.1,
        "mem": 32,
    }
    client.add(parent)
    client.add(child)

    names = sorted(j["name"] for j in client.list())
    assert names == ["py-child", "py-parent"], names
    listed = job_named(client, "py-parent")
    assert listed["lastSuccess"] == "" and listed["disabled"] is False, listed
    assert listed["schedule"].endswith("/PT24H"), listed
    assert [j["name"] for j in client.search(name="PY-PAR")] == ["py-parent"]

    # Update through the same client call (POST to /v1/scheduler/iso8601 replaces by name).
    parent["command"] = "echo parent v2"
    client.update(parent)
    assert job_named(client, "py-parent")["command"] == "echo parent v2"

    # Run now: the parent succeeds, and its success fires the child.
    client.run("py-parent")
    wait_for("py-parent to succeed", lambda: job_named(client, "py-parent")["successCount"] >= 1)
    wait_for("py-child to succeed", lambda: job_named(client, "py-child")["successCount"] >= 1)
    assert job_named(client, "py-parent")["lastSuccess"] != ""

    stat = client.job_stat("py-parent")
    assert stat["histogram"]["count"] >= 1, stat
    assert len(stat["taskStatHistory"]) >= 1, stat
    graph = client.scheduler_graph()
    assert "link,py-parent,py-child" in graph, graph
    ranked = client.scheduler_stat_99th()
    assert any(r["jobNameLabel"] == "py-parent" for r in ranked), ranked

    client.delete_tasks("py-parent")
    client.delete("py-child")
    client.delete("py-parent")
    assert client.list() == [], client.list()

    # A 400 surfaces as ChronosAPIError (the client then gives up: "No remaining Chronos servers").
    try:
        client.add(dict(parent, name="bad name!"))
    except chronos.ChronosAPIError:
        pass
    else:
        raise AssertionError("an invalid name was accepted")
    assert client.list() == []
    print("OK")


if __name__ == "__main__":
    main()
