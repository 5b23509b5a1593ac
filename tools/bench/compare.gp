# Chart of tools/bench/compare.sh's medians (the data blocks compare.awk
# writes): 3-node writes by concurrency, their p99, 3-node reads and
# single-node writes. gnuplot -e "datafile='...'; outfile='...'" compare.gp
set terminal pngcairo size 1400,1000 font ",10"
set output outfile
set multiplot layout 2,2 title "Dossier against etcd 3.4, PostgreSQL 15 and raw RocksDB (1 KiB values, medians)"
set grid ytics
set key top left
set logscale x 2
set xlabel "concurrent clients"

set title "3-node writes: throughput"
set ylabel "ops/s"
plot datafile index 0 using 1:2 with linespoints lw 2 title "Dossier, via leader", \
     datafile index 1 using 1:2 with linespoints lw 2 title "Dossier, via all", \
     datafile index 0 using 1:3 with linespoints lw 2 dt 2 title "etcd, via leader", \
     datafile index 1 using 1:3 with linespoints lw 2 dt 2 title "etcd, via all"

set title "3-node writes: p99 latency"
set ylabel "ms"
set logscale y 10
plot datafile index 0 using 1:4 with linespoints lw 2 title "Dossier, via leader", \
     datafile index 1 using 1:4 with linespoints lw 2 title "Dossier, via all", \
     datafile index 0 using 1:5 with linespoints lw 2 dt 2 title "etcd, via leader", \
     datafile index 1 using 1:5 with linespoints lw 2 dt 2 title "etcd, via all"

unset logscale
set xlabel ""
set ylabel "ops/s"
set yrange [0:*]
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -20
set title "3-node reads (lin: linearizable, ser: serializable)"
plot datafile index 2 using 2:xtic(1) title "Dossier", \
     datafile index 2 using 3 title "etcd"

set title "single-node durable writes (bars: median, whiskers: min..max)"
set style data boxes
set style fill solid 0.8 border -1
set boxwidth 0.6
unset key
plot datafile index 3 using 0:2:xtic(1) with boxes lc rgb "#4472c4", \
     datafile index 3 using 0:2:3:4 with yerrorbars lc rgb "black" pt 0
unset multiplot
