"""Shared by the Python integration tests: checks that count failures, free
loopback ports, and a cluster of real dossierd processes started and
stopped by PID (Debian's /usr/bin/python3 and python3-grpcio)."""
import os
import signal
import socket
import subprocess
import time

failures = 0


def check(cond, what):
    """Prints ok/FAIL for @what and counts the failures."""
    global failures
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures += 1


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    """@n nodes bootstrapped together in @work (ports, data directories,
    logs node<i>.log), sharing a new master key; @extra flags for every
    node. Waits until every node wrote its ready file."""

    def __init__(self, dossierd, dossier, work, n=3, extra=()):
        self.dossier = dossier
        self.work = work
        self.key = os.path.join(work, "master.key")
        subprocess.run([dossier, "keygen", self.key], check=True,
                       stderr=subprocess.DEVNULL)
        self.ports = [free_port() for _ in range(n)]
        peers = ",".join(f"{i + 1}=127.0.0.1:{p}"
                         for i, p in enumerate(self.ports))
        self.logs = [os.path.join(work, f"node{i + 1}.log") for i in range(n)]
        self.nodes = []
        for i, port in enumerate(self.ports):
            self.nodes.append(subprocess.Popen(
                [dossierd, "--node-id", str(i + 1), "--peers", peers,
                 "--listen", f"127.0.0.1:{port}",
                 "--data-dir", os.path.join(work, f"d{i + 1}"),
                 "--key-file", self.key, "--tick-ms", "50",
                 "--ready-file", os.path.join(work, f"ready{i + 1}"),
                 *extra],
                stderr=open(self.logs[i], "w")))
        for _ in range(400):
            if all(os.path.exists(os.path.join(work, f"ready{i + 1}"))
                   for i in range(n)):
                break
            time.sleep(0.05)

    def target(self, i):
        return f"127.0.0.1:{self.ports[i]}"

    def leader(self):
        """Index of the node `dossier cluster status` shows leading."""
        env = dict(os.environ, DOSSIER_TARGET=",".join(
            self.target(i) for i in range(len(self.ports))))
        status = subprocess.run([self.dossier, "cluster", "status"], env=env,
                                capture_output=True, text=True).stdout
        return next(i for i, line in enumerate(status.splitlines())
                    if '"role":"leader"' in line)

    def stop(self, i, timeout=30):
        """SIGTERM to node @i; its exit status."""
        self.nodes[i].send_signal(signal.SIGTERM)
        return self.nodes[i].wait(timeout=timeout)

    def close(self):
        """Stops every node still running: SIGTERM, then SIGKILL."""
        for p in self.nodes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
