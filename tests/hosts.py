"""Test-only: two hosts on this machine, for the several-hosts tests (tests/test_hosts.py).

Each host is a Linux network namespace; a veth pair joins them with private addresses the harness picks (so traffic
only flows between the two), and each runs an sshd started here with a host key made for the run. The client key,
known_hosts and an ssh config live in the harness's own directory, reached through an `ssh` wrapper that the
harness puts first on PATH: root's ~/.ssh and the machine's sshd are never touched. Both namespaces share the
file system, so the repository, the virtualenv and the run directory have the same path on both hosts, as the
README asks users to arrange. Host 2's sshd also has one directory (``Hosts.only_on_h1``) hidden under an empty
tmpfs, in its own mount namespace, to play a host that lacks a path.

Each host also has its own host name (``HOSTNAMES``, its own UTS namespace) and /etc/hosts (bind-mounted in its
private mount namespace) mapping both names to the veth addresses: Horovod 0.28.1's Gloo binds its process-set
contexts to the address the host name resolves to, whatever HOROVOD_GLOO_IFACE says, as on real servers.

Needs root and iproute2 and OpenSSH (.ci/run installs openssh-server); ``unavailable()`` says what is missing.
Everything made here (namespaces, processes, mounts, files) goes in ``close()``, which the fixture's finalizer
and an atexit hook both call, so a failing test or an interrupted session leaves nothing behind.
"""
import atexit
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

INVOKE = os.path.join(os.path.dirname(sys.executable), "invoke")
SSHD = "/usr/sbin/sshd"
IFACE = "l2w0"  # the same name on both hosts, like eth0 on a pair of servers
SSH_PORT = 22
HOSTNAMES = ("h1", "h2")
# Run "$@" as host $1: its /etc/hosts ($0) and host name, in the mount and UTS namespaces of this command only.
AS_HOST = 'mount --bind "$0" /etc/hosts && hostname "$1" && shift && exec "$@"'


def unavailable():
    """Why two hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, sshd): run as root, as .ci/run does"
    for tool in ("ip", SSHD, "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return "%s is missing: apt-get install iproute2 openssh-server openssh-client" % tool
    if subprocess.run(["ip", "netns", "list"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
        return "`ip netns` does not work here (no network namespaces)"
    return None


def _run(*argv, **kwargs):
    return subprocess.run(list(argv), check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, **kwargs)


def _free_subnet():
    """A 10.x.y.0/30 no interface of this machine uses."""
    used = _run("ip", "-o", "-4", "addr").stdout
    for _ in range(100):
        prefix = "10.%d.%d." % (random.randint(128, 254), random.randint(1, 254))
        if prefix not in used:
            return prefix
    raise RuntimeError("no free 10.x.y.0/30 subnet found")


class Hosts(object):
    """Two namespaces h1, h2 with sshd; ``addresses`` = [ip of h1, ip of h2]."""

    def __init__(self):
        tag = "%d%03d" % (os.getpid() % 100000, random.randint(0, 999))
        self.names = ["l2w%s-h1" % tag, "l2w%s-h2" % tag]
        prefix = _free_subnet()
        self.addresses = [prefix + "1", prefix + "2"]
        self.dir = tempfile.mkdtemp(prefix="lip2wav-hosts-")
        self.only_on_h1 = os.path.join(self.dir, "only-on-h1")
        os.makedirs(self.only_on_h1)
        self.bin = os.path.join(self.dir, "bin")
        self._sshd = []
        self._sshd_argv = []
        self._mounts = []
        self._made = []
        self._closed = False
        atexit.register(self.close)
        try:
            self._network(tag)
            self._ssh()
        except BaseException:
            self.close()
            raise

    def _network(self, tag):
        for name in self.names:
            _run("ip", "netns", "add", name)
            self._made.append(name)
        ends = ["l2w%sa" % tag[-8:], "l2w%sb" % tag[-8:]]
        _run("ip", "link", "add", ends[0], "type", "veth", "peer", "name", ends[1])
        for name, end, address in zip(self.names, ends, self.addresses):
            _run("ip", "link", "set", end, "netns", name)
            self.ip(name, "link", "set", end, "name", IFACE)
            self.ip(name, "addr", "add", address + "/30", "dev", IFACE)
            self.ip(name, "link", "set", IFACE, "up")
            self.ip(name, "link", "set", "lo", "up")

        with open(os.path.join(self.dir, "hosts"), "w") as handle:
            handle.write("127.0.0.1 localhost\n" + "".join("%s %s\n" % pair
                                                           for pair in zip(self.addresses, HOSTNAMES)))

    def ip(self, namespace, *argv):
        return _run("ip", "-n", namespace, *argv)

    def _ssh(self):
        keys = os.path.join(self.dir, "keys")
        os.makedirs(keys)
        client_key = os.path.join(keys, "client")
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lip2wav-hosts", "-f", client_key)
        shutil.copy(client_key + ".pub", os.path.join(keys, "authorized_keys"))
        known = []
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
        for index, (name, address) in enumerate(zip(self.names, self.addresses)):
            host_key = os.path.join(keys, "host%d" % (index + 1))
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key)
            with open(host_key + ".pub") as handle:
                known.append("%s,%s %s" % (address, HOSTNAMES[index], " ".join(handle.read().split()[:2])))
            config = os.path.join(keys, "sshd%d.conf" % (index + 1))
            with open(config, "w") as handle:
                handle.write("\n".join([
                    "ListenAddress %s:%d" % (address, SSH_PORT), "HostKey " + host_key,
                    "AuthorizedKeysFile " + os.path.join(keys, "authorized_keys"), "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
                    "PidFile none", "LogLevel ERROR", "AcceptEnv *", ""]))
            sshd = [SSHD, "-D", "-e", "-f", config]
            if index == 1:  # host 2 lacks whatever a test puts under only_on_h1
                sshd = ["sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$0" && exec "$@"', self.only_on_h1] + sshd
            self._sshd_argv.append(sshd)
            self._sshd.append(self._start_sshd(index))
        with open(os.path.join(keys, "known_hosts"), "w") as handle:
            handle.write("\n".join(known) + "\n")
        config = os.path.join(self.dir, "ssh_config")
        with open(config, "w") as handle:
            handle.write("\n".join([
                "Host *", "  User root", "  Port %d" % SSH_PORT, "  IdentityFile " + client_key,
                "  IdentitiesOnly yes", "  UserKnownHostsFile " + os.path.join(keys, "known_hosts"),
                "  BatchMode yes", "  ConnectTimeout 5", "  LogLevel ERROR", ""]))
        os.makedirs(self.bin)
        wrapper = os.path.join(self.bin, "ssh")
        with open(wrapper, "w") as handle:
            handle.write('#!/bin/sh\nexec %s -F %s "$@"\n' % (shutil.which("ssh"), config))
        os.chmod(wrapper, 0o755)
        deadline = time.monotonic() + 20
        for name, address in zip(self.names, self.addresses):
            while self.run(0, ["ssh", address, "true"]).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("sshd on %s did not answer: %s" % (address, self.sshd_log()))
                time.sleep(0.2)

    def _start_sshd(self, index):
        with open(os.path.join(self.dir, "sshd%d.log" % (index + 1)), "a") as log:
            return subprocess.Popen(self.command(index, self._sshd_argv[index]), stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    @contextlib.contextmanager
    def sshd_stopped(self, host):
        """Host ``host`` (1: h2) refuses ssh connections while the block runs; its sshd is back afterwards."""
        self._sshd[host].kill()
        self._sshd[host].wait()
        try:
            yield
        finally:
            self._sshd[host] = self._start_sshd(host)
            deadline = time.monotonic() + 20
            while self.run(0, ["ssh", self.addresses[host], "true"]).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("sshd on %s did not come back: %s" % (self.addresses[host], self.sshd_log()))
                time.sleep(0.2)

    def sshd_log(self):
        text = []
        for index in (1, 2):
            with open(os.path.join(self.dir, "sshd%d.log" % index)) as handle:
                text.append(handle.read())
        return "\n".join(text)

    def env(self, **extra):
        """The environment of a command on a host: the ssh wrapper first on PATH."""
        env = dict(os.environ, PATH=self.bin + os.pathsep + os.environ.get("PATH", ""))
        env.update(extra)
        return env

    def command(self, host, argv):
        """argv run inside host ``host`` (0 or 1): its network, its host name, its /etc/hosts."""
        return (["ip", "netns", "exec", self.names[host], "unshare", "--uts", "sh", "-c", AS_HOST,
                 os.path.join(self.dir, "hosts"), HOSTNAMES[host]] + list(argv))

    def popen(self, host, argv, env=None, **kwargs):
        return subprocess.Popen(self.command(host, argv), env=env or self.env(), start_new_session=True, **kwargs)

    def run(self, host, argv, env=None, timeout=600, **kwargs):
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return subprocess.run(self.command(host, argv), env=env or self.env(), timeout=timeout,
                              universal_newlines=True, **kwargs)

    def pids(self, host):
        """Processes living in host ``host``'s network namespace (its sshd included)."""
        out = subprocess.run(["ip", "netns", "pids", self.names[host]], stdout=subprocess.PIPE,
                             universal_newlines=True).stdout
        return [int(p) for p in out.split()]

    def link_down(self, host):
        self.ip(self.names[host], "link", "set", IFACE, "down")

    def close(self):
        """Kill every process left in the namespaces, delete them and the harness's files; idempotent."""
        if self._closed:
            return
        self._closed = True
        for name in self._made:
            pids = subprocess.run(["ip", "netns", "pids", name], stdout=subprocess.PIPE,
                                  universal_newlines=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self._sshd:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for name in self._made:
            subprocess.run(["ip", "netns", "delete", name], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self.close)


def train_command(target, data, run, *flags):
    """`invoke train --local` of ``target`` as a user types it on a host."""
    return [INVOKE, "train", "--target", target, "--local", "--data", data, "--run-dir", str(run)] + list(flags)
