// Job form: scrolls the field a "try it" link focused (/jobs/new?focus=<name>) into view.
// Job page: draws the loss curve from the embedded metric rows, then adds each `metric` event of the
// page's SSE stream (opened by htmx's SSE extension). Without JavaScript the page shows the same rows as a table.
(function () {
  "use strict";

  function readPoints() {
    var source = document.getElementById("job-metrics");
    return source ? JSON.parse(source.textContent) : [];
  }

  function chartOptions(width) {
    var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    var axisColor = dark ? "#a3acb7" : "#57606a";
    var grid = { stroke: dark ? "#3a424d" : "#d0d7de", width: 1 };
    return {
      width: width,
      height: 320,
      scales: { x: { time: false }, loss: {}, lr: {} },
      axes: [
        { label: "optimizer step", stroke: axisColor, grid: grid },
        { scale: "loss", label: "loss (nats/token)", stroke: axisColor, grid: grid },
        { scale: "lr", label: "learning rate", side: 1, stroke: axisColor, grid: { show: false },
          values: function (u, ticks) { return ticks.map(function (t) { return t.toExponential(1); }); } },
      ],
      series: [
        { label: "step" },
        { label: "train loss", scale: "loss", stroke: "#0b5cad", width: 2 },
        { label: "eval loss", scale: "loss", stroke: "#c2410c", width: 2, spanGaps: true, points: { show: true, size: 6 } },
        { label: "learning rate", scale: "lr", stroke: "#6b7280", width: 1, dash: [4, 4] },
      ],
    };
  }

  function LossChart(holder, points) {
    this.holder = holder;
    this.columns = [[], [], [], []];
    this.lastStep = 0;
    points.forEach(this.push, this);
    this.plot = new window.uPlot(chartOptions(holder.clientWidth || 600), this.columns, holder);
    this.holder.dataset.points = String(this.columns[0].length);
    var chart = this;
    window.addEventListener("resize", function () { chart.plot.setSize({ width: holder.clientWidth, height: 320 }); });
  }

  LossChart.prototype.push = function (point) {
    // a resumed or restarted stream may repeat steps the chart already has: keep the first
    if (point.step <= this.lastStep) return false;
    this.columns[0].push(point.step);
    this.columns[1].push(point.train_loss);
    this.columns[2].push(point.eval_loss);
    this.columns[3].push(point.learning_rate);
    this.lastStep = point.step;
    return true;
  };

  LossChart.prototype.add = function (point) {
    if (!this.push(point)) return;
    this.plot.setData(this.columns);
    this.holder.dataset.points = String(this.columns[0].length);
    appendMetricRow(point);
  };

  // The same formats as the server-rendered rows of templates/jobs/detail.html.
  function formatMetric(key, value) {
    if (value === null || value === undefined) return "";
    if (key === "step") return String(value);
    if (key === "exact_match") return Math.round(100 * value) + "%";
    if (key === "learning_rate") return String(Number(value.toPrecision(3)));
    if (key === "grad_norm") return value.toFixed(3);
    if (key === "tokens_per_second") return value.toFixed(0);
    return value.toFixed(4);
  }

  // Keep the "Metric rows" table (the chart's text alternative) in step with the chart.
  function appendMetricRow(point) {
    var body = document.getElementById("metric-rows");
    if (!body) return;
    var row = document.createElement("tr");
    body.parentNode.querySelectorAll("thead th[data-key]").forEach(function (header) {
      var cell = document.createElement("td");
      cell.className = "num";
      cell.textContent = formatMetric(header.dataset.key, point[header.dataset.key]);
      row.appendChild(cell);
    });
    body.appendChild(row);
    var count = document.getElementById("metric-row-count");
    if (count) count.textContent = String(body.rows.length);
  }

  function showFocusedField() {
    var focused = document.querySelector("#job-form .form-field.focused");
    if (!focused) return;
    focused.scrollIntoView({ block: "center" });
    var input = focused.querySelector("input:not([type=hidden]), select, textarea");
    if (input && document.activeElement !== input) input.focus({ preventScroll: true });
  }

  function start() {
    showFocusedField();
    var holder = document.getElementById("loss-chart");
    if (!holder || !window.uPlot) return;
    var chart = new LossChart(holder, readPoints());
    var followed = new WeakSet();
    // htmx fires sseOpen on every (re)connection of the same EventSource: listen once per source
    document.body.addEventListener("htmx:sseOpen", function (event) {
      var source = event.detail.source;
      if (followed.has(source)) return;
      followed.add(source);
      source.addEventListener("metric", function (message) { chart.add(JSON.parse(message.data)); });
    });
    window.lorapediaJobChart = chart;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
