#!/bin/sh
# plot.sh RUNS.csv > plot.svg — tok/s against threads from `spikeq bench -o csv` rows (one
# or more runs concatenated), one line per test (pp/tg), with the roofline each point was
# measured against (tok/s / roofline_fraction) drawn dashed. Plain awk -> SVG.
awk -F, '
NR == 1 || $1 == "model" { next }
{
  key = $7; t = $6 + 0; v = $8 + 0; f = $10 + 0
  n[key]++; T[key, n[key]] = t; V[key, n[key]] = v; R[key, n[key]] = (f > 0 ? v / f : 0)
  if (t > tmax) tmax = t
  if (v > vmax) vmax = v
  if (f > 0 && v / f > vmax) vmax = v / f
  keys[key] = 1; model = $1
}
END {
  W = 640; H = 400; x0 = 60; y0 = 340; pw = 540; ph = 300
  printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H
  gsub(/"/, "", model)
  printf "<text x=\"%d\" y=\"20\">%s: tokens/s vs threads (dashed: measured roofline)</text>\n", x0, model
  printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", x0, y0, x0 + pw, y0
  printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", x0, y0, x0, y0 - ph
  for (i = 0; i <= 4; i++) printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.0f</text>\n", x0 - 4, y0 - ph * i / 4 + 4, vmax * i / 4
  for (t = 1; t <= tmax; t *= 2) printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x0 + pw * log(t) / log(tmax > 1 ? tmax : 2), y0 + 16, t
  printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">threads</text>\n", x0 + pw / 2, y0 + 34
  c = 0; split("#1f77b4 #d62728 #2ca02c #9467bd", col, " ")
  for (k in keys) {
    c++; p = ""; r = ""
    for (i = 1; i <= n[k]; i++) {
      x = x0 + pw * log(T[k, i]) / log(tmax > 1 ? tmax : 2); y = y0 - ph * V[k, i] / vmax
      p = p sprintf("%.1f,%.1f ", x, y)
      if (R[k, i] > 0) r = r sprintf("%.1f,%.1f ", x, y0 - ph * R[k, i] / vmax)
      printf "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x, y, col[c]
    }
    printf "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>\n", p, col[c]
    if (r != "") printf "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-dasharray=\"5,4\"/>\n", r, col[c]
    printf "<text x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>\n", x0 + pw - 80, 40 + 16 * c, col[c], k
  }
  print "</svg>"
}' "$@"
