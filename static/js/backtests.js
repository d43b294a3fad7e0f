/*
 * Backtest page: POST /api/v1/backtests starts a background job; the page polls
 * GET /api/v1/backtests/{id} for its progress and then draws the equity curve and the
 * metrics. The job's id is kept in the address (?id=), so a reload resumes the view.
 */
(function () {
  "use strict";

  var root = document.getElementById("backtests");
  if (!root || !window.QS) return;
  var QS = window.QS;
  var LC = window.LightweightCharts;
  var POLL_MS = 1000;
  var DONE = ["succeeded", "success", "completed", "complete", "done", "finished"];
  var FAILED = ["failed", "failure", "error", "errored", "cancelled", "canceled"];
  var $ = function (id) { return document.getElementById(id); };
  var form = $("backtest-form");
  var pollTimer = null;

  var chart = LC.createChart($("equity-chart"), QS.chartOptions());
  var series = chart.addSeries(LC.AreaSeries, {
    lineColor: QS.chartTheme().primary, topColor: QS.chartTheme().primary + "44", bottomColor: QS.chartTheme().primary + "05",
    lineWidth: 2,
  });
  QS.onThemeChange(function () {
    var theme = QS.chartTheme();
    QS.themeChart(chart);
    series.applyOptions({ lineColor: theme.primary, topColor: theme.primary + "44", bottomColor: theme.primary + "05" });
  });

  function showError(text) {
    $("bt-error").textContent = text || "";
    $("bt-error").hidden = !text;
  }

  function status(text, progress) {
    $("bt-status").textContent = text;
    var bar = $("bt-progress");
    if (progress === null || progress === undefined) {
      bar.hidden = true;
    } else {
      bar.hidden = false;
      bar.value = Math.max(0, Math.min(1, progress));
    }
  }

  async function marketsLoad() {
    var select = $("bt-market");
    var results = await Promise.all([QS.api("/api/v1/exchanges"), QS.api("/api/v1/instruments")]);
    var live = {};
    (results[0].data || []).forEach(function (x) { live[x.id] = Boolean(x.status && x.status.connected); });
    var instruments = (results[1].data || []).filter(function (i) { return i.active; });
    // Markets with a running feed first: they are the ones with stored candles.
    instruments.sort(function (a, b) { return Number(live[b.exchange]) - Number(live[a.exchange]); });
    select.replaceChildren();
    instruments.forEach(function (i) {
      select.appendChild(QS.el("option", { value: i.exchange + ":" + i.symbol, text: i.symbol + " · " + i.exchange }));
    });
    select.disabled = false;
  }

  var STRATEGY_FIELDS = {
    sma_crossover: { fast: parseInt, slow: parseInt },
    momentum: { lookback: parseInt },
    mean_reversion: { window: parseInt, entry_z: parseFloat, exit_z: parseFloat },
  };

  function strategyShow() {
    var chosen = $("bt-strategy").value;
    Array.prototype.forEach.call(form.querySelectorAll("fieldset[data-strategy]"), function (set) {
      set.hidden = set.getAttribute("data-strategy") !== chosen;
    });
  }

  /** The request of POST /api/v1/backtests (see the OpenAPI schema). */
  function requestBody() {
    var data = new FormData(form);
    var market = String(data.get("market") || "").split(":");
    var end = Date.now();
    var days = parseInt(data.get("days"), 10) || 1;
    var strategy = String(data.get("strategy"));
    var params = {};
    var fields = STRATEGY_FIELDS[strategy] || {};
    Object.keys(fields).forEach(function (name) {
      var value = fields[name](data.get(name));
      if (isFinite(value)) params[name] = value;
    });
    return {
      exchange: market[0],
      symbol: market[1],
      interval: data.get("interval"),
      start: end - days * 86400000,
      end: end,
      strategy: strategy,
      params: params,
      fee_bp: parseFloat(data.get("fee_bp")) || 0,
      slippage_bp: parseFloat(data.get("slippage_bp")) || 0,
      allow_short: data.get("allow_short") === "on",
    };
  }

  // Equity points may come as {ts, equity}, {ts, value} or [ts, value].
  // The API's equity starts at 1.0; the chart shows it as money from the capital field.
  function equityPoints(result) {
    var capital = parseFloat(new FormData(form).get("initial_capital")) || 1;
    var raw = (result && (result.equity_curve || result.equity)) || [];
    var points = [];
    raw.forEach(function (p) {
      var ts = Array.isArray(p) ? p[0] : p.ts;
      var value = Array.isArray(p) ? p[1] : (p.equity !== undefined ? p.equity : p.value);
      if (typeof ts !== "number" || typeof value !== "number") return;
      var time = QS.seconds(ts);
      if (points.length && points[points.length - 1].time >= time) return;
      points.push({ time: time, value: value * capital });
    });
    return points;
  }

  var METRIC_LABELS = {
    total_return: "Total return", annualized_return: "Annualised return", cagr: "CAGR",
    sharpe: "Sharpe ratio", sortino: "Sortino ratio", annualized_volatility: "Annualised volatility",
    max_drawdown: "Maximum drawdown", max_drawdown_duration_ms: "Longest drawdown",
    turnover: "Turnover", trades: "Trades", bars: "Bars",
  };
  var PERCENT_METRICS = ["total_return", "annualized_return", "cagr", "max_drawdown", "annualized_volatility"];

  function metricsRender(metrics) {
    var list = $("bt-metrics");
    list.replaceChildren();
    Object.keys(metrics || {}).forEach(function (key) {
      var value = metrics[key];
      if (value !== null && typeof value === "object") return;
      var label = METRIC_LABELS[key] || key.replace(/_/g, " ");
      var text;
      if (value === null || value === undefined) text = "–";
      else if (key.slice(-3) === "_ms") text = QS.duration(Math.round(value / 1000));
      else if (typeof value === "number") text = PERCENT_METRICS.indexOf(key) >= 0 ? QS.percent(value) : QS.number(value, 4);
      else text = String(value);
      list.appendChild(QS.el("dt", { text: label }));
      list.appendChild(QS.el("dd", { className: "num", text: text }));
    });
  }

  function render(job) {
    var state = String(job.status || job.state || "").toLowerCase();
    var progress = typeof job.progress === "number" ? job.progress : null;
    if (progress !== null && progress > 1) progress = progress / 100;
    if (DONE.indexOf(state) >= 0) {
      var result = job.result || job;
      var points = equityPoints(result);
      series.setData(points);
      chart.timeScale().fitContent();
      $("equity-chart").setAttribute("data-points", String(points.length));
      metricsRender(result.metrics || job.metrics);
      status("Finished.", null);
      root.setAttribute("data-state", "done");
      return true;
    }
    if (FAILED.indexOf(state) >= 0) {
      status("The backtest failed: " + (job.error && (job.error.message || job.error) || "no reason given") + ".", null);
      root.setAttribute("data-state", "failed");
      return true;
    }
    status((state ? state.charAt(0).toUpperCase() + state.slice(1) : "Queued") +
      (progress !== null ? " · " + Math.round(progress * 100) + " %" : "…"), progress === null ? 0 : progress);
    root.setAttribute("data-state", "running");
    return false;
  }

  async function poll(id) {
    window.clearTimeout(pollTimer);
    try {
      var job = await QS.api("/api/v1/backtests/" + encodeURIComponent(id));
      if (!render(job)) pollTimer = window.setTimeout(function () { poll(id); }, POLL_MS);
    } catch (error) {
      status("Could not read the backtest: " + QS.errorText(error), null);
    }
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    showError("");
    var submit = $("bt-submit");
    submit.disabled = true;
    try {
      var job = await QS.api("/api/v1/backtests", { method: "POST", body: requestBody() });
      var url = new URL(window.location.href);
      url.searchParams.set("id", job.id);
      window.history.replaceState(null, "", url);
      $("bt-metrics").replaceChildren();
      series.setData([]);
      if (!render(job)) poll(job.id);
    } catch (error) {
      showError(QS.errorText(error));
    } finally {
      submit.disabled = false;
    }
  });

  $("bt-strategy").addEventListener("change", strategyShow);
  strategyShow();
  marketsLoad().catch(function (error) { showError(QS.errorText(error)); });
  var resume = new URL(window.location.href).searchParams.get("id");
  if (resume) poll(resume);
})();
