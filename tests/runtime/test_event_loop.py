"""SYN_EVENT_LOOP: the loop a service's front ends run on, uvloop by default or the standard library's.

Every other test runs its services on the default (uvloop); these show that the loop named is the loop
that runs, that either one serves, batches and drains, and that any other value stops start-up.
"""

from __future__ import annotations

import concurrent.futures
import signal

import pytest

from tests.runtime.helpers import TOY, caption, in_flight, solid_png, wait_until
from tests.servers import free_port, health_status

LOOPS = {"uvloop": "uvloop.Loop", "asyncio": "asyncio.unix_events._UnixSelectorEventLoop"}


@pytest.mark.parametrize("setting", [None, "uvloop", "asyncio"])
def test_the_named_loop_serves_batches_and_drains(service_process, setting):
    metrics_port = free_port()
    env = {"SYN_TOY_DELAY_MS": "300", "SYN_MAX_BATCH_SIZE": "8", "SYN_METRICS_PORT": str(metrics_port)}
    if setting is not None:
        env["SYN_EVENT_LOOP"] = setting
    server = service_process("toy", env, module=TOY)
    expected = LOOPS[setting or "uvloop"]
    assert f"event loop {expected} (SYN_EVENT_LOOP={setting or 'uvloop'})" in server.log_path.read_text()

    values = list(range(10, 170, 10))
    with concurrent.futures.ThreadPoolExecutor(len(values)) as pool:
        futures = [pool.submit(caption, server.target, solid_png(v), 60.0) for v in values]
        wait_until(lambda: in_flight(metrics_port) >= len(values), what="every call in flight")
        # A drain on this loop lets every call in flight finish, then the process exits cleanly.
        server.signal(signal.SIGTERM)
        answers = [f.result().caption for f in futures]
    assert answers == [f"mean {v} width 16" for v in values]
    assert server.process.wait(30) == 0
    assert health_status(server.target) is None
    assert "stopped" in server.log_path.read_text()


def test_any_other_loop_stops_start_up_naming_the_setting(service_process):
    server = service_process("toy", {"SYN_EVENT_LOOP": "libev"}, module=TOY, wait=False)
    assert server.process.wait(timeout=120) != 0
    assert "SYN_EVENT_LOOP='libev' must be one of: uvloop, asyncio" in server.log_path.read_text()

