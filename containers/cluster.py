"""Several hosts: what the launcher checks before a multi-host start, and the one line naming a lost host.

GPU servers: one `invoke train --hosts ...` on the first host; horovodrun starts the other hosts' ranks over ssh.
Before it starts, every host is checked over ssh (reachable without a prompt, the repository and Python at this
host's paths, the interface that reaches them, a host name that does not resolve to loopback); when the job fails,
the host that went away (unreachable, or whose rank exited first) is named with its ranks.
Ascend servers: the same `invoke train --rank-table ...` on each; this host's entry of the rank table is checked
against this host (its address, its devices), and in emulation the servers meet at one Gloo rendezvous.
Host-side only (the images never start several hosts), Python 3.7 syntax like the rest of containers/.
"""
import contextlib
import fcntl
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

from containers import launch
from containers.launch import LaunchError

SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
SIOCGIFADDR = 0x8915
# horovodrun's line for a rank that ended with a non-zero status (horovod/runner/gloo_run.py, 0.28.1).
RANK_EXIT = re.compile(r"^Process (\d+) exit with status code (-?\d+)\.")
# Emulated several-server runs: the first server of the rank table serves the job's Gloo rendezvous on this port,
# and the servers wait this long for each other's launch (HCCL's default HCCL_CONNECT_TIMEOUT, 120 s).
RENDEZVOUS_PORT = 29450
JOIN_TIMEOUT_SECONDS = 120
JOIN_SCOPE = "lip2wav-join"  # the rendezvous scope where each server's launch announces itself
# Horovod 0.28.1's Gloo binds its process-set contexts to the address of the host name, not to
# HOROVOD_GLOO_IFACE: a host name mapped to loopback (Debian's 127.0.1.1 default) breaks every multi-host run.
HOSTNAME_FIX = ("map the host name to the host's address on %s in /etc/hosts or DNS (Horovod's Gloo listens on "
                "the address of the host name)")


def interface_address(name):
    """IPv4 address of interface ``name``, or None."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packed = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
    except OSError:
        return None
    finally:
        probe.close()
    return socket.inet_ntoa(packed[20:24])


def local_addresses():
    """{address: interface} of this host's IPv4 interfaces."""
    found = {}
    for _, name in socket.if_nameindex():
        address = interface_address(name)
        if address:
            found[address] = name
    return found


def resolve(host):
    try:
        return socket.gethostbyname(host)
    except OSError as error:
        raise LaunchError("host %s does not resolve (%s): list it in /etc/hosts or DNS, or pass its address"
                          % (host, error))


def is_local(host):
    address = resolve(host)
    return address.startswith("127.") or address in local_addresses()


def route_to(host):
    """The interface this host reaches ``host`` through (the kernel's route, found by connecting a UDP socket)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((resolve(host), 9))
        address = probe.getsockname()[0]
    except OSError as error:
        raise LaunchError("no route from this host to %s (%s): connect the hosts to one network" % (host, error))
    finally:
        probe.close()
    interface = local_addresses().get(address)
    if interface is None:
        raise LaunchError("no interface of this host holds %s, the address its route to %s leaves from"
                          % (address, host))
    return interface


def check_hostname(where, address, interface):
    if address.startswith("127."):
        raise LaunchError("%s: its host name resolves to %s (loopback): %s" % (where, address, HOSTNAME_FIX % interface))


def rank_hosts(hosts):
    """[host of rank 0, host of rank 1, ...]: horovodrun fills the hosts in the order given."""
    return [host for host, slots in hosts for _ in range(slots)]


def describe_ranks(hosts, host):
    ranks = [str(rank) for rank, name in enumerate(rank_hosts(hosts)) if name == host]
    return "rank%s %s" % ("s" if len(ranks) > 1 else "", ",".join(ranks))


def check_gpu_hosts(hosts, root, python, interface):
    """Every remote host over ssh: reachable without a prompt, ``root`` and ``python`` there, ``interface`` there,
    its host name not loopback; this host's name too. Raises LaunchError with one line naming the host and fix."""
    check_hostname("this host", resolve(socket.gethostname()), interface)
    script = ("cd %s || exit 3; test -x %s || exit 4; test -e /sys/class/net/%s || exit 5; "
              "%s -c 'import socket; print(socket.gethostbyname(socket.gethostname()))'"
              % (shlex.quote(root), shlex.quote(python), shlex.quote(interface), shlex.quote(python)))
    for host, _ in hosts:
        if is_local(host):
            continue
        result = subprocess.run(["ssh"] + SSH_OPTIONS + [host, script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, universal_newlines=True)
        said = (result.stderr.strip().splitlines() or ["no message"])[-1]
        fixes = {
            3: "host %s has no %s: put the repository at the same path on every host" % (host, root),
            4: "host %s has no %s: install the same virtualenv at the same path on every host" % (host, python),
            5: "host %s has no interface %s (this host reaches it through %s): the hosts must reach each other "
               "through interfaces of one name" % (host, interface, interface),
        }
        if result.returncode == 255:
            raise LaunchError("host %s is not reachable by ssh (%s): `ssh %s true` must work from this host without "
                              "a prompt (ssh-copy-id %s, and accept its host key once)" % (host, said, host, host))
        if result.returncode in fixes:
            raise LaunchError(fixes[result.returncode])
        if result.returncode:
            raise LaunchError("host %s: the check over ssh failed with status %d (%s)" % (host, result.returncode,
                                                                                        said))
        check_hostname("host %s" % host, result.stdout.strip(), interface)


def preflight(hosts, root, python):
    """Before a multi-host GPU start (nothing written yet): the interface this host reaches the others through,
    every remote host checked (check_gpu_hosts); None when every host is this one. LaunchError: one line."""
    remote = [host for host, _ in hosts if not is_local(host)]
    if not remote:
        return None
    interface = route_to(remote[0])
    check_gpu_hosts(hosts, root, python, interface)
    return interface


def reachable(host, timeout_seconds=5):
    command = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=%d" % timeout_seconds, host, "true"]
    return subprocess.call(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) == 0


def lost_host_line(hosts, first_exit):
    """One line naming the host the job lost: one no longer reachable by ssh, else the host of the first rank that
    exited (``first_exit`` = (rank, status) from horovodrun's output, or None)."""
    for host, _ in hosts:
        if not is_local(host) and not reachable(host):
            return "lost host %s (%s): no longer reachable by ssh" % (host, describe_ranks(hosts, host))
    if first_exit is None:
        return None
    rank, status = first_exit
    host = rank_hosts(hosts)[rank]
    return "lost host %s (%s): rank %d exited first, with status %d" % (host, describe_ranks(hosts, host), rank,
                                                                         status)


def run_horovodrun(command, hosts, cwd=None, env=None):
    """Run horovodrun, passing its output through; when it fails, print the lost-host line. Returns its status.

    A Ctrl-C reaches horovodrun (same process group), which stops the ranks; that is no lost host.
    """
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, universal_newlines=True, bufsize=1)
    first_exit = None
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            match = RANK_EXIT.match(line)
            if match and first_exit is None:
                first_exit = (int(match.group(1)), int(match.group(2)))
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    if code and not interrupted:
        line = lost_host_line(hosts, first_exit)
        if line:
            print("%s; the job stopped: start the same command again to resume from the last checkpoint" % line,
                  file=sys.stderr, flush=True)
    return code


def this_server(table, server_id, devices, addresses=None):
    """This host's entry of a validated several-server rank table: (server_id, [(device_id, rank_id)], rank count).

    HCCL's server_id is the server's IP: ``server_id`` "" picks the entry whose server_id is an address of this
    host (``addresses``, default its interfaces'), a given one must be such an address too. ``devices`` [] takes the
    entry's devices; given ones must be the entry's. Raises LaunchError with one line otherwise.
    """
    addresses = local_addresses() if addresses is None else addresses
    listed = [server["server_id"] for server in table["server_list"]]
    here = ", ".join(sorted(addresses))
    if not server_id:
        mine = [name for name in listed if name in addresses]
        if not mine:
            raise LaunchError("no server_id of the rank table (%s) is an address of this host (%s): run the command "
                              "on the servers it lists, each listed under its own IP" % (", ".join(listed), here))
        if len(mine) > 1:
            raise LaunchError("servers %s of the rank table are all addresses of this host: pass --server-id to pick "
                              "this launch's" % ", ".join(mine))
        server_id = mine[0]
    pairs, size = launch.server_ranks(table, server_id)
    if server_id not in addresses:
        raise LaunchError("server %s of the rank table is not an address of this host (%s): run this command on "
                          "%s, or pass --server-id with this host's own address" % (server_id, here, server_id))
    listed_devices = sorted(device for device, _ in pairs)
    if devices and sorted(devices) != listed_devices:
        raise LaunchError("--devices %s (%d) differs from the rank table's %d device(s) of server %s (%s): drop "
                          "--devices, or pass the table's" % (",".join(str(d) for d in devices), len(devices),
                                                             len(pairs), server_id,
                                                             ",".join(str(d) for d in listed_devices)))
    return server_id, pairs, size


@contextlib.contextmanager
def server_rendezvous(envs, table, server_id, interface, port=RENDEZVOUS_PORT, timeout_seconds=JOIN_TIMEOUT_SECONDS):
    """The Gloo rendezvous of an emulated several-server run; yields this server's ``envs`` extended for it.

    Horovod's Gloo needs one rendezvous for the whole job: the first server of the rank table serves it on ``port``
    and starts its ranks once every other server's launch has announced itself there; the other launches announce
    themselves and start theirs. Either side gives up after ``timeout_seconds`` with one line naming the server
    that is missing, before any rank starts. Each rank's Horovod host name is its server_id, an address, so unlike
    horovodrun's -H names the servers' host names need not resolve to them.
    """
    servers = [(server["server_id"], [int(d["rank_id"]) for d in server["device"]]) for server in table["server_list"]]
    slots = launch.gloo_slots(servers)
    first = servers[0][0]
    deadline = time.monotonic() + timeout_seconds
    if server_id != first:
        _announce(first, port, server_id, deadline, timeout_seconds)
        yield launch.gloo_envs(envs, slots, first, port, interface)
        return
    with launch.rendezvous_server(first, port, slots) as rendezvous:
        _wait_for_servers(rendezvous, servers[1:], deadline, timeout_seconds)
        yield launch.gloo_envs(envs, slots, first, port, interface)


def _announce(first, port, server_id, deadline, timeout_seconds):
    request = urllib.request.Request("http://%s:%d/%s/%s" % (first, port, JOIN_SCOPE, server_id), data=b"1",
                                     method="PUT")
    while True:
        try:
            urllib.request.urlopen(request, timeout=5).close()
            return
        except OSError as error:
            if time.monotonic() > deadline:
                raise LaunchError("server %s, the first of the rank table, did not answer on port %d within %d s "
                                  "(%s): start the same command there, it serves the job's rendezvous"
                                  % (first, port, timeout_seconds, getattr(error, "reason", error)))
        time.sleep(0.5)


def _wait_for_servers(rendezvous, others, deadline, timeout_seconds):
    def describe(servers):
        ranks = [str(rank) for _, listed in servers for rank in listed]
        return "%s (rank%s %s)" % (", ".join(name for name, _ in servers), "s" if len(ranks) > 1 else "",
                                   ",".join(ranks))

    missing = others
    print("waiting up to %d s for server %s to start the same command" % (timeout_seconds, describe(missing)),
          file=sys.stderr, flush=True)
    while missing:
        if time.monotonic() > deadline:
            raise LaunchError("server %s did not join within %d s: start the same command there (on every server "
                              "of the rank table)" % (describe(missing), timeout_seconds))
        time.sleep(0.2)
        with rendezvous.cache_lock:
            joined = set(rendezvous.cache.get(JOIN_SCOPE, {}))
        missing = [(name, ranks) for name, ranks in others if name not in joined]
