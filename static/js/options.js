/*
 * Options calculator: POST /api/v1/options/price and /implied-volatility with the
 * session (and the CSRF header, see qs.js), and a smile chart over a strike grid.
 * All numbers come from the API; the page only arranges them.
 */
(function () {
  "use strict";

  var root = document.getElementById("options-calculator");
  if (!root || !window.QS) return;
  var QS = window.QS;
  var LC = window.LightweightCharts;
  var GRID_STEPS = 25; // strikes from 70 % to 130 % of spot

  var form = document.getElementById("option-form");
  var ivForm = document.getElementById("iv-form");
  var smileForm = document.getElementById("smile-form");

  function contract() {
    var data = new FormData(form);
    var option = { type: data.get("type") };
    ["spot", "strike", "expiry", "rate", "dividend_yield", "volatility"].forEach(function (name) {
      option[name] = parseFloat(data.get(name));
    });
    return option;
  }

  // The API's names -> the inputs and the words of their labels.
  var OPTION_WORDS = { dividend_yield: "the dividend yield", volatility: "the volatility", expiry: "the expiry" };
  function optionFields() {
    var out = {};
    ["spot", "strike", "expiry", "rate", "dividend_yield", "volatility", "type"].forEach(function (name) {
      var input = form.elements[name];
      if (input && !input.length) out[name] = input;
    });
    return out;
  }

  function showError(text) {
    var box = document.getElementById("option-error");
    box.textContent = text || "";
    box.hidden = !text;
  }

  // Figures of earlier inputs must not sit beside an error about the current ones.
  function resultsClear() {
    Array.prototype.forEach.call(root.querySelectorAll("[data-field]"), function (node) { node.textContent = "–"; });
    root.removeAttribute("data-priced");
  }

  function invalidFields(option, names) {
    return names.filter(function (name) { return !isFinite(option[name]); });
  }

  async function price(event) {
    if (event) event.preventDefault();
    var option = contract();
    showError("");
    QS.fieldErrorsClear(form);
    if (QS.fieldsCheck(form)) return resultsClear();
    var bad = invalidFields(option, ["spot", "strike", "expiry", "rate", "dividend_yield", "volatility"]);
    if (bad.length) {
      bad.forEach(function (name) { QS.fieldError(form.elements[name], "Enter a number."); });
      return resultsClear();
    }
    try {
      var body = await QS.api("/api/v1/options/price", { method: "POST", body: { options: [option] } });
      var result = body.data[0];
      if (result.error) {
        resultsClear();
        showError(QS.apiFieldErrors(form, result.error, optionFields(), OPTION_WORDS));
        return;
      }
      Array.prototype.forEach.call(root.querySelectorAll("[data-field]"), function (node) {
        var value = result[node.getAttribute("data-field")];
        node.textContent = value === null || value === undefined ? "–" : QS.number(value, 6);
      });
      root.setAttribute("data-priced", "1");
    } catch (error) {
      resultsClear();
      showError(QS.apiFieldErrors(form, error, optionFields(), OPTION_WORDS));
    }
  }

  async function impliedVolatility(event) {
    event.preventDefault();
    var option = contract();
    delete option.volatility;
    option.price = parseFloat(new FormData(ivForm).get("price"));
    var out = document.getElementById("iv-result");
    if (!isFinite(option.price)) {
      out.textContent = "Enter the option's market price.";
      return;
    }
    try {
      var body = await QS.api("/api/v1/options/implied-volatility", { method: "POST", body: { options: [option] } });
      var result = body.data[0];
      out.textContent = result.volatility === null || result.volatility === undefined
        ? "No volatility fits this price (" + String(result.reason || "unknown").replace(/_/g, " ") + ")."
        : "Implied volatility: " + QS.percent(result.volatility, 2) + " (" + QS.number(result.volatility, 6) + ")";
    } catch (error) {
      out.textContent = QS.errorText(error);
    }
  }

  // --- the smile -------------------------------------------------------------------------
  var chart = null;
  var series = null;
  if (LC && LC.createOptionsChart) {
    // The options chart's horizontal axis is a price (the strike), not time.
    chart = LC.createOptionsChart(document.getElementById("smile-chart"), QS.chartOptions({
      handleScroll: false, handleScale: false,
    }));
    series = chart.addSeries(LC.LineSeries, {
      color: QS.chartTheme().primary, lineWidth: 2, pointMarkersVisible: true,
      priceFormat: { type: "custom", formatter: function (v) { return (v * 100).toFixed(1) + "%"; } },
    });
    QS.onThemeChange(function () {
      QS.themeChart(chart);
      series.applyOptions({ color: QS.chartTheme().primary });
    });
  }

  function quotesParse(text) {
    return text.split(/\n+/).map(function (line) {
      var parts = line.trim().split(/[\s,;]+/);
      return parts.length >= 2 ? { strike: parseFloat(parts[0]), price: parseFloat(parts[1]) } : null;
    }).filter(function (q) { return q && isFinite(q.strike) && isFinite(q.price) && q.strike > 0; });
  }

  async function smile(event) {
    if (event) event.preventDefault();
    if (!series) return;
    var base = contract();
    var data = new FormData(smileForm);
    var quotes = quotesParse(String(data.get("quotes") || ""));
    var summary = document.getElementById("smile-summary");
    if (invalidFields(base, ["spot", "expiry", "rate", "dividend_yield", "volatility"]).length) {
      summary.textContent = "Fill in the contract first.";
      return;
    }
    try {
      if (!quotes.length) {
        var skew = parseFloat(data.get("skew")) || 0;
        var curvature = parseFloat(data.get("curvature")) || 0;
        var strikes = [];
        for (var i = 0; i < GRID_STEPS; i++) {
          strikes.push(base.spot * (0.7 + (0.6 * i) / (GRID_STEPS - 1)));
        }
        var modelled = strikes.map(function (k) {
          var m = Math.log(k / base.spot);
          var vol = Math.max(0.01, base.volatility + skew * m + curvature * m * m);
          return Object.assign({}, base, { strike: k, volatility: vol });
        });
        var priced = await QS.api("/api/v1/options/price", { method: "POST", body: { options: modelled } });
        quotes = strikes.map(function (k, idx) { return { strike: k, price: priced.data[idx].price }; });
      }
      var request = quotes.map(function (q) {
        var option = Object.assign({}, base, { strike: q.strike, price: q.price });
        delete option.volatility;
        return option;
      });
      var solved = await QS.api("/api/v1/options/implied-volatility", { method: "POST", body: { options: request } });
      var points = [];
      var unsolved = 0;
      quotes.forEach(function (q, idx) {
        var v = solved.data[idx].volatility;
        if (typeof v === "number") points.push({ time: Math.round(q.strike * 1e6) / 1e6, value: v });
        else unsolved += 1;
      });
      points.sort(function (a, b) { return a.time - b.time; });
      points = points.filter(function (p, idx) { return idx === 0 || p.time !== points[idx - 1].time; });
      series.setData(points);
      chart.timeScale().fitContent();
      document.getElementById("smile-chart").setAttribute("data-points", String(points.length));
      summary.textContent = points.length + " strikes" + (unsolved ? ", " + unsolved + " without a solution" : "");
    } catch (error) {
      summary.textContent = QS.errorText(error);
    }
  }

  form.addEventListener("submit", function (event) { price(event).then(function () { smile(); }); });
  ivForm.addEventListener("submit", impliedVolatility);
  smileForm.addEventListener("submit", smile);
  price().then(function () { smile(); });
})();
