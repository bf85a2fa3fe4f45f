"""Several Ascend servers in emulation: the README's one launch per server with a rank table naming both hosts.

Without root: this host's entry of a rank table (address, devices) and the one-line refusals through `invoke train`,
and the servers' meeting at the first server's Gloo rendezvous (on 127.0.0.1/127.0.0.2). As root with Horovod
(.ci/run): two hosts on this machine (tests/hosts.py), one launch in each, losses equal to one host's 2 ranks.
"""
import copy
import importlib.util
import json
import os
import socket
import subprocess
import threading

import pytest

from containers import cluster, launch
from tests import hosts as hosts_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_HOROVOD = "Horovod is not installed: .ci/run builds and installs it"
needs_horovod = pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason=NO_HOROVOD)
needs_hosts = pytest.mark.skipif(bool(hosts_lib.unavailable()), reason=hosts_lib.unavailable() or "")


def _table(servers):
    """A rank table of [(server_id, [(device_id, rank_id)])], written out by hand in HCCL's format."""
    return {"version": "1.0", "server_count": str(len(servers)), "status": "completed", "server_list": [
        {"server_id": server_id, "device": [{"device_id": str(d), "device_ip": "192.168.100.%d" % (100 + r),
                                             "rank_id": str(r)} for d, r in devices]}
        for server_id, devices in servers]}


TWO_BY_TWO = _table([("10.0.0.1", [(0, 0), (1, 1)]), ("10.0.0.2", [(0, 2), (1, 3)])])
THIS_HOST = {"127.0.0.1": "lo", "10.0.0.2": "eth0"}


def test_a_server_finds_its_entry_by_its_own_address():
    table = copy.deepcopy(TWO_BY_TWO)
    assert cluster.this_server(table, "", [], THIS_HOST) == ("10.0.0.2", [(0, 2), (1, 3)], 4)
    assert cluster.this_server(table, "10.0.0.2", [1, 0], THIS_HOST) == ("10.0.0.2", [(0, 2), (1, 3)], 4)


@pytest.mark.parametrize("server_id, devices, addresses, message", [
    ("10.0.0.9", [], THIS_HOST, "server 10.0.0.9 is not in the rank table"),
    ("10.0.0.1", [], THIS_HOST, "server 10.0.0.1 of the rank table is not an address of this host "
                                "\\(10.0.0.2, 127.0.0.1\\): run this command on 10.0.0.1"),
    ("", [], {"127.0.0.1": "lo"}, "no server_id of the rank table \\(10.0.0.1, 10.0.0.2\\) is an address of this "
                                  "host \\(127.0.0.1\\)"),
    ("", [], {"10.0.0.1": "eth0", "10.0.0.2": "eth1"}, "servers 10.0.0.1, 10.0.0.2 of the rank table are all "
                                                       "addresses of this host: pass --server-id"),
    ("", [0], THIS_HOST, "--devices 0 \\(1\\) differs from the rank table's 2 device\\(s\\) of server 10.0.0.2 "
                         "\\(0,1\\)"),
    ("", [0, 2], THIS_HOST, "--devices 0,2 \\(2\\) differs"),
])
def test_an_entry_that_is_not_this_hosts_is_refused(server_id, devices, addresses, message):
    with pytest.raises(launch.LaunchError, match=message):
        cluster.this_server(copy.deepcopy(TWO_BY_TWO), server_id, devices, addresses)


# Documentation addresses (RFC 5737) that are no address of this host (a CI machine may hold one).
ELSEWHERE, NOWHERE, UNLISTED = [address for address in ("203.0.113.2", "198.51.100.2", "192.0.2.2", "192.0.2.3")
                                if address not in cluster.local_addresses()][:3]


@pytest.mark.workstation  # invoke
@pytest.mark.parametrize("servers, flags, message", [
    ([("127.0.0.1", [(0, 0)]), (ELSEWHERE, [(0, 1)])], dict(server_id=UNLISTED),
     "server %s is not in the rank table" % UNLISTED),
    ([(NOWHERE, [(0, 0)]), (ELSEWHERE, [(0, 1)])], {}, "no server_id of the rank table"),
    ([("127.0.0.1", [(0, 0)]), (ELSEWHERE, [(0, 1)])], dict(server_id=ELSEWHERE),
     "server %s of the rank table is not an address of this host" % ELSEWHERE),
    ([("127.0.0.1", [(0, 0), (1, 1)]), (ELSEWHERE, [(0, 2)])], dict(devices="0"),
     "--devices 0 \\(1\\) differs from the rank table's 2 device\\(s\\) of server 127.0.0.1"),
    ([("127.0.0.1", [(0, 0)]), (ELSEWHERE, [(0, 2)])], {}, "rank_id values must be 0..1, each once; got \\[0, 2\\]"),
    ([("127.0.0.1", [(0, 0)]), (ELSEWHERE, [(0, 1)])], dict(local=False), "emulating several servers needs --local"),
])
def test_invoke_train_refuses_a_bad_entry_in_one_line_before_anything_starts(tmp_path, servers, flags, message):
    from invoke import Context, Exit

    import tasks

    table = tmp_path / "cluster.json"
    table.write_text(json.dumps(_table(servers)))
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(Exit, match=message) as caught:
        tasks.train(Context(), **dict(dict(target="npu", local=True, emulate=True, rank_table=str(table),
                                           data=str(data), run_dir=str(tmp_path / "run")), **flags))
    assert caught.value.code == 2 and "\n" not in caught.value.message
    assert sorted(os.listdir(str(tmp_path))) == ["cluster.json", "data"], "nothing written"


def _free_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


# Ranks interleaved over the servers: Horovod's rank must still be each process's RANK_ID.
INTERLEAVED = _table([("127.0.0.1", [(0, 0), (1, 2)]), ("127.0.0.2", [(0, 1), (1, 3)])])


def _rank_envs(ranks):
    return [{"RANK_ID": str(rank), "RANK_SIZE": "4"} for rank in ranks]


@needs_horovod
def test_servers_meet_at_the_first_servers_rendezvous_with_horovod_ranks_as_in_the_table():
    port, served = _free_port(), {}

    def first():
        with cluster.server_rendezvous(_rank_envs([0, 2]), INTERLEAVED, "127.0.0.1", "lo", port=port,
                                       timeout_seconds=30) as envs:
            served["first"] = envs

    thread = threading.Thread(target=first)
    thread.start()
    with cluster.server_rendezvous(_rank_envs([1, 3]), INTERLEAVED, "127.0.0.2", "lo", port=port,
                                   timeout_seconds=30) as second:
        pass
    thread.join(30)
    fields = ("RANK_ID", "HOROVOD_RANK", "HOROVOD_SIZE", "HOROVOD_HOSTNAME", "HOROVOD_LOCAL_RANK",
              "HOROVOD_LOCAL_SIZE", "HOROVOD_CROSS_RANK", "HOROVOD_CROSS_SIZE")
    assert [tuple(env[k] for k in fields) for env in served["first"] + second] == [
        ("0", "0", "4", "127.0.0.1", "0", "2", "0", "2"), ("2", "2", "4", "127.0.0.1", "1", "2", "0", "2"),
        ("1", "1", "4", "127.0.0.2", "0", "2", "1", "2"), ("3", "3", "4", "127.0.0.2", "1", "2", "1", "2")]
    assert all((env["HOROVOD_GLOO_RENDEZVOUS_ADDR"], env["HOROVOD_GLOO_RENDEZVOUS_PORT"]) == ("127.0.0.1", str(port))
               for env in served["first"] + second)


@needs_horovod
def test_a_server_that_never_comes_is_named_in_one_line_by_the_first(capfd):
    port = _free_port()
    with pytest.raises(launch.LaunchError, match="^server 127.0.0.2 \\(ranks 1,3\\) did not join within 1 s: start "
                                                 "the same command there"):
        with cluster.server_rendezvous(_rank_envs([0, 2]), INTERLEAVED, "127.0.0.1", "lo", port=port,
                                       timeout_seconds=1):
            pytest.fail("the ranks started without the other server")
    assert "waiting up to 1 s for server 127.0.0.2 (ranks 1,3)" in capfd.readouterr().err
    socket.create_server(("127.0.0.1", port)).close()  # the rendezvous let its port go


@needs_horovod
def test_a_first_server_that_never_comes_is_named_in_one_line_by_the_others():
    port = _free_port()
    with pytest.raises(launch.LaunchError, match="^server 127.0.0.1, the first of the rank table, did not answer "
                                                 "on port %d within 1 s" % port):
        with cluster.server_rendezvous(_rank_envs([1, 3]), INTERLEAVED, "127.0.0.2", "lo", port=port,
                                       timeout_seconds=1):
            pytest.fail("the ranks started without the rendezvous")


def _npu_train(data, run, *flags):
    return hosts_lib.train_command("npu", data, run, "--emulate", "--steps", "2", "--checkpoint-every", "2", *flags)


def _losses(run):
    losses = []
    for name in ("train_log.jsonl", "train_log.rank1.jsonl"):
        with open(os.path.join(str(run), name)) as handle:
            losses += [(row["step"], row["loss"]) for row in map(json.loads, handle) if row]
    return losses


@needs_horovod
@needs_hosts
def test_npu_two_servers_train_like_one_server_with_two_ranks(two_hosts, synthetic_data, tmp_path):
    """The README's command on each server (h2 first: it waits for h1's rendezvous), no --server-id."""
    table = tmp_path / "cluster.json"
    table.write_text(json.dumps(_table([(two_hosts.addresses[0], [(0, 0)]), (two_hosts.addresses[1], [(0, 1)])])))
    run, reference = tmp_path / "run", tmp_path / "reference"
    second = two_hosts.popen(1, _npu_train(synthetic_data, run, "--rank-table", str(table)), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        first = two_hosts.run(0, _npu_train(synthetic_data, run, "--rank-table", str(table)), cwd=ROOT)
        _, second_err = second.communicate(timeout=300)
    finally:
        if second.poll() is None:
            second.kill()
    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second_err[-3000:]
    assert "waiting up to %d s for server %s (rank 1)" % (cluster.JOIN_TIMEOUT_SECONDS, two_hosts.addresses[1]) \
        in first.stderr
    for stderr in (first.stderr, second_err):
        assert "RANK_TABLE_FILE=%s" % table in stderr, "the user's table, not a copy in the shared run dir"
    assert "RANK_ID=0" in first.stderr and "RANK_ID=1" in second_err and "RANK_SIZE=2" in second_err
    subprocess.run(_npu_train(synthetic_data, reference, "--devices", "0,1"), cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = [name for name in os.listdir(str(run)) if name.startswith("events.")]
    assert sorted(os.listdir(str(run))) == sorted(
        ["checkpoints", "distribution.json", "hparams.json", "plots", "run_summary.json", "train_log.jsonl",
         "train_log.rank1.jsonl"] + events)
    assert len(events) == 1 and events[0].endswith("." + hosts_lib.HOSTNAMES[0]), "rank 0 on h1 wrote them"
    assert _losses(run) == pytest.approx(_losses(reference), rel=1e-6)
    assert [step for step, _ in _losses(run)] == [2, 2]
    assert _losses(run)[0][1] != _losses(run)[1][1], "each rank reads its own shard"


@needs_horovod
@needs_hosts
@pytest.mark.parametrize("host, flags, message", [
    (1, ["--server-id", "FIRST"], "server FIRST of the rank table is not an address of this host"),
    (0, ["--devices", "0,1"], "--devices 0,1 (2) differs from the rank table's 1 device(s) of server FIRST (0)"),
])
def test_npu_launch_on_the_wrong_server_is_one_line(two_hosts, synthetic_data, tmp_path, host, flags, message):
    first = two_hosts.addresses[0]
    table = tmp_path / "cluster.json"
    table.write_text(json.dumps(_table([(first, [(0, 0)]), (two_hosts.addresses[1], [(0, 1)])])))
    argv = _npu_train(synthetic_data, tmp_path / "run", "--rank-table", str(table),
                      *[flag.replace("FIRST", first) for flag in flags])
    result = two_hosts.run(host, argv, cwd=ROOT)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message.replace("FIRST", first) in lines[0], result.stderr[-3000:]
    assert not (tmp_path / "run").exists()
