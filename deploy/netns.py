"""Hosts on one machine: each a network namespace with its own address on a Linux bridge,
made and removed with iproute2 (root only). Used by deploy/partition-test (cuts between
hosts) and bench/shaped-network (links shaped with tc netem)."""

import os
import shutil
import subprocess


class Network:
    def __init__(self, prefix, subnet, hosts):
        """`hosts` maps a host name to the last byte of its address in `subnet` (a /24)."""
        self.prefix, self.subnet, self.hosts = prefix, subnet, hosts
        self.bridge = f"{prefix}br0"
        # Docker sets the FORWARD policy to DROP and bridged packets pass through it: the
        # bridge forwards between its own ports (both iptables front ends, where present).
        self.firewalls = [f for f in ("iptables", "iptables-legacy") if shutil.which(f)]
        self.forward_rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]

    def ip(self, host):
        return f"{self.subnet}.{self.hosts[host]}"

    def ns(self, host):
        return f"{self.prefix}-{host}"

    def inside(self, host):
        """The host's end of its link, inside its namespace."""
        return f"{self.prefix}-{host}-n"

    def outside(self, host):
        """The bridge's end of the host's link."""
        return f"{self.prefix}-{host}-h"

    def exec_args(self, host):
        """The prefix that runs a command on `host`."""
        return ["ip", "netns", "exec", self.ns(host)]

    @staticmethod
    def available():
        if os.geteuid() != 0 or not shutil.which("ip"):
            return False
        probe = "tally-netns-probe"
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        return made

    def make(self):
        self._run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self._run(["ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge])
        self._run(["ip", "link", "set", self.bridge, "up"])
        for firewall in self.firewalls:
            self._run([firewall, "-I", *self.forward_rule])
        for host in self.hosts:
            self._run(["ip", "netns", "add", self.ns(host)])
            self._run(["ip", "link", "add", self.outside(host), "type", "veth", "peer", "name",
                       self.inside(host)])
            self._run(["ip", "link", "set", self.inside(host), "netns", self.ns(host)])
            self._run(["ip", "link", "set", self.outside(host), "master", self.bridge])
            self._run(["ip", "link", "set", self.outside(host), "up"])
            inside = self.exec_args(host) + ["ip"]
            self._run(inside + ["addr", "add", f"{self.ip(host)}/24", "dev", self.inside(host)])
            self._run(inside + ["link", "set", self.inside(host), "up"])
            self._run(inside + ["link", "set", "lo", "up"])

    def teardown(self):
        """Removes everything `make` made; safe to call when nothing is there."""
        for firewall in self.firewalls:
            while subprocess.run([firewall, "-D", *self.forward_rule],
                                 capture_output=True).returncode == 0:
                pass
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", self.ns(host)], capture_output=True)
            subprocess.run(["ip", "link", "del", self.outside(host)], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def cut(self, a, b):
        """Neither host reaches the other; both still reach every other host."""
        self._run(self.exec_args(a) + ["ip", "route", "add", "blackhole", f"{self.ip(b)}/32"])
        self._run(self.exec_args(b) + ["ip", "route", "add", "blackhole", f"{self.ip(a)}/32"])

    def heal(self, a, b):
        self._run(self.exec_args(a) + ["ip", "route", "del", "blackhole", f"{self.ip(b)}/32"])
        self._run(self.exec_args(b) + ["ip", "route", "del", "blackhole", f"{self.ip(a)}/32"])

    def shape(self, rate, delay=None):
        """Every host's link carries `rate` (e.g. 1gbit) each way, with `delay` (e.g. 0.2ms)
        added each way when given: netem when the kernel has it, else a token bucket (tbf),
        which limits the rate but adds no delay."""
        if delay:
            shaping = ["netem", "rate", rate, "delay", delay, "limit", "100000"]
        else:
            # The bucket holds at least one timer tick of traffic at `rate`.
            shaping = ["tbf", "rate", rate, "burst", "256kb", "latency", "50ms"]
        for host in self.hosts:
            for where in (self.exec_args(host), []):
                device = self.inside(host) if where else self.outside(host)
                self._run(where + ["tc", "qdisc", "replace", "dev", device, "root", *shaping])

    def has_netem(self):
        """Whether the kernel can add delay (sch_netem); call after `make`."""
        probe = ["tc", "qdisc", "replace", "dev", self.bridge, "root", "netem", "delay", "1ms"]
        if subprocess.run(probe, capture_output=True).returncode != 0:
            return False
        subprocess.run(["tc", "qdisc", "del", "dev", self.bridge, "root"], capture_output=True)
        return True

    @staticmethod
    def _run(args):
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
