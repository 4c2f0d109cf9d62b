#!/usr/bin/env python3
"""Side-by-side proxy benchmark driver (issue 5 item 2). Run through `bench/compare`, which installs
the tools and builds the release binaries first.

For each protocol (thrift, dubbo) and workload (20-byte, 120 KB request) it starts one meta-bench
backend and, in turn, each target: direct, HAProxy TCP mode, Envoy tcp_proxy, Envoy's native
thrift_proxy/dubbo_proxy with a method route, meta-proxy with a method route (admin/metrics on).
Proxies are pinned to CPU 0 (one worker thread); load generator and backend to CPU 1.

Per target: closed-loop throughput, then (after every target's closed loop, so the rate is known)
an open-loop run at 50 % of Envoy's native maximum, giving p99 added over direct at the same rate.
Proxy CPU seconds come from /proc/<pid>/stat (utime+stime) sampled around the measured window;
peak RSS is VmHWM after the load runs; "RSS 1000 idle" is VmRSS with 1000 idle client connections
open (20-byte workload only, after the load runs).
"""

import argparse
import collections
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "bench", "configs")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROXY_CPU = "0"
LOAD_CPU = "1"
WORKLOADS = [("20B", 20), ("120KB", 122880)]
TARGETS = ["direct", "haproxy", "envoy-tcp", "envoy-native", "meta-proxy"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def cpu_seconds(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime is field 14, stime field 15 → indices 11 and 12.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {key}")


def render(template, out_dir, **ports):
    with open(os.path.join(CONFIGS, template)) as f:
        text = f.read()
    for key, value in ports.items():
        text = text.replace(f"@{key.upper()}@", str(value))
    path = os.path.join(out_dir, template.replace(".tmpl", ""))
    with open(path, "w") as f:
        f.write(text)
    return path


class Proc:
    """A child process with its log in the work dir; stopped by its own pid only."""

    def __init__(self, name, argv, workdir, cpu):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["taskset", "-c", cpu, *argv], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid  # taskset execs the program: same pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


def start_proxy(target, proto, bins, workdir, backend_port):
    """Starts the target in front of the backend; returns (Proc or None, port, admin port)."""
    if target == "direct":
        return None, backend_port, None
    listen, admin = free_port(), free_port()
    if target == "haproxy":
        cfg = render("haproxy.cfg.tmpl", workdir, listen=listen, backend=backend_port)
        argv = ["haproxy", "-db", "-f", cfg]
    elif target.startswith("envoy"):
        tmpl = "envoy-tcp.yaml.tmpl" if target == "envoy-tcp" else f"envoy-{proto}.yaml.tmpl"
        cfg = render(tmpl, workdir, listen=listen, admin=admin, backend=backend_port)
        argv = [bins["envoy"], "-c", cfg, "--concurrency", "1", "--log-level", "warn",
                "--base-id", str(listen), "--disable-hot-restart"]
    else:
        cfg = render(f"meta-{proto}.yaml.tmpl", workdir, listen=listen, admin=admin,
                     backend=backend_port)
        argv = [bins["meta-proxy"], "--config", cfg, "--concurrency", "1", "--log-level", "warn"]
    p = Proc(f"{proto}-{target}", argv, workdir, PROXY_CPU)
    try:
        wait_port(listen, p.proc)
    except Exception:
        p.stop()
        raise
    return p, listen, admin


def run_load(bins, proto, port, args, payload, rate=None, proxy=None):
    """One meta-bench run pinned to the load CPU; returns (result dict, proxy CPU s in window)."""
    argv = ["taskset", "-c", LOAD_CPU, bins["meta-bench"], "run", "--protocol", proto,
            "--target", f"127.0.0.1:{port}", "--connections", str(args.connections),
            "--duration", f"{args.duration}s", "--warmup", f"{args.warmup}s",
            "--payload", str(payload), "--json"]
    if rate is not None:
        argv += ["--rate", str(int(rate))]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu = None
    if proxy is not None:
        time.sleep(args.warmup)
        c0 = cpu_seconds(proxy.pid)
        time.sleep(args.duration)
        cpu = cpu_seconds(proxy.pid) - c0
    out, err = child.communicate(timeout=args.duration + args.warmup + 60)
    if child.returncode != 0 or not out.strip():
        raise RuntimeError(f"meta-bench run failed ({child.returncode}): {err.strip()[-500:]}")
    return json.loads(out.strip().splitlines()[-1]), cpu


def check_metrics(admin):
    """meta-proxy ran with metrics on: /metrics must answer and count downstream requests."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    if "request" not in text:
        raise RuntimeError(f"/metrics on admin port {admin} has no request counter")


def idle_rss_kb(pid, port, count):
    """VmRSS of pid while `count` idle client connections are open to port."""
    socks = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(1.5)  # let the proxy accept them all (and open upstreams, for L4 proxies)
        return status_kb(pid, "VmRSS")
    finally:
        for s in socks:
            s.close()


def fmt(v, spec="{:,.0f}"):
    return "—" if v is None else spec.format(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--idle", type=int, default=1000, help="idle connections for the RSS probe")
    ap.add_argument("--protocols", default="thrift,dubbo")
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--out", required=True, help="markdown results file to write")
    args = ap.parse_args()
    bins = {"meta-bench": os.path.join(args.bin_dir, "meta-bench"),
            "meta-proxy": os.path.join(args.bin_dir, "meta-proxy"), "envoy": args.envoy}
    workdir = tempfile.mkdtemp(prefix="bench-compare-")
    print(f"logs and rendered configs: {workdir}", file=sys.stderr)
    rows = []
    for proto in args.protocols.split(","):
        for wname, payload in WORKLOADS:
            rows += bench_workload(proto, wname, payload, bins, args, workdir)
    table = render_table(rows, args)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(table)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    print(table)
    print(f"written to {args.out}", file=sys.stderr)


def bench_workload(proto, wname, payload, bins, args, workdir):
    backend_port = free_port()
    backend = Proc(f"{proto}-backend-{wname}",
                   [bins["meta-bench"], "server", "--protocol", proto,
                    "--listen", f"127.0.0.1:{backend_port}"], workdir, LOAD_CPU)
    results = {t: {"target": t, "protocol": proto, "workload": wname} for t in TARGETS}
    try:
        wait_port(backend_port, backend.proc)
        # Pass 1: closed loop, targets in turn, each freshly started.
        for t in TARGETS:
            log(f"{proto} {wname} {t}: closed loop")
            measure(t, proto, payload, bins, args, workdir, backend_port, results[t], None,
                    idle=(wname == "20B"))
        envoy_max = results["envoy-native"].get("closed", {}).get("rps")
        rate = max(1.0, 0.5 * envoy_max) if envoy_max else None
        # Pass 2: open loop at 50 % of Envoy native's max, targets in turn.
        if rate is not None:
            for t in TARGETS:
                log(f"{proto} {wname} {t}: open loop at {rate:.0f}/s")
                measure(t, proto, payload, bins, args, workdir, backend_port, results[t], rate)
    finally:
        backend.stop()
    direct_p99 = results["direct"].get("open", {}).get("p99_us")
    for r in results.values():
        r["rate"] = rate
        p99 = r.get("open", {}).get("p99_us")
        r["added_p99"] = None if p99 is None or direct_p99 is None else p99 - direct_p99
    return list(results.values())


def measure(t, proto, payload, bins, args, workdir, backend_port, res, rate, idle=False):
    key = "open" if rate is not None else "closed"
    proxy = None
    try:
        proxy, port, admin = start_proxy(t, proto, bins, workdir, backend_port)
        result, cpu = run_load(bins, proto, port, args, payload, rate, proxy)
        res[key] = result
        if proxy is not None and key == "closed":
            res["cpu_s"] = cpu
            res["req_per_cpu_s"] = result["requests"] / cpu if cpu else None
            res["peak_rss_kb"] = status_kb(proxy.pid, "VmHWM")
            if t == "meta-proxy":
                check_metrics(admin)
            if idle:
                res["idle_rss_kb"] = idle_rss_kb(proxy.pid, port, args.idle)
    except Exception as e:  # recorded in the table, the run goes on
        res.setdefault("failures", []).append(f"{key}: {e}")
        log(f"  FAILED: {e}")
    finally:
        if proxy is not None:
            proxy.stop()


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def render_table(rows, args):
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"Date: {now}. Machine: nproc={os.cpu_count()}, CPU {cpu_model}, kernel "
           f"{platform.release()}. Proxy on CPU {PROXY_CPU} (1 worker), load generator + backend "
           f"on CPU {LOAD_CPU}. {args.connections} connections, {args.duration:g}s measured after "
           f"{args.warmup:g}s warm-up per run; each proxy freshly started per run.", ""]
    out.append("| protocol | workload | target | closed rps | p50 µs | p99 µs | p999 µs | errors "
               "| open rate/s | open p99 µs | added p99 µs | proxy CPU s | req / CPU-s "
               "| peak RSS MiB | RSS 1000 idle MiB |")
    out.append("|" + "---|" * 15)
    for r in rows:
        c, o = r.get("closed", {}), r.get("open", {})
        errs = c.get("errors", 0) + o.get("errors", 0) if (c or o) else None
        kinds = collections.Counter(c.get("errors_by_kind", {}))
        kinds.update(o.get("errors_by_kind", {}))
        err_txt = fmt(errs) + ("".join(f" {k}: {n}" for k, n in sorted(kinds.items())))
        if r.get("failures"):
            err_txt += " FAILED: " + "; ".join(r["failures"])
        out.append("| " + " | ".join([
            r["protocol"], r["workload"], r["target"], fmt(c.get("rps")), fmt(c.get("p50_us")),
            fmt(c.get("p99_us")), fmt(c.get("p999_us")), err_txt, fmt(r.get("rate")),
            fmt(o.get("p99_us")), fmt(r.get("added_p99")), fmt(r.get("cpu_s"), "{:.2f}"),
            fmt(r.get("req_per_cpu_s")), fmt(mib(r.get("peak_rss_kb")), "{:.1f}"),
            fmt(mib(r.get("idle_rss_kb")), "{:.1f}")]) + " |")
    out += ["", ratios(rows)]
    return "\n".join(out) + "\n"


def mib(kb):
    return None if kb is None else kb / 1024


def ratios(rows):
    """meta-proxy against the issue's targets, one line per protocol × workload."""
    lines = ["Ratios, meta-proxy vs the issue 5 targets:", ""]
    by = {(r["protocol"], r["workload"], r["target"]): r for r in rows}
    for proto, wname in sorted({(r["protocol"], r["workload"]) for r in rows}):
        m = by.get((proto, wname, "meta-proxy"), {})
        e = by.get((proto, wname, "envoy-native"), {})
        h = by.get((proto, wname, "haproxy"), {})

        def ratio(a, b):
            return None if a is None or b in (None, 0) else a / b
        parts = [
            f"req/CPU-s vs Envoy native {fmt(ratio(m.get('req_per_cpu_s'), e.get('req_per_cpu_s')), '{:.2f}')}× (target ≥ 1.5)",
            f"vs HAProxy {fmt(ratio(m.get('req_per_cpu_s'), h.get('req_per_cpu_s')), '{:.2f}')}× (target ≥ 0.8)",
            f"closed rps vs Envoy native {fmt(ratio(m.get('closed', {}).get('rps'), e.get('closed', {}).get('rps')), '{:.2f}')}× (target ≥ 1)",
            f"added p99 vs Envoy native {fmt(ratio(m.get('added_p99'), e.get('added_p99')), '{:.2f}')}× (target ≤ 0.5)",
        ]
        if m.get("idle_rss_kb") is not None:
            parts.append(f"RSS 1000 idle vs Envoy native {fmt(ratio(m.get('idle_rss_kb'), e.get('idle_rss_kb')), '{:.2f}')}× (target ≤ 0.5)")
        lines.append(f"- {proto} {wname}: " + "; ".join(parts))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
