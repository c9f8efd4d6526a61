"""What the marathon-python scripts share: the client's alias for Python >= 3.10, a client, an
event listener that runs every event through the client's parser, and step/wait helpers.

Import it before anything from `marathon`.
"""
import collections
import collections.abc
import threading
import time

# marathon 0.13.0's minimal JSON encoder (used by update_app and the group calls) still names
# collections.Iterable, which Python 3.10 removed; restore the alias for the client.
collections.Iterable = collections.abc.Iterable

from marathon import MarathonClient  # noqa: E402 - needs the alias above


def client(url):
    return MarathonClient(url)


def listen(url):
    """Starts following /v2/events; returns the list the events (or the parser's error) go to."""
    events = []

    def run():
        # marathon-python raises on an unknown eventType or a shape it cannot parse.
        try:
            for e in MarathonClient(url).event_stream():
                events.append(e)
        except Exception as e:  # noqa: BLE001 - reported through parse_errors()
            events.append(e)

    threading.Thread(target=run, daemon=True).start()
    time.sleep(0.5)
    return events


def parse_errors(events):
    return [e for e in events if isinstance(e, Exception)]


def step(name):
    print(f"== {name}", flush=True)


def wait(what, cond, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what}: timed out")
