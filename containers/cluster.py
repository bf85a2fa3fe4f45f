"""Several hosts: what the launcher checks before a multi-host start, and the one line naming a lost host.

GPU servers: one `invoke train --hosts ...` on the first host; horovodrun starts the other hosts' ranks over ssh.
Before it starts, every host is checked over ssh (reachable without a prompt, the repository and Python at this
host's paths, the interface that reaches them, a host name that does not resolve to loopback); when the job fails,
the host that went away (unreachable, or whose rank exited first) is named with its ranks.
Host-side only (the images never start several hosts), Python 3.7 syntax like the rest of containers/.
"""
import fcntl
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys

from containers.launch import LaunchError

SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
SIOCGIFADDR = 0x8915
# horovodrun's line for a rank that ended with a non-zero status (horovod/runner/gloo_run.py, 0.28.1).
RANK_EXIT = re.compile(r"^Process (\d+) exit with status code (-?\d+)\.")
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
