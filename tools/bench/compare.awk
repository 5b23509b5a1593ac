# Summarises compare.sh's CSV (dossier-bench's row, then disk_bytes,
# records, disk_per_record): for each label (in the order of -v order="a b")
# and system, the median of the rounds of every figure, with the minimum
# and maximum of the throughput; then Dossier's ratio to each peer (of the
# medians, and the median of the per-round ratios) and the
# issue's targets, checked at -v clients=N. Writes every median, minimum
# and maximum to -v summary=FILE and the chart's data to -v plot=FILE.
BEGIN {
    FS = ","
    nsys = split("dossier etcd postgres rocksdb", systems, " ")
    nmet = split("tput p50 p99 p999 cpu cpu_us disk errors", metrics, " ")
}
NR > 1 {
    k = $1 SUBSEP $2
    seen[k] = 1
    runs[k]++
    # The n-th row of a label and system is from round n.
    T[k, runs[k]] = $8
    P99[k, runs[k]] = $10
    v["tput", k] = v["tput", k] " " $8
    v["p50", k] = v["p50", k] " " $9
    v["p99", k] = v["p99", k] " " $10
    v["p999", k] = v["p999", k] " " $11
    # Raw RocksDB runs inside dossier-bench: its CPU is the whole process's.
    cpu = ($14 == "" && $2 == "rocksdb") ? $13 : $14
    if (cpu != "") {
        v["cpu", k] = v["cpu", k] " " cpu
        v["cpu_us", k] = v["cpu_us", k] " " ($7 > 0 ? cpu / $7 * 1e6 : 0)
    }
    if ($3 != "get")
        v["disk", k] = v["disk", k] " " $18
    v["errors", k] = v["errors", k] " " $12
}
# Median of the numbers in s; sets lo and hi.
function med(s,   a, n, i, j, x) {
    n = split(s, a, " ")
    if (n == 0) { lo = hi = ""; return "" }
    for (i = 2; i <= n; i++) {
        x = a[i]
        for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]
        a[j + 1] = x
    }
    lo = a[1]; hi = a[n]
    return (n % 2) ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
function fmt(x, f) { return x == "" ? "-" : sprintf(f, x) }
function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf("%.2fx", a / b) }
END {
    n = split(order, labels, " ")
    printf "%-7s %-15s %-8s %25s %8s %8s %8s %7s %8s %8s %6s\n", "deploy", "workload",
        "system", "ops/s median (min..max)", "p50 ms", "p99 ms", "p99.9 ms",
        "CPU s", "CPU us/op", "disk B/rec", "errors"
    printf "label,system,runs" > summary
    for (m = 1; m <= nmet; m++)
        printf ",%s_median,%s_min,%s_max", metrics[m], metrics[m], metrics[m] > summary
    printf "\n" > summary
    for (i = 1; i <= n; i++) {
        split(labels[i], part, ":")
        for (s = 1; s <= nsys; s++) {
            k = labels[i] SUBSEP systems[s]
            if (!(k in seen)) continue
            printf "%s,%s,%d", labels[i], systems[s], runs[k] > summary
            for (m = 1; m <= nmet; m++) {
                M[metrics[m], k] = med(v[metrics[m], k])
                printf ",%s,%s,%s", M[metrics[m], k], lo, hi > summary
                if (metrics[m] == "tput") { tlo = lo; thi = hi }
            }
            printf "\n" > summary
            cpu_mark = systems[s] == "rocksdb" ? "*" : " "
            printf "%-7s %-15s %-8s %8.0f (%6.0f..%6.0f) %8.2f %8.2f %8.2f %6s%s %8s %8s %6d\n",
                part[1], part[2], systems[s], M["tput", k], tlo, thi, M["p50", k],
                M["p99", k], M["p999", k], fmt(M["cpu", k], "%.2f"), cpu_mark,
                fmt(M["cpu_us", k], "%.0f"), fmt(M["disk", k], "%.0f"), M["errors", k]
        }
    }
    print "(CPU: seconds the servers used while measuring, children included;"
    print " * raw RocksDB runs inside dossier-bench: the whole process. disk:"
    print " du -sb of the data dirs, all replicas, after the run less right"
    print " after start, over every record written to that deployment so far.)"

    print "\nDossier / peer, of the medians and per round (median, min..max):"
    print "(ops/s: higher is better for Dossier; p99, CPU per op, disk: lower is)"
    printf "%-23s %-9s %6s %18s %6s %18s %7s %6s\n", "workload", "peer", "ops/s",
        "per round", "p99", "per round", "CPU/op", "disk"
    for (i = 1; i <= n; i++) {
        d = labels[i] SUBSEP "dossier"
        if (!(d in seen)) continue
        for (s = 2; s <= nsys; s++) {
            k = labels[i] SUBSEP systems[s]
            if (!(k in seen)) continue
            tr = paired(T, d, k); tlo = lo; thi = hi
            pr = paired(P99, d, k)
            printf "%-23s %-9s %6s %18s %6s %18s %7s %6s\n", labels[i], systems[s],
                ratio(M["tput", d], M["tput", k]), range(tr, tlo, thi),
                ratio(M["p99", d], M["p99", k]), range(pr, lo, hi),
                ratio(M["cpu_us", d], M["cpu_us", k]), ratio(M["disk", d], M["disk", k])
            R["tput", labels[i], systems[s]] = tr
            R["p99", labels[i], systems[s]] = pr
        }
    }

    print "\nThe issue's targets, " clients " clients, 1 KiB:"
    target("3-node:put-leader-" clients, "etcd", 3, 0.5)
    target("3-node:put-all-" clients, "etcd", 3, 0.5)
    target("3-node:get-lin-leader", "etcd", 2, 0)
    target("3-node:get-lin-all", "etcd", 2, 0)
    target("1-node:put", "etcd", 2, 0)
    target("1-node:put", "postgres", 1, 0)

    # The chart's data: gnuplot data blocks, one per panel.
    split(counts_of(n), cs, " ")
    for (b = 1; b <= 2; b++) {
        w = b == 1 ? "put-leader-" : "put-all-"
        print "# 3-node " w "N: clients dossier_tput etcd_tput dossier_p99 etcd_p99" > plot
        for (c = 1; c in cs; c++) {
            dk = "3-node:" w cs[c] SUBSEP "dossier"; ek = "3-node:" w cs[c] SUBSEP "etcd"
            printf "%s %s %s %s %s\n", cs[c], val(M["tput", dk]), val(M["tput", ek]),
                val(M["p99", dk]), val(M["p99", ek]) > plot
        }
        printf "\n\n" > plot
    }
    print "# 3-node reads: workload dossier_tput etcd_tput" > plot
    for (i = 1; i <= n; i++)
        if (labels[i] ~ /^3-node:get-/) {
            split(labels[i], part, ":")
            printf "%s %s %s\n", part[2], val(M["tput", labels[i] SUBSEP "dossier"]),
                val(M["tput", labels[i] SUBSEP "etcd"]) > plot
        }
    printf "\n\n" > plot
    print "# 1-node puts: system tput min max" > plot
    for (s = 1; s <= nsys; s++) {
        k = "1-node:put" SUBSEP systems[s]
        if (!(k in seen)) continue
        med(v["tput", k])
        printf "%s %s %s %s\n", systems[s], M["tput", k], lo, hi > plot
    }
}
# The median of the per-round ratios of A[d, r] to A[k, r]; sets lo, hi.
function paired(A, d, k,   r, s) {
    s = ""
    for (r = 1; r <= runs[d] && r <= runs[k]; r++)
        if (A[k, r] + 0 > 0) s = s " " A[d, r] / A[k, r]
    return med(s)
}
function range(m, a, b) { return m == "" ? "-" : sprintf("%.2fx (%.2f..%.2f)", m, a, b) }
function val(x) { return x == "" ? "NaN" : x }
# The client counts of the put-leader labels, in order.
function counts_of(n,   i, out, p) {
    out = ""
    for (i = 1; i <= n; i++)
        if (labels[i] ~ /^3-node:put-leader-/) {
            p = labels[i]; sub(/^3-node:put-leader-/, "", p)
            out = out " " p
        }
    return out
}
# Dossier's throughput at least @times that of @peer on @label, and (when
# @p99frac > 0) its p99 at most @p99frac of the peer's.
function target(label, peer, times, p99frac,   d, k, r, ok, msg) {
    d = label SUBSEP "dossier"; k = label SUBSEP peer
    if (!(d in seen) || !(k in seen)) return
    r = M["tput", d] / M["tput", k]
    ok = r >= times
    msg = sprintf("%-23s vs %-8s ops/s %.2fx, per round %.2fx (target >= %gx)", label,
        peer, r, R["tput", label, peer], times)
    if (p99frac > 0) {
        msg = msg sprintf("; p99 %.2fx, per round %.2fx (target <= %gx)",
            M["p99", d] / M["p99", k], R["p99", label, peer], p99frac)
        ok = ok && M["p99", d] <= p99frac * M["p99", k]
    }
    printf "  %s: %s\n", ok ? "met   " : "MISSED", msg
}
