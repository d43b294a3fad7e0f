/*
 * Backtest page: POST /api/v1/backtests starts a background job; the page polls
 * GET /api/v1/backtests/{id} for its progress and then draws the equity curve and the
 * metrics. The job's id is kept in the address (?id=), so a reload resumes the view.
 *
 * Errors: the browser's own checks (the API's min and max are on the inputs) and the
 * API's `invalid` details appear under the field they concern, in the words of its label.
 * The range defaults to what the chosen market has stored, and a run on too few bars for
 * its metrics to mean much says so before and after.
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
  var DAY_MS = 86400000;
  var INTERVAL_MS = { "1m": 60000, "5m": 300000, "15m": 900000, "1h": 3600000, "4h": 14400000, "1d": DAY_MS };
  var MIN_BARS = 100; // fewer: returns, Sharpe and drawdown are mostly noise
  var storedFrom = {}; // market -> the first stored candle (ms)
  // The API's field paths -> the inputs; its internal names -> the labels people read.
  var FIELDS = {
    exchange: $("bt-market"), symbol: $("bt-market"), interval: $("bt-interval"),
    start: $("bt-days"), end: $("bt-days"), strategy: $("bt-strategy"),
    "params.fast": $("bt-fast"), "params.slow": $("bt-slow"), "params.lookback": $("bt-lookback"),
    "params.window": $("bt-window"), "params.entry_z": $("bt-entry"), "params.exit_z": $("bt-exit"),
    fee_bp: $("bt-fee"), slippage_bp: $("bt-slippage"),
  };
  var WORDS = {
    fast: "the fast window", slow: "the slow window", lookback: "the lookback", window: "the window",
    entry_z: "the entry z-score", exit_z: "the exit z-score", fee_bp: "the fee", slippage_bp: "the slippage",
    end: "the end", start: "the start",
  };
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
    await rangeDefault();
  }

  /** Days and interval that the chosen market has stored data for (at most a week). */
  async function rangeDefault() {
    var market = $("bt-market").value.split(":");
    if (market.length !== 2) return;
    var key = market.join(":");
    if (storedFrom[key] === undefined) {
      try {
        var body = await QS.api("/api/v1/markets/" + encodeURIComponent(market[0]) + "/" +
          encodeURIComponent(market[1]) + "/candles" + QS.query({ interval: "1h", limit: 168 }));
        var rows = body.data || [];
        storedFrom[key] = rows.length ? rows[0].ts : null;
      } catch (error) {
        storedFrom[key] = null;
      }
    }
    var hint = $("bt-days-hint");
    var first = storedFrom[key];
    if (!first) {
      hint.textContent = "No stored candles for this market yet.";
      return;
    }
    var span = Date.now() - first;
    var days = Math.max(1, Math.min(7, Math.ceil(span / DAY_MS)));
    $("bt-days").value = String(days);
    // The coarsest interval that still gives enough bars over what is stored.
    var choice = ["1h", "15m", "5m", "1m"].filter(function (name) { return span / INTERVAL_MS[name] >= MIN_BARS; })[0] || "1m";
    $("bt-interval").value = choice;
    hint.textContent = "Stored data for this market starts " + new Date(first).toISOString().slice(0, 16).replace("T", " ") + " UTC.";
    sampleCheck();
  }

  /** The number of bars the form asks for, against what is stored. */
  function barsExpected() {
    var data = new FormData(form);
    var ms = INTERVAL_MS[data.get("interval")] || 3600000;
    var days = parseInt(data.get("days"), 10) || 1;
    var span = days * DAY_MS;
    var first = storedFrom[$("bt-market").value];
    if (first) span = Math.min(span, Date.now() - first);
    return Math.floor(span / ms);
  }

  function warn(text) {
    $("bt-warning").textContent = text || "";
    $("bt-warning").hidden = !text;
  }

  function shortSampleText(bars) {
    return "Only " + bars + " bars: too short a sample for meaningful metrics (returns, Sharpe and drawdown " +
      "over fewer than " + MIN_BARS + " bars are mostly noise). Choose more days or a shorter candle interval.";
  }

  function sampleCheck() {
    var bars = barsExpected();
    warn(bars < MIN_BARS ? shortSampleText(bars) : "");
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
      var metrics = result.metrics || job.metrics || {};
      metricsRender(metrics);
      var bars = typeof metrics.bars === "number" ? metrics.bars : points.length;
      warn(bars < MIN_BARS ? shortSampleText(bars) : "");
      status("Finished" + (bars < MIN_BARS ? ", on a short sample." : "."), null);
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
    QS.fieldErrorsClear(form);
    if (QS.fieldsCheck(form)) {
      status("Not started: correct the highlighted fields.", null);
      return;
    }
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
      // The status line must not contradict the error: nothing was started.
      status("Not started" + (error.code === "invalid" ? ": correct the highlighted fields." : "."), null);
      root.setAttribute("data-state", "refused");
      showError(QS.apiFieldErrors(form, error, FIELDS, WORDS));
    } finally {
      submit.disabled = false;
    }
  });

  $("bt-strategy").addEventListener("change", strategyShow);
  $("bt-market").addEventListener("change", function () { rangeDefault(); });
  $("bt-interval").addEventListener("change", sampleCheck);
  $("bt-days").addEventListener("input", sampleCheck);
  strategyShow();
  marketsLoad().catch(function (error) { showError(QS.errorText(error)); });
  var resume = new URL(window.location.href).searchParams.get("id");
  if (resume) poll(resume);
})();
