"""Launch plan of data-parallel runs: rank tables, per-process Ascend ids, several servers, a dead rank's bound."""
import copy
import sys
import time

import pytest

from containers import launch


def _ips(devices):
    return dict((d, "192.168.100.%d" % (100 + d)) for d in devices)


@pytest.mark.parametrize("devices", [[0], [0, 1], list(range(8))])
def test_rank_tables_for_1_2_and_8_devices_follow_the_documented_format(devices):
    table = launch.validate_rank_table(launch.rank_table(devices, "10.0.0.1", _ips(devices)))
    assert (table["version"], table["status"], table["server_count"]) == ("1.0", "completed", "1")
    listed = table["server_list"][0]["device"]
    assert [d["rank_id"] for d in listed] == [str(r) for r in range(len(devices))]
    assert [d["device_id"] for d in listed] == [str(d) for d in devices]


def _two_servers():
    table = launch.rank_table(list(range(8)), "10.0.0.1", _ips(range(8)))
    second = copy.deepcopy(table["server_list"][0])
    second["server_id"] = "10.0.0.2"
    for device in second["device"]:
        device["rank_id"] = str(int(device["rank_id"]) + 8)
    table["server_list"].append(second)
    table["server_count"] = "2"
    return table


@pytest.mark.parametrize("spoil, message", [
    (lambda t: t.update(version=1.0), "version must be the string '1.0'"),
    (lambda t: t.update(server_count="1"), "server_count must be the string '2'"),
    (lambda t: t["server_list"][1]["device"][0].update(rank_id=3), "non-empty string rank_id"),
    (lambda t: t["server_list"][1]["device"][0].update(rank_id="3"), "rank_id values must be 0..15, each once"),
    (lambda t: t["server_list"][0].update(device=[]), "lists no device"),
    (lambda t: t.update(status="pending"), "status must be the string 'completed'"),
])
def test_rank_table_validation_names_the_problem(spoil, message):
    table = _two_servers()
    launch.validate_rank_table(copy.deepcopy(table))
    spoil(table)
    with pytest.raises(launch.LaunchError, match=message):
        launch.validate_rank_table(table)


def test_a_user_rank_table_gives_each_server_its_ranks(tmp_path):
    path = launch.write_rank_table(str(tmp_path), _two_servers())
    table = launch.read_rank_table(path)
    pairs, size = launch.server_ranks(table, "10.0.0.2")
    assert size == 16 and pairs == [(d, d + 8) for d in range(8)]
    envs = launch.process_envs("npu", [d for d, _ in pairs], path, ranks=([r for _, r in pairs], size))
    assert [e["RANK_ID"] for e in envs] == [str(r) for r in range(8, 16)]
    assert all(e["RANK_SIZE"] == "16" and e["RANK_TABLE_FILE"] == path for e in envs)
    with pytest.raises(launch.LaunchError, match="server 10.0.0.9 is not in the rank table"):
        launch.server_ranks(table, "10.0.0.9")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(launch.LaunchError, match="cannot read rank table"):
        launch.read_rank_table(str(tmp_path / "broken.json"))


def test_ascend_device_id_is_logical_inside_a_container_and_physical_on_the_host():
    inside = launch.process_envs("npu", [6, 4], "/workspace/run/rank_table.json", container=True)
    assert [(e["DEVICE_ID"], e["ASCEND_DEVICE_ID"], e["RANK_ID"]) for e in inside] == [("6", "1", "0"),
                                                                                      ("4", "0", "1")]
    host = launch.process_envs("npu", [6, 4], "/run/rank_table.json")
    assert [(e["DEVICE_ID"], e["ASCEND_DEVICE_ID"]) for e in host] == [("6", "6"), ("4", "4")]


def test_gpu_hosts_become_one_horovodrun_line():
    hosts = launch.parse_hosts("h1:8,h2:8")
    assert hosts == [("h1", 8), ("h2", 8)]
    assert launch.train_command("gpu", [0], ["--steps", "5"], hosts=hosts)[:5] == [
        "horovodrun", "-np", "16", "-H", "h1:8,h2:8"]
    for bad in ("h1", "h1:0", ":8", ""):
        with pytest.raises(launch.LaunchError, match="HOST:PROCESSES|no hosts"):
            launch.parse_hosts(bad)


def test_a_dead_rank_stops_a_peer_that_ignores_sigterm_within_the_grace(capfd):
    """Rank 1 dies; rank 0 ignores SIGTERM (as if blocked in a collective) and is killed after the grace."""
    script = ("import os, signal, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "sys.exit(5) if os.environ['RANK_ID'] == '1' else time.sleep(60)\n")
    envs = launch.process_envs("npu", [0, 1], "/tmp/rank_table.json")
    began = time.monotonic()
    assert launch.run_processes([sys.executable, "-c", script], envs, grace_seconds=2) == 5
    assert time.monotonic() - began < 30
    lines = [line for line in capfd.readouterr().err.splitlines() if "exited with status" in line]
    assert len(lines) == 1 and lines[0].startswith("rank 1 (pid ") and "status 5: stopping the other ranks" in lines[0]


def test_a_forwarded_ctrl_c_lets_the_chief_finish_saving(tmp_path, capfd):
    """Ctrl-C reaches every rank; rank 1 stops at once (non-zero), rank 0 takes a while to save: not a failure."""
    import os
    import signal
    import threading

    script = ("import os, signal, sys, time\n"
              "rank, out = os.environ['RANK_ID'], sys.argv[1]\n"
              "def stop(signum, frame):\n"
              "    if rank == '1':\n"
              "        os._exit(2)\n"
              "    time.sleep(2)\n"
              "    open(os.path.join(out, 'saved'), 'w').close()\n"
              "    os._exit(0)\n"
              "def terminated(signum, frame):\n"
              "    open(os.path.join(out, 'terminated'), 'w').close()\n"
              "    os._exit(15)\n"
              "signal.signal(signal.SIGINT, stop)\n"
              "signal.signal(signal.SIGTERM, terminated)\n"
              "open(os.path.join(out, 'ready' + rank), 'w').close()\n"
              "time.sleep(60)\n")

    def interrupt_when_ready():
        while not all((tmp_path / ("ready%d" % r)).exists() for r in (0, 1)):
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_ready, daemon=True).start()
    envs = launch.process_envs("npu", [0, 1], "/tmp/rank_table.json")
    assert launch.run_processes([sys.executable, "-c", script, str(tmp_path)], envs, grace_seconds=1) == 2
    assert (tmp_path / "saved").exists() and not (tmp_path / "terminated").exists()
    assert "exited with status" not in capfd.readouterr().err


@pytest.mark.workstation  # invoke
@pytest.mark.parametrize("flags, message", [
    (dict(target="gpu", hosts="h1:8,h2:8"), "--hosts is for GPU servers with --local"),
    (dict(target="npu", hosts="h1:8", local=True), "--hosts is for GPU servers with --local"),
    (dict(target="gpu", rank_table="cluster.json"), "--rank-table is for Ascend servers"),
    (dict(target="gpu", local=True, hosts="h1:eight"), "is not HOST:PROCESSES"),
])
def test_invoke_train_refuses_multi_host_flags_on_the_wrong_stack(flags, message):
    from invoke import Context, Exit

    import tasks

    with pytest.raises(Exit, match=message):
        tasks.train(Context(), **flags)
