"""marathon-python and chronos-python against a meseta master run with --acl, with a team token.

Usage: acl_clients.py HOST:PORT TOKEN. The token's policy grants write on apps under /team-a/
and jobs named team-a-*; the master already holds /team-b/web and job team-b-etl. Prints "OK"
and exits 0 when the clients work within the grant and are refused outside it.
Used by crates/meseta/tests/acl_test.rs.
"""

import sys

import chronos
from marathon import MarathonApp, MarathonClient
from marathon.exceptions import MarathonHttpError


def marathon_steps(host, token):
    c = MarathonClient("http://" + host, auth_token=token)  # sends "Authorization: token=<t>"
    c.create_app("/team-a/py", MarathonApp(cmd="sleep 1000", cpus=0.01, mem=16, instances=0))
    ids = sorted(a.id for a in c.list_apps())
    assert ids == ["/team-a/py"] or set(ids) <= {"/team-a/py", "/team-a/web"}, ids
    assert all(i.startswith("/team-a/") for i in ids), ids
    try:
        c.get_app("/team-b/web")
        raise AssertionError("read /team-b/web with a /team-a/ token")
    except MarathonHttpError as e:
        assert e.status_code == 403, e
    try:
        c.delete_app("/team-b/web")
        raise AssertionError("deleted /team-b/web with a /team-a/ token")
    except MarathonHttpError as e:
        assert e.status_code == 403, e
    none = MarathonClient("http://" + host)
    try:
        none.list_apps()
        raise AssertionError("listed apps without a token")
    except MarathonHttpError as e:
        assert e.status_code == 401, e


def chronos_steps(host, token):
    c = chronos.connect([host], extra_headers={"Authorization": "Bearer " + token})
    c.add({"name": "team-a-py", "command": "true", "owner": "a@example.com", "disabled": False,
           "schedule": "R/2099-01-01T00:00:00Z/PT24H", "epsilon": "PT60S", "cpus": 0.01,
           "mem": 16})
    names = sorted(j["name"] for j in c.list())
    assert names == ["team-a-py"], names
    try:
        c.delete("team-b-etl")
        raise AssertionError("deleted job team-b-etl with a team-a token")
    except chronos.ChronosAPIError:
        pass  # chronos-python reports any refusal this way; the test checks the job stayed


def main():
    host, token = sys.argv[1], sys.argv[2]
    marathon_steps(host, token)
    chronos_steps(host, token)
    print("OK")


if __name__ == "__main__":
    main()
