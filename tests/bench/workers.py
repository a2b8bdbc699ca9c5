#!/usr/bin/python3
"""Full-handshake rate of stapler with 1 worker and with 2, side by side (interleaved rounds).

Unlike bench.py, nothing is pinned: the point is how far more workers carry the same load on
this machine. The client (bench.py's fresh-connection Python client, no resumption) runs on the
same cores, so the rates are a floor of what stapler can do; stapler's CPU per handshake is
reported too. RSA-2048 handshakes are used: they cost the server most.

usage: workers.py [--stapler build/stapler] [--rounds 3] [--duration 6] [--clients 4]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (certificates, backend config, process helpers)


def run_stapler(binary, tmp, workers, certs, port, bport):
    conf = os.path.join(tmp, "stapler-%d.yaml" % workers)
    with open(conf, "w") as f:
        f.write(bench.stapler_conf(tmp, port, bport, certs, "warn").replace(
            "workers: 1", "workers: %d" % workers))
    p = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(tmp, "stapler-%d.log" % workers), "w"))
    bench.wait_port(port, p, "stapler", 15)
    return p


def measure(p, port, certs, tmp, clients, duration):
    conf = os.path.join(tmp, "client-rsa.cnf")
    env = bench.clean_env({"OPENSSL_CONF": conf})
    c0 = bench.tree_cpu_seconds(p.pid)
    t0 = time.monotonic()
    procs = [subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "bench.py"), "--hs-worker",
                               "--port", str(port), "--duration", str(duration), "--expect",
                               certs["rsa"]], stdout=subprocess.PIPE, env=env)
             for _ in range(clients)]
    n = 0
    for q in procs:
        out, _ = q.communicate(timeout=duration + 60)
        r = json.loads(out.decode().strip().splitlines()[-1])
        assert not r["reused"] and not r["mismatch"], r
        n += r["ok"]
    wall = time.monotonic() - t0
    cpu = bench.tree_cpu_seconds(p.pid) - c0
    return n / wall, cpu * 1000.0 / n if n else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stapler", default=os.path.join(HERE, "..", "..", "build", "stapler"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=6)
    ap.add_argument("--clients", type=int, default=4)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="stapler-workers-")
    try:
        certs = bench.make_certs(tmp)  # also writes the client-rsa.cnf that forces RSA
        bport, port1, port2 = bench.free_ports(3)  # handshakes only: no backend is contacted
        procs = {1: run_stapler(a.stapler, tmp, 1, certs, port1, bport),
                 2: run_stapler(a.stapler, tmp, 2, certs, port2, bport)}
        ports = {1: port1, 2: port2}
        rates, cpus = {1: [], 2: []}, {1: [], 2: []}
        try:
            for _ in range(a.rounds):
                for w in (1, 2):
                    rate, cpu = measure(procs[w], ports[w], certs, tmp, a.clients, a.duration)
                    rates[w].append(rate)
                    cpus[w].append(cpu)
        finally:
            for p in procs.values():
                bench.stop_process(p)
        print("| workers | full RSA-2048 handshakes/s | stapler CPU ms / handshake |")
        print("|---|---|---|")
        for w in (1, 2):
            print("| %d | %.0f | %.2f |" % (w, statistics.median(rates[w]),
                                          statistics.median(cpus[w])))
        print("(median of %d rounds, %d client processes, %.0f s each, %d cores shared by "
              "client and server)" % (a.rounds, a.clients, a.duration, os.cpu_count()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
