"""Every server runs with the limits docs/deployment.md recommends, and hostile clients
cannot grow its memory with a permessage-deflate bomb, a fragmented message that never
ends, or pings it never reads the pongs of (harper_resources.servers). Measured on real
server processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests import attacks
from tests.live import DAPHNE_LIMITS, UVICORN_LIMITS, UVICORN_SHUTDOWN, DemoServer

#: Growth (MiB) a server may show after an attack: uvicorn run without the limits grows by
#: 16 MiB and more.
BOUND_MIB = 8


@pytest.fixture(scope="module", params=["uvicorn", "daphne"])
def server(request, tmp_path_factory):
    server = DemoServer(tmp_path_factory.mktemp(request.param), server=request.param).start()
    time.sleep(0.5)  # let the server settle before its memory is read
    yield server
    server.stop()


def memory(server: DemoServer) -> dict[str, int]:
    assert server.process is not None
    return attacks.memory_kib(server.process.pid)


def test_a_deflate_bomb_is_refused_before_it_inflates(server):
    before = memory(server)
    sock, head = attacks.open_socket(server.port, "/dog/341", "permessage-deflate; client_max_window_bits")
    with sock:
        assert "permessage-deflate" not in head.lower(), "the server accepted compression"
        bomb = attacks.frame(attacks.BINARY, attacks.deflate_bomb(), rsv1=True)
        attacks.send_until_refused(sock, bomb, deadline=time.monotonic() + 20)
        assert attacks.closed_by_server(sock)
    assert attacks.growth_mib(before, memory(server)) < BOUND_MIB


def test_a_fragmented_message_that_never_ends_is_refused_with_memory_bounded(server):
    before = memory(server)
    sock, _ = attacks.open_socket(server.port, "/dog/341")
    chunk = bytes(64 << 10)
    fragments = attacks.frame(attacks.BINARY, chunk, fin=False) + attacks.frame(
        attacks.CONTINUATION, chunk, fin=False
    ) * (64 << 20 >> 16)
    with sock:
        refused = attacks.send_until_refused(sock, fragments, deadline=time.monotonic() + 30)
        assert refused or attacks.closed_by_server(sock)
    assert attacks.growth_mib(before, memory(server)) < BOUND_MIB


def test_a_ping_flood_from_a_client_that_never_reads_is_bounded(server):
    # Without harper_resources.servers: uvicorn +93 MiB, daphne +112 MiB for ~100 MB of
    # pings in 15 s. With it the server stops reading the client once 64 KiB of pongs wait.
    before = memory(server)
    sock, _ = attacks.open_socket(server.port, "/dog/341")
    with sock:
        taken = attacks.ping_flood(sock, seconds=10)
        grown = attacks.growth_mib(before, memory(server))
    assert grown < BOUND_MIB, f"the server grew by {grown:.1f} MiB after taking {taken / 1e6:.1f} MB of pings"
    assert taken < 32 << 20, f"the server kept reading pings: {taken / 1e6:.1f} MB taken"


def test_the_deployment_page_runs_each_server_with_the_limits_the_tests_use():
    page = (Path(__file__).resolve().parent.parent / "docs" / "deployment.md").read_text()
    page = " ".join(page.replace("\\\n", " ").split())  # shell line continuations read as one line
    assert " ".join(UVICORN_LIMITS) in page
    assert " ".join(UVICORN_SHUTDOWN) in page
    assert " ".join(DAPHNE_LIMITS) in page
