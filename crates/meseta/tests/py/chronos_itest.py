"""chronos-python's own integration scenarios against meseta's Chronos API.

Usage: chronos_itest.py HOST:PORT. Replays the scenarios of chronos-python's itests (trivial job,
job names with spaces on the Chronos 2 API, job and scheduler statistics of a job that never ran)
plus the graph of no jobs, with the exact expectations those itests have. Prints "OK" and exits 0
when every step behaved like Chronos; raises (non-zero exit) at the first step that did not. Used
by crates/meseta/tests/chronos_hardening_test.rs, on a fresh master and on one restarted on the
same data dir.
"""

import sys

import chronos

TRIVIAL = {
    "async": False,
    "command": "echo 1",
    "epsilon": "PT1M",
    "owner": "",
    "disabled": False,
    # In the past with no repetition left: Chronos accepts it; the job never runs.
    "schedule": "R0/2014-01-01T00:00:00Z/PT60M",
}

ZERO_HISTOGRAM = {
    "median": 0.0,
    "98thPercentile": 0.0,
    "75thPercentile": 0.0,
    "95thPercentile": 0.0,
    "99thPercentile": 0.0,
    "count": 0,
    "mean": 0.0,
}


def names(client):
    return [job["name"] for job in client.list()]


def delete_all(client):
    for name in names(client):
        client.delete(name)
    assert names(client) == [], names(client)


def trivial(client, name):
    job = dict(TRIVIAL)
    job["name"] = name
    client.add(job)


def main():
    server = sys.argv[1]
    v1 = chronos.connect([server])  # Chronos 3 paths, under /v1
    v2 = chronos.connect([server], scheduler_api_version=None)  # Chronos 2 paths

    delete_all(v1)
    # The graph of no jobs is a successful (if empty) answer, not a failed request.
    graph = v1.scheduler_graph()
    assert isinstance(graph, str) and graph.strip() == "", repr(graph)

    # Trivial chronos interaction.
    trivial(v1, "myjob")
    assert "myjob" in names(v1)
    assert [j["name"] for j in v1.search(name="myjob")] == ["myjob"]
    assert "node,myjob," in v1.scheduler_graph()

    # Gathering job stats for a job that never ran.
    assert v1.job_stat("myjob") == {"histogram": ZERO_HISTOGRAM, "taskStatHistory": []}
    for ranked in (
        v1.scheduler_stat_99th(),
        v1.scheduler_stat_98th(),
        v1.scheduler_stat_95th(),
        v1.scheduler_stat_75th(),
        v1.scheduler_stat_median(),
        v1.scheduler_stat_mean(),
    ):
        assert ranked == [{"jobNameLabel": "myjob", "time": 0.0}], ranked
    delete_all(v1)

    # Handling spaces in job names: Chronos 2 (unprefixed) accepts them, Chronos 3 refuses.
    trivial(v2, "job with spaces")
    assert "job with spaces" in names(v2)
    assert v2.job_stat("job with spaces")["taskStatHistory"] == []
    v2.delete("job with spaces")
    assert "job with spaces" not in names(v2)
    try:
        trivial(v1, "job with spaces")
    except chronos.ChronosAPIError:
        pass  # the client logs the 400's message (naming `name`) and raises this
    else:
        raise AssertionError("/v1/scheduler accepted a name with spaces")
    assert names(v1) == []
    print("OK")


if __name__ == "__main__":
    main()
