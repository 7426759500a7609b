#!/usr/bin/env python3
"""report.py — turns the peers' results.tsv rows of one scripts/bench run into one markdown table (peer vs Ferry).

Input rows are written by shared/peers/lib.sh `record`:
    timestamp  tool  proto/label[/cipher]  direction  unit  median  min  max  "v1 v2 ..."
Rows with the same (tool, proto, cipher, direction, unit) but different server labels are paired; every value of
every row (interleaved runs give one row per run) is pooled and the median of the pool is reported.

usage: report.py RESULTS_TSV --ferry-label ferry --size-mb 1024 --small-n 1000 --sessions 100
prints the table and a targets summary on stdout; exit status 0 even when targets are missed.
"""
import argparse
import statistics
import sys

MEM_TARGET_KIB = 100.0      # issue: "memory under 100 KiB per idle session"
THROUGHPUT_TARGET = 1.0     # issue: "throughput at least OpenSSH's in both directions"

LOGIN_METHODS = {
    "sftp-key": "sftp, key auth, client-default kex",
    "sftp-key-c25519": "sftp, key auth, curve25519-sha256 kex",
    "curl-explicit": "curl, FTPS explicit (AUTH TLS), password",
    "curl-implicit": "curl, FTPS implicit, password",
}


def size_text(mb):
    return f"{mb // 1024} GiB" if mb % 1024 == 0 else f"{mb} MiB"


def describe(tool, kind, cipher, direction, unit, a):
    """Human-readable metric name for one row key."""
    if unit == "MB/s":
        proto = {"sftp": "SFTP", "ftps-explicit": "FTPS explicit", "ftps-implicit": "FTPS implicit"}.get(kind, kind)
        client = "OpenSSH sftp" if tool == "openssh-sftp" else tool
        extra = f", cipher {cipher}" if cipher else ""
        return f"{proto} {direction} {size_text(a.size_mb)}, {client}{extra} ({unit})"
    if unit == "files/s":
        how = "sftp batch `put` glob, one session" if kind == "sftp" else f"{tool}, {kind}"
        return f"{a.small_n} x 4 KiB {direction}, {how} ({unit})"
    if tool.endswith(" (sequential)"):
        m = tool[: -len(" (sequential)")]
        return f"sequential logins, {LOGIN_METHODS.get(m, m)} ({unit})"
    if tool.endswith(" server CPU (pid tree)"):
        m = tool[: -len(" server CPU (pid tree)")]
        return f"server CPU per login, {LOGIN_METHODS.get(m, m)} ({unit})"
    if direction == "idle":
        what = "RSS" if unit.startswith("RSS") else "PSS" if unit.startswith("PSS") else unit
        client = "SFTP (paramiko, key auth)" if kind == "sftp" else f"{kind} (ftplib)"
        return f"server memory growth per idle session, {a.sessions} x {client}, {what} (KiB/session)"
    return f"{tool} {kind}{'/' + cipher if cipher else ''} {direction} ({unit})"


def lower_is_better(unit):
    return unit in ("ms/login",) or unit.endswith("KiB/sess")


def fmt(v):
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.1f}"


def fmt_ratio(r):
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def cell(vals):
    if not vals:
        return "n/a"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    return f"{fmt(med)} [{fmt(min(vals))}-{fmt(max(vals))}]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--ferry-label", default="ferry")
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--small-n", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--no-ferry", action="store_true", help="Ferry was not run: targets are not judged")
    ap.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    a = ap.parse_args()

    keys, data, peers_of = [], {}, {}
    try:
        f = open(a.results)
    except OSError:
        print("(no results were recorded)")
        return 0
    with f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 9:
                continue
            _, tool, proto, direction, unit = cols[:5]
            parts = proto.split("/")
            kind, label, cipher = parts[0], (parts[1] if len(parts) > 1 else "?"), "/".join(parts[2:])
            key = (tool, kind, cipher, direction, unit)
            if key not in data:
                keys.append(key)
                data[key] = {}
                peers_of[key] = []
            try:
                vals = [float(x) for x in cols[8].split()]
            except ValueError:
                continue
            data[key].setdefault(label, []).extend(vals)
            if label != a.ferry_label and label not in peers_of[key]:
                peers_of[key].append(label)

    all_peers = sorted({p for k in keys for p in peers_of[k]})
    only_openssh = all_peers in ([], ["openssh-sshd"])
    peer_col = "OpenSSH" if only_openssh else "peer"
    print(f"| metric |{' peer server |' if not only_openssh else ''} {peer_col} | Ferry | Ferry/{peer_col} | target |")
    print(f"|---|{'---|' if not only_openssh else ''}---|---|---|---|")

    met, missed = [], []
    for key in keys:
        tool, kind, cipher, direction, unit = key
        name = describe(tool, kind, cipher, direction, unit, a)
        fvals = data[key].get(a.ferry_label, [])
        fmed = statistics.median(fvals) if fvals else None
        for peer in (peers_of[key] or [None]):
            pvals = data[key].get(peer, []) if peer else []
            pmed = statistics.median(pvals) if pvals else None
            ratio = fmt_ratio(fmed / pmed) if fmed is not None and pmed else "n/a"
            if a.no_ferry and (unit == "MB/s" or unit.endswith("KiB/sess")):
                verdict = "n/a (Ferry not run)"
                target = "Ferry >= peer" if unit == "MB/s" else f"Ferry < {MEM_TARGET_KIB:.0f} KiB"
                target += f": {verdict}"
            elif unit == "MB/s":
                if fmed is None:
                    verdict = "MISSED (no Ferry result)"
                elif not pmed:
                    verdict = "n/a (no peer result)"
                else:
                    verdict = "met" if fmed / pmed >= THROUGHPUT_TARGET else "MISSED"
                target = f">= {THROUGHPUT_TARGET:.1f}x: {verdict}"
            elif unit.endswith("KiB/sess"):
                verdict = "MISSED (no Ferry result)" if fmed is None else ("met" if fmed < MEM_TARGET_KIB else "MISSED")
                target = f"< {MEM_TARGET_KIB:.0f} KiB: {verdict}"
            else:
                verdict = None
                target = "info, " + ("lower is better" if lower_is_better(unit) else "higher is better")
            if unit.endswith("KiB/sess") and peer != (peers_of[key] or [None])[0]:
                verdict = None  # absolute target on Ferry's value: count it once per metric, not once per peer
            if verdict is not None and not verdict.startswith("n/a"):
                vs = f" vs {peer}" if peer and not only_openssh and unit == "MB/s" else ""
                (met if verdict == "met" else missed).append(f"{name}{vs}")
            peer_cells = "" if only_openssh else f" {peer or 'n/a'} |"
            print(f"| {name} |{peer_cells} {cell(pvals)} | {cell(fvals)} | {ratio} | {target} |")

    print()
    print(f"Cells: median [min-max] over all runs; ratios are of medians. Targets met: {len(met)} of {len(met) + len(missed)}."
          " With client and server on the same 2 vCPUs, throughput ratios within a few percent of 1.0 are noise:"
          " compare the [min-max] spreads and use RUNS=5 before trusting a near miss.")
    for m in missed:
        print(f"- MISSED: {m}")
    return 3 if a.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
