/*
 * The landing page's live mini chart of the simulated market. The first data comes
 * rendered into data-preview (no inline script under the CSP, no extra request before
 * the first paint); then the page polls the public, shared-cache preview endpoint.
 */
(function () {
  "use strict";

  var POLL_MS = 5000;
  var node = document.getElementById("preview-chart");
  if (!node || !window.LightweightCharts || !window.QS) return;
  var LC = window.LightweightCharts;
  var QS = window.QS;
  var theme = QS.chartTheme();

  var chart = LC.createChart(node, QS.chartOptions({
    handleScroll: false,
    handleScale: false,
    rightPriceScale: { borderVisible: false },
    timeScale: { borderVisible: false, timeVisible: true, secondsVisible: false },
  }));
  var series = chart.addSeries(LC.AreaSeries, {
    lineColor: theme.primary,
    topColor: theme.primary + "55",
    bottomColor: theme.primary + "05",
    lineWidth: 2,
  });

  QS.onThemeChange(function () {
    theme = QS.chartTheme();
    QS.themeChart(chart);
    series.applyOptions({ lineColor: theme.primary, topColor: theme.primary + "55", bottomColor: theme.primary + "05" });
  });

  function draw(preview) {
    var rows = preview.data || [];
    document.getElementById("preview-symbol").textContent = preview.symbol;
    document.getElementById("preview-empty").hidden = rows.length > 0;
    series.setData(rows.map(function (c) { return { time: QS.seconds(c.ts), value: c.close }; }));
    node.setAttribute("data-points", String(rows.length));
    if (!rows.length) return;
    var first = rows[0];
    var last = rows[rows.length - 1];
    document.getElementById("preview-last").textContent = QS.price(last.close);
    var change = document.getElementById("preview-change");
    var pct = first.open ? (last.close - first.open) / first.open : null;
    change.textContent = QS.percent(pct);
    change.className = "num " + (pct >= 0 ? "up" : "down");
    chart.timeScale().fitContent();
  }

  try {
    draw(JSON.parse(node.getAttribute("data-preview") || "{}"));
  } catch (e) {
    draw({ data: [] });
  }

  var url = node.getAttribute("data-preview-url");
  function poll() {
    if (document.hidden) return; // a background tab costs the server nothing
    QS.api(url).then(draw, function () { /* keep the last picture; try again next round */ });
  }
  window.setInterval(poll, POLL_MS);
})();
