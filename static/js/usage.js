/*
 * Usage page chart: reads the "By day" table (the accessible source of truth, which
 * stays on the page) and draws API requests as bars (left axis) and stream messages as
 * a line with point markers (right axis). Days without a row count as zero and the chart
 * always spans at least two weeks, so a first day is one bar among days, not a slab
 * across the whole chart; both axes start at zero.
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

  var MIN_DAYS = 14;
  var DAY_MS = 86400000;
  function isoDay(ms) { return new Date(ms).toISOString().slice(0, 10); }
  var byDay = {};
  days.forEach(function (d) { byDay[d.time] = d; });
  var last = days.length ? Date.parse(days[days.length - 1].time + "T00:00:00Z") : Date.parse(isoDay(Date.now()) + "T00:00:00Z");
  var first = days.length ? Date.parse(days[0].time + "T00:00:00Z") : last;
  first = Math.min(first, last - (MIN_DAYS - 1) * DAY_MS);
  var filled = [];
  for (var t = first; t <= last; t += DAY_MS) {
    filled.push(byDay[isoDay(t)] || { time: isoDay(t), api: 0, stream: 0 });
  }
  var counted = days.length;
  days = filled;
  // Counts are never negative: each axis starts at zero however flat the data is.
  function fromZero(original) {
    var info = original();
    if (!info) return { priceRange: { minValue: 0, maxValue: 1 } };
    info.priceRange.minValue = 0;
    info.priceRange.maxValue = Math.max(1, info.priceRange.maxValue);
    return info;
  }

  var theme = QS.chartTheme();
  var chart = LC.createChart(node, QS.chartOptions({
    handleScroll: false, handleScale: false,
    timeScale: { timeVisible: false, rightOffset: 1 },
    leftPriceScale: { visible: true, scaleMargins: { top: 0.1, bottom: 0 } },
    rightPriceScale: { visible: true, scaleMargins: { top: 0.1, bottom: 0 } },
  }));
  var whole = { type: "custom", minMove: 1, formatter: function (v) { return QS.number(Math.round(v), 0); } };
  var requests = chart.addSeries(LC.HistogramSeries, {
    color: theme.primary, priceScaleId: "left", title: "API requests", priceLineVisible: false,
    lastValueVisible: false, priceFormat: whole, autoscaleInfoProvider: fromZero,
  });
  var messages = chart.addSeries(LC.LineSeries, {
    color: theme.warning, lineWidth: 2, title: "Stream messages", priceLineVisible: false,
    priceScaleId: "right", lastValueVisible: false, pointMarkersVisible: true,
    priceFormat: whole, autoscaleInfoProvider: fromZero,
  });
  requests.setData(days.map(function (d) { return { time: d.time, value: d.api }; }));
  messages.setData(days.map(function (d) { return { time: d.time, value: d.stream }; }));
  chart.timeScale().fitContent();
  node.setAttribute("data-points", String(counted));
  node.setAttribute("data-days", String(days.length));

  QS.onThemeChange(function () {
    theme = QS.chartTheme();
    QS.themeChart(chart);
    requests.applyOptions({ color: theme.primary });
    messages.applyOptions({ color: theme.warning });
  });
})();
