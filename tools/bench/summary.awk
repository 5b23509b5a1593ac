# Summarises dossier-bench CSV rows (label,target,mix,clients,value,
# duration,ops,throughput,p50_ms,p99_ms,p999_ms,errors, then client_cpu_s,
# server_cpu_s and written, which it does not read): for each label, in
# the order given by -v order="a b c", the median throughput with its min and
# max over the rounds, and the median latencies. Sets tput[label] for an
# END block appended by the caller (awk -f summary.awk -f more.awk).
BEGIN { FS = "," }
NR > 1 {
    t[$1] = t[$1] " " $8; p50[$1] = p50[$1] " " $9
    p99[$1] = p99[$1] " " $10; p999[$1] = p999[$1] " " $11
    err[$1] += $12
}
function med(s,   a, n, i, j, x) {
    n = split(s, a, " ")
    for (i = 2; i <= n; i++) {
        x = a[i]
        for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]
        a[j + 1] = x
    }
    lo = a[1]; hi = a[n]
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
    printf "%-14s %24s %9s %9s %9s %7s\n", "run", "ops/s median (min..max)", "p50 ms", "p99 ms", "p999 ms", "errors"
    n = split(order, labels, " ")
    for (k = 1; k <= n; k++) {
        l = labels[k]; if (!(l in t)) continue
        m = med(t[l]); tl = lo; th = hi
        printf "%-14s %8.0f (%6.0f..%6.0f) %9.3f %9.3f %9.3f %7d\n", l, m, tl, th, med(p50[l]), med(p99[l]), med(p999[l]), err[l]
        tput[l] = m
    }
}
