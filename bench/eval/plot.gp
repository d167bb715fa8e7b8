# Written by bench/eval.c; run from bench/eval: gnuplot plot.gp
set terminal pngcairo size 1560,960 font 'sans,10'
set output 'hit_quality.png'
set multiplot layout 2,3 title 'parrot builtin embedder: hit rate vs wrong-hit share (thresholds 0.30-0.99; dot = default 0.70)'
set grid
set key bottom right
set yrange [0:1]
set title 'hwu64-dev, young cache (10 per intent)'
set xrange [0:0.80]
set xlabel 'wrong-hit share (answer level)'
set ylabel 'hit rate'
plot 'plot.dat' index 0 with lines lw 2 lc rgb '#1f77b4' title 'verifier on', '' index 1 with points pt 7 ps 1.5 lc rgb '#1f77b4' notitle, '' index 2 with lines lw 2 dt 2 lc rgb '#d62728' title 'verifier off', '' index 3 with points pt 7 ps 1.5 lc rgb '#d62728' notitle
set title 'hwu64-dev, full cache'
set xrange [0:0.80]
set xlabel 'wrong-hit share (answer level)'
set ylabel 'hit rate'
plot 'plot.dat' index 4 with lines lw 2 lc rgb '#1f77b4' title 'verifier on', '' index 5 with points pt 7 ps 1.5 lc rgb '#1f77b4' notitle, '' index 6 with lines lw 2 dt 2 lc rgb '#d62728' title 'verifier off', '' index 7 with points pt 7 ps 1.5 lc rgb '#d62728' notitle
set title 'CLINC150'
set xrange [0:0.30]
set xlabel 'wrong-hit share (intent level)'
set ylabel 'hit rate'
plot 'plot.dat' index 8 with lines lw 2 lc rgb '#1f77b4' title 'verifier on', '' index 9 with points pt 7 ps 1.5 lc rgb '#1f77b4' notitle, '' index 10 with lines lw 2 dt 2 lc rgb '#d62728' title 'verifier off', '' index 11 with points pt 7 ps 1.5 lc rgb '#d62728' notitle
set title 'BANKING77'
set xrange [0:0.30]
set xlabel 'wrong-hit share (intent level)'
set ylabel 'hit rate'
plot 'plot.dat' index 12 with lines lw 2 lc rgb '#1f77b4' title 'verifier on', '' index 13 with points pt 7 ps 1.5 lc rgb '#1f77b4' notitle, '' index 14 with lines lw 2 dt 2 lc rgb '#d62728' title 'verifier off', '' index 15 with points pt 7 ps 1.5 lc rgb '#d62728' notitle
set title 'qqp'
set xrange [0:0.60]
set xlabel '1 - precision (non-duplicates among hits)'
set ylabel 'recall (duplicates that hit)'
plot 'plot.dat' index 16 with lines lw 2 lc rgb '#1f77b4' title 'verifier on', '' index 17 with points pt 7 ps 1.5 lc rgb '#1f77b4' notitle, '' index 18 with lines lw 2 dt 2 lc rgb '#d62728' title 'verifier off', '' index 19 with points pt 7 ps 1.5 lc rgb '#d62728' notitle
unset multiplot
