"""An HTTP endpoint marked `background=True` is its process's background work (services/common/lanes.py): while
an acknowledgement is in hand it waits, and it answers once that has ended; other endpoints answer at once."""
from __future__ import annotations

import threading

import requests
from nameko.containers import ServiceContainer

from services.common.http import http
from services.common.lanes import Lanes
from songdaojia.peers import free_port


class TwoLanes:
    name = "two_lanes"

    @http("GET", "/background", background=True)
    def background(self, request):
        return 200, "background answered"

    @http("GET", "/foreground")
    def foreground(self, request):
        return 200, "foreground answered"


def lanes_of(container: ServiceContainer) -> Lanes:
    [lanes] = [extension for extension in container.extensions if isinstance(extension, Lanes)]
    return lanes


def test_a_background_endpoint_waits_while_an_acknowledgement_is_in_hand(amqp_uri):
    address = f"127.0.0.1:{free_port()}"
    container = ServiceContainer(TwoLanes, {"AMQP_URI": amqp_uri, "WEB_SERVER_ADDRESS": address})
    container.start()
    try:
        lanes = lanes_of(container)
        lanes.urgent_began()  # an acknowledgement being written
        answers: list[str] = []
        asking = threading.Thread(target=lambda: answers.append(
            requests.get(f"http://{address}/background", timeout=30).text))
        asking.start()

        assert requests.get(f"http://{address}/foreground", timeout=5).text == "foreground answered"
        asking.join(timeout=0.5)
        assert answers == []  # it waits for the acknowledgement

        lanes.urgent_ended()
        asking.join(timeout=10)
        assert answers == ["background answered"]
        assert lanes.background == 0  # its worker was given back
    finally:
        container.stop()
