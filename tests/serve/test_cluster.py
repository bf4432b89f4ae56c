"""Scaled out: a 2-node local Ray cluster (Ray's cluster utilities: two raylets on this machine), one replica
per node, both answering through the head node's HTTP proxy."""

import json
import urllib.request

import pytest

ray = pytest.importorskip("ray", reason="Ray Serve is not installed (pip install 'tcpade-trt[serve]')")
serve = pytest.importorskip("ray.serve")

pytestmark = pytest.mark.filterwarnings("ignore")


def get(url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return answer.status, answer.read()


def test_two_nodes_each_serve_a_replica(fp32_folders, monkeypatch):
    import os

    from ray.cluster_utils import Cluster

    from tcpade_trt.serve.app import build_app
    from tests.serve.test_http import free_port

    for name in ("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S"):
        monkeypatch.setenv(name, os.environ.get(name, "120"))
    # the proxy prefers replicas on its own node while they have capacity; the test wants to see both answer
    monkeypatch.setenv("RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING", "0")
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        port = free_port()
        # HeadOnly: the second node's proxy would want the same port on this one machine
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"folder": str(fp32_folders["tiny-dit"]), "device": "cpu", "replicas": 2,
                             "max_replicas_per_node": 1}), name="two-nodes")
        from ray.util.state import list_actors

        replicas = [a for a in list_actors(filters=[("state", "=", "ALIVE")]) if "two-nodes" in (a.name or "")]
        assert len({a.node_id for a in replicas}) == 2  # one replica on each node
        url = f"http://127.0.0.1:{port}"
        nodes = {json.loads(get(f"{url}/healthz")[1])["node"] for _ in range(40)}
        assert nodes == {a.node_id for a in replicas}  # the head node's proxy reaches both
        status, png = get(f"{url}/v1/generate", {"class": 1, "steps": 4, "guidance_scale": 4})
        assert status == 200 and png.startswith(b"\x89PNG")
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
