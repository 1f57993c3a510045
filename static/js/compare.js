// Comparison charts (experiment, compare and parameter pages): every run's train loss (solid) and eval loss
// (dashed, with points) overlaid in the run's colour, x by step, tokens seen or epoch, optionally a log-scale y.
// Without JavaScript the page shows the same runs as the results table below the chart.
(function () {
  "use strict";

  function buildData(runs, xKey) {
    // uPlot shares one x column: the union of every run's x values, each run's series null where it has no point
    var xs = [];
    runs.forEach(function (run) {
      run.points.forEach(function (point) { if (point[xKey] !== null && point[xKey] !== undefined) xs.push(point[xKey]); });
    });
    xs = Array.from(new Set(xs)).sort(function (a, b) { return a - b; });
    var index = new Map(xs.map(function (x, i) { return [x, i]; }));
    var columns = [xs];
    runs.forEach(function (run) {
      var train = new Array(xs.length).fill(null);
      var evals = new Array(xs.length).fill(null);
      run.points.forEach(function (point) {
        var at = index.get(point[xKey]);
        if (at === undefined) return;
        if (point.train_loss !== null && isFinite(point.train_loss)) train[at] = point.train_loss;
        if (point.eval_loss !== null && isFinite(point.eval_loss)) evals[at] = point.eval_loss;
      });
      columns.push(train, evals);
    });
    return columns;
  }

  var AXIS_LABELS = { step: "optimizer step", tokens_seen: "tokens seen", epoch: "epoch" };

  function options(runs, xKey, logScale, width) {
    var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    var axisColor = dark ? "#a3acb7" : "#57606a";
    var grid = { stroke: dark ? "#3a424d" : "#d0d7de", width: 1 };
    var series = [{ label: AXIS_LABELS[xKey] }];
    runs.forEach(function (run) {
      series.push({ label: run.label + " train", stroke: run.colour, width: 2, spanGaps: true });
      series.push({ label: run.label + " eval", stroke: run.colour, width: 2, dash: [6, 4], spanGaps: true,
                    points: { show: true, size: 6, fill: run.colour } });
    });
    return {
      width: width,
      height: 340,
      scales: { x: { time: false }, y: logScale ? { distr: 3 } : {} },
      axes: [
        { label: AXIS_LABELS[xKey], stroke: axisColor, grid: grid },
        { label: "loss (nats/token)" + (logScale ? ", log scale" : ""), stroke: axisColor, grid: grid },
      ],
      series: series,
    };
  }

  function CompareChart(figure) {
    this.figure = figure;
    this.holder = figure.querySelector(".compare-chart");
    this.runs = JSON.parse(figure.querySelector(".compare-data").textContent);
    this.xSelect = figure.querySelector(".compare-x");
    this.logBox = figure.querySelector(".compare-log");
    var controls = figure.querySelector(".compare-controls");
    if (controls) controls.hidden = false;
    var chart = this;
    if (this.xSelect) this.xSelect.addEventListener("change", function () { chart.draw(); });
    if (this.logBox) this.logBox.addEventListener("change", function () { chart.draw(); });
    this.draw();
  }

  CompareChart.prototype.draw = function () {
    var xKey = this.xSelect ? this.xSelect.value : "step";
    var logScale = this.logBox ? this.logBox.checked : false;
    if (this.plot) this.plot.destroy();
    this.holder.textContent = "";
    this.plot = new window.uPlot(options(this.runs, xKey, logScale, this.holder.clientWidth || 640),
                                 buildData(this.runs, xKey), this.holder);
    this.holder.dataset.runs = String(this.runs.length);
    this.holder.dataset.x = xKey;
  };

  function start(root) {
    if (!window.uPlot) return;
    (root || document).querySelectorAll(".compare-figure").forEach(function (figure) {
      if (figure.dataset.drawn) return;
      figure.dataset.drawn = "1";
      figure.chart = new CompareChart(figure);
    });
  }

  document.addEventListener("htmx:afterSettle", function () { start(document); });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", function () { start(document); });
  else start(document);
})();
