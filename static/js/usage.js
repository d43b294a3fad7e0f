/*
 * Usage page chart: reads the "By day" table (the accessible source of truth, which
 * stays on the page) and draws API requests as bars and stream messages as a line.
 */
(function () {
  "use strict";

  var node = document.getElementById("usage-chart");
  var table = document.getElementById("usage-days");
  if (!node || !table || !window.LightweightCharts || !window.QS) return;
  var LC = window.LightweightCharts;
  var QS = window.QS;

  var days = Array.prototype.map.call(table.querySelectorAll("tr[data-date]"), function (row) {
    return {
      time: row.getAttribute("data-date"),
      api: parseInt(row.getAttribute("data-api"), 10) || 0,
      stream: parseInt(row.getAttribute("data-stream"), 10) || 0,
    };
  }).sort(function (a, b) { return a.time < b.time ? -1 : a.time > b.time ? 1 : 0; });

  var theme = QS.chartTheme();
  var chart = LC.createChart(node, QS.chartOptions({
    handleScroll: false, handleScale: false,
    timeScale: { timeVisible: false },
    leftPriceScale: { visible: true },
  }));
  var requests = chart.addSeries(LC.HistogramSeries, {
    color: theme.primary, priceScaleId: "left", title: "API requests", priceLineVisible: false,
  });
  var messages = chart.addSeries(LC.LineSeries, {
    color: theme.warning, lineWidth: 2, title: "Stream messages", priceLineVisible: false,
  });
  requests.setData(days.map(function (d) { return { time: d.time, value: d.api }; }));
  messages.setData(days.map(function (d) { return { time: d.time, value: d.stream }; }));
  chart.timeScale().fitContent();
  node.setAttribute("data-points", String(days.length));

  QS.onThemeChange(function () {
    theme = QS.chartTheme();
    QS.themeChart(chart);
    requests.applyOptions({ color: theme.primary });
    messages.applyOptions({ color: theme.warning });
  });
})();
