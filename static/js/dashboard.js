/*
 * The markets dashboard: instrument picker, candlestick chart with volume, trade tape,
 * order-book ladder, OFI and VPIN panels, feed status.
 *
 * Data flow: history from REST (the same endpoints customers use), then the WebSocket
 * stream extends it. After a reconnect, a `seq` gap or a `lagged` notice the page asks
 * REST for what it missed (from the last bar or trade it holds), so the chart never
 * silently loses a minute. On a delayed plan everything, REST history included, is
 * drawn `delay_seconds` behind, so history and stream meet without a jump.
 *
 * Delayed plans before their stream speaks: a delay line starts empty (just after the
 * product started, in embedded mode, or for a channel nobody watched), so for up to
 * `delay_seconds` the stream has nothing old enough to send. Meanwhile the page reads
 * the same delayed view from stored history over REST (trades every few seconds, the
 * book less often) and builds the minute in progress from those trades, so the chart,
 * the tape, last, bid and ask move together from the first second. It stops polling as
 * soon as the stream delivers trades itself.
 *
 * Intervals: the chart shows 1m to 1d candles. The stream only carries 1-minute candles;
 * the page keeps the minutes of the bucket in progress and folds them into its candle.
 */
(function () {
  "use strict";

  var root = document.getElementById("dashboard");
  if (!root || !window.LightweightCharts || !window.QS) return;
  var LC = window.LightweightCharts;
  var QS = window.QS;

  var CANDLE_HISTORY = 300; // minutes shown on load
  var TAPE_ROWS = 40;
  var BOOK_LEVELS = 12;
  var ANALYTICS_HISTORY_MS = 3 * 60 * 60 * 1000;
  var MINUTE_MS = 60 * 1000;
  var INTERVALS = { "1m": 1, "5m": 5, "15m": 15, "1h": 60, "4h": 240, "1d": 1440 };
  var INTERVAL_NAMES = { "1m": "1-minute", "5m": "5-minute", "15m": "15-minute", "1h": "1-hour", "4h": "4-hour", "1d": "daily" };
  var POLL_TRADES_MS = 3000; // delayed plans, while their stream is still silent
  var POLL_BOOK_MS = 12000;
  var STREAM_QUIET_MS = 5000; // no stream trade for this long: the delayed view polls REST

  var $ = function (id) { return document.getElementById(id); };
  var state = {
    market: null, // {exchange, symbol, pricePrecision}
    delaySeconds: parseInt(root.getAttribute("data-delay-seconds") || "0", 10) || 0,
    analytics: root.getAttribute("data-analytics") === "1",
    lastCandleMs: null,
    lastTradeMs: null,
    tradeIds: {},
    tradeRows: [],
    lagMs: null,
    loadToken: 0,
    refilling: false,
    interval: "1m",
    bucket: null, // {start, minutes: {minuteMs: candle}} of the candle in progress
    exchanges: [],
    streamTradeAt: 0, // Date.now() of the last trade the stream delivered
    bookStreamAt: 0,
    polledBookAt: 0,
    feedDown: false,
  };
  try {
    var savedInterval = window.localStorage.getItem("qs-interval");
    if (INTERVALS[savedInterval]) state.interval = savedInterval;
  } catch (e) { /* the default */ }
  function intervalMs() { return INTERVALS[state.interval] * MINUTE_MS; }

  // --- charts ---------------------------------------------------------------------------
  var theme = QS.chartTheme();
  var priceChart = LC.createChart($("price-chart"), QS.chartOptions());
  var candles = priceChart.addSeries(LC.CandlestickSeries, {
    upColor: theme.up, downColor: theme.down, borderUpColor: theme.up, borderDownColor: theme.down,
    wickUpColor: theme.up, wickDownColor: theme.down,
  });
  var volume = priceChart.addSeries(LC.HistogramSeries, {
    priceScaleId: "volume", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false,
  });
  priceChart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });

  function smallChart(id, color) {
    var chart = LC.createChart($(id), QS.chartOptions({ handleScroll: false, handleScale: false }));
    return { chart: chart, color: color };
  }
  var ofi = smallChart("ofi-chart");
  var ofiSeries = ofi.chart.addSeries(LC.HistogramSeries, { priceLineVisible: false });
  var vpin = smallChart("vpin-chart");
  var vpinSeries = vpin.chart.addSeries(LC.LineSeries, {
    color: theme.primary, lineWidth: 2, priceLineVisible: false,
    priceFormat: { type: "custom", formatter: function (v) { return v.toFixed(3); } },
  });

  QS.onThemeChange(function () {
    theme = QS.chartTheme();
    [priceChart, ofi.chart, vpin.chart].forEach(QS.themeChart);
    candles.applyOptions({
      upColor: theme.up, downColor: theme.down, borderUpColor: theme.up, borderDownColor: theme.down,
      wickUpColor: theme.up, wickDownColor: theme.down,
    });
    vpinSeries.applyOptions({ color: theme.primary });
  });

  // Series only accept times at or after their last point; a late or replayed record
  // must never throw inside a message handler, so every live write goes through here.
  var lastTime = new Map();
  function seriesReset(series, points) {
    series.setData(points);
    lastTime.set(series, points.length ? points[points.length - 1].time : null);
  }
  function seriesPut(series, point) {
    var last = lastTime.get(series);
    if (last !== null && last !== undefined && point.time < last) return false;
    series.update(point);
    lastTime.set(series, point.time);
    return true;
  }

  // --- helpers ----------------------------------------------------------------------------
  function marketPath(kind) {
    var m = state.market;
    return "/api/v1/markets/" + encodeURIComponent(m.exchange) + "/" + encodeURIComponent(m.symbol) + "/" + kind;
  }
  function analyticsPath(kind) {
    var m = state.market;
    return "/api/v1/analytics/" + encodeURIComponent(m.exchange) + "/" + encodeURIComponent(m.symbol) + "/" + kind;
  }
  /** The newest moment this plan may see: now, or now minus the stream delay. */
  function visibleNow() {
    return Date.now() - state.delaySeconds * 1000;
  }
  function showError(text) {
    var box = $("dashboard-error");
    box.textContent = text;
    box.hidden = !text;
  }
  function candlePoint(c) {
    return { time: QS.seconds(c.ts), open: c.open, high: c.high, low: c.low, close: c.close };
  }
  function volumePoint(c) {
    return {
      time: QS.seconds(c.ts), value: c.volume || 0,
      color: (c.close >= c.open ? theme.up : theme.down) + "80",
    };
  }
  function countCandles(n) {
    var chart = $("price-chart");
    chart.setAttribute("data-candles", String(n + parseInt(chart.getAttribute("data-candles") || "0", 10)));
  }

  // --- candles ------------------------------------------------------------------------------
  function bucketStart(ms) {
    return ms - (ms % intervalMs());
  }
  /** The bucket in progress, folded from its minutes (the stream sends 1-minute candles). */
  function bucketCandle() {
    var b = state.bucket;
    var keys = Object.keys(b.minutes).map(Number).sort(function (x, y) { return x - y; });
    if (!keys.length) return null;
    var out = null;
    keys.forEach(function (k) {
      var m = b.minutes[k];
      if (!out) {
        out = { ts: b.start, open: m.open, high: m.high, low: m.low, close: m.close, volume: m.volume || 0 };
      } else {
        out.high = Math.max(out.high, m.high);
        out.low = Math.min(out.low, m.low);
        out.close = m.close;
        out.volume += m.volume || 0;
      }
    });
    return out;
  }

  async function candlesLoad(token) {
    var end = visibleNow();
    var body = await QS.api(marketPath("candles") + QS.query({ interval: state.interval, limit: CANDLE_HISTORY, end: end }));
    if (token !== state.loadToken) return;
    var rows = (body.data || []).filter(function (c) { return c.ts <= end; });
    state.bucket = null;
    if (state.interval !== "1m" && rows.length) {
      // The bucket in progress is rebuilt from its minutes, so live minutes fold into it.
      var start = rows[rows.length - 1].ts;
      var minutes = await QS.api(marketPath("candles") + QS.query({
        interval: "1m", start: start, end: end, limit: INTERVALS[state.interval],
      }));
      if (token !== state.loadToken) return;
      state.bucket = { start: start, minutes: {} };
      (minutes.data || []).forEach(function (m) { if (m.ts <= end) state.bucket.minutes[m.ts] = m; });
      var folded = bucketCandle();
      if (folded) rows[rows.length - 1] = folded;
    } else if (rows.length) {
      var last = rows[rows.length - 1];
      state.bucket = { start: last.ts, minutes: {} };
      state.bucket.minutes[last.ts] = last;
    }
    seriesReset(candles, rows.map(candlePoint));
    seriesReset(volume, rows.map(volumePoint));
    state.lastCandleMs = rows.length ? rows[rows.length - 1].ts : null;
    $("price-chart").setAttribute("data-candles", "0");
    priceChart.timeScale().scrollToRealTime();
    legend(rows[rows.length - 1]);
  }

  /** Draw one 1-minute candle into the chart's interval; `live` counts it (data-candles). */
  function candleApply(c, live) {
    var start = bucketStart(c.ts);
    if (state.lastCandleMs !== null && start < state.lastCandleMs) return;
    if (!state.bucket || state.bucket.start !== start) state.bucket = { start: start, minutes: {} };
    state.bucket.minutes[c.ts] = c;
    var folded = bucketCandle();
    if (seriesPut(candles, candlePoint(folded))) {
      seriesPut(volume, volumePoint(folded));
      if (live === true) countCandles(1);
      state.lastCandleMs = folded.ts;
      legend(folded);
    }
  }

  /** Delayed plans before their stream speaks: the minute in progress, from its trades. */
  function candleFromTrades(list) {
    list.forEach(function (t) {
      var minute = t.ts - (t.ts % MINUTE_MS);
      var bucket = state.bucket;
      var known = bucket && bucket.start === bucketStart(minute) ? bucket.minutes[minute] : null;
      if (known && !known.fromTrades) return; // a stored or streamed candle already has it
      var c = known || { ts: minute, open: t.price, high: t.price, low: t.price, close: t.price, volume: 0, fromTrades: true };
      c.high = Math.max(c.high, t.price);
      c.low = Math.min(c.low, t.price);
      c.close = t.price;
      c.volume += t.size;
      candleApply(c, false);
    });
    var chart = $("price-chart");
    chart.setAttribute("data-updates", String(1 + parseInt(chart.getAttribute("data-updates") || "0", 10)));
  }

  function legend(c) {
    if (!c) {
      $("chart-legend").textContent = state.feedDown ? "" : "No candles yet for this market.";
      return;
    }
    $("chart-legend").textContent =
      "O " + QS.price(c.open) + "  H " + QS.price(c.high) + "  L " + QS.price(c.low) + "  C " + QS.price(c.close);
  }

  /** After a drop: ask REST for everything from the last minute we hold up to now. */
  async function candlesRefill() {
    if (state.lastCandleMs === null || !state.market) return;
    var token = state.loadToken;
    var body = await QS.api(marketPath("candles") + QS.query({
      interval: "1m", start: state.lastCandleMs, end: visibleNow(), limit: 5000,
    }));
    if (token !== state.loadToken) return;
    (body.data || []).forEach(function (c) { candleApply(c, false); });
  }

  // --- trades -------------------------------------------------------------------------------
  function tradeRow(t) {
    var side = t.side === "sell" ? "down" : "up";
    return QS.el("tr", { className: "tape-" + side }, [
      QS.el("td", { className: "mono", text: QS.clock(t.ts) }),
      QS.el("td", { className: "num " + side, text: QS.price(t.price) }),
      QS.el("td", { className: "num", text: QS.number(t.size, 6) }),
    ]);
  }

  function tradesAdd(list) {
    var body = $("trade-tape");
    var fresh = list.filter(function (t) {
      if (state.tradeIds[t.id]) return false;
      state.tradeIds[t.id] = true;
      return true;
    });
    if (!fresh.length) return;
    var fragment = document.createDocumentFragment();
    fresh.slice(-TAPE_ROWS).reverse().forEach(function (t) { fragment.appendChild(tradeRow(t)); });
    body.insertBefore(fragment, body.firstChild);
    while (body.rows.length > TAPE_ROWS) body.deleteRow(body.rows.length - 1);
    var last = fresh[fresh.length - 1];
    state.lastTradeMs = Math.max(state.lastTradeMs || 0, last.ts);
    $("quote-last").textContent = QS.price(last.price);
    $("tape-empty").hidden = true;
    if (Object.keys(state.tradeIds).length > 5000) state.tradeIds = {};
  }

  /** Trades from `start` to `end`, following `next` a few pages (a busy minute is long). */
  async function tradesFetch(token, start, end) {
    var out = [];
    var url = marketPath("trades") + QS.query({ start: start, end: end, limit: 1000 });
    for (var page = 0; url && page < 5; page++) {
      var body = await QS.api(url);
      if (token !== state.loadToken) return null;
      out = out.concat(body.data || []);
      url = body.next ? new URL(body.next, window.location.href).pathname + new URL(body.next, window.location.href).search : null;
    }
    return out;
  }

  async function tradesLoad(token, start) {
    var end = visibleNow();
    // A delayed plan builds the minute in progress from its trades: from the minute's start.
    var from = start || (state.delaySeconds > 0 ? end - (end % MINUTE_MS) : end - 5 * 60 * 1000);
    var list = await tradesFetch(token, from, end);
    if (list === null) return;
    if (state.delaySeconds > 0) candleFromTrades(list.filter(function (t) { return !state.tradeIds[t.id]; }));
    tradesAdd(list.slice(-TAPE_ROWS * 5));
  }

  // --- order book ---------------------------------------------------------------------------
  function ladderRows(levels, maxTotal, side) {
    var fragment = document.createDocumentFragment();
    var total = 0;
    var rows = levels.map(function (level) {
      total += level[1];
      var row = QS.el("tr", { className: "ladder-" + side }, [
        QS.el("td", { className: "num " + (side === "bid" ? "up" : "down"), text: QS.price(level[0]) }),
        QS.el("td", { className: "num", text: QS.number(level[1], 4) }),
        QS.el("td", { className: "num depth", text: QS.number(total, 4) }),
      ]);
      // The depth bar: a CSS custom property set through the CSSOM (allowed by the CSP,
      // unlike an inline style attribute).
      row.style.setProperty("--depth", Math.min(100, (total / maxTotal) * 100).toFixed(1) + "%");
      return row;
    });
    if (side === "ask") rows.reverse(); // best ask next to the spread, in the middle
    rows.forEach(function (row) { fragment.appendChild(row); });
    return fragment;
  }

  function bookRender(book) {
    var bids = (book.bids || []).slice(0, BOOK_LEVELS);
    var asks = (book.asks || []).slice(0, BOOK_LEVELS);
    var sum = function (levels) { return levels.reduce(function (a, l) { return a + l[1]; }, 0); };
    var maxTotal = Math.max(sum(bids), sum(asks)) || 1;
    var asksBody = $("book-asks");
    var bidsBody = $("book-bids");
    asksBody.replaceChildren(ladderRows(asks, maxTotal, "ask"));
    bidsBody.replaceChildren(ladderRows(bids, maxTotal, "bid"));
    $("book-empty").hidden = bids.length + asks.length > 0;
    if (bids.length && asks.length) {
      var spread = asks[0][0] - bids[0][0];
      $("book-spread").textContent = "Spread " + QS.price(spread);
      $("quote-bid").textContent = QS.price(bids[0][0]);
      $("quote-ask").textContent = QS.price(asks[0][0]);
    }
  }

  var heldBook = new window.QSHeldBook();

  async function bookLoad(token) {
    // For a delayed plan the API answers the book as it stood at the delay's cutoff.
    try {
      var body = await QS.api(marketPath("book") + QS.query({ depth: BOOK_LEVELS }));
      if (token === state.loadToken) bookRender(heldBook.replace(body));
    } catch (error) {
      if (error.status !== 404) throw error; // 404: no book received yet; the stream brings it
    }
  }

  async function tickerLoad(token) {
    // Delayed plans get the ticker as it stood at the cutoff (rebuilt from stored data).
    try {
      var t = await QS.api(marketPath("ticker"));
      if (token !== state.loadToken) return;
      $("quote-last").textContent = QS.price(t.last);
      var change = $("quote-change");
      change.textContent = t.change_pct_24h === null ? "–" : QS.percent(t.change_pct_24h);
      change.className = "num " + (t.change_pct_24h >= 0 ? "up" : "down");
      if (t.bid !== null) $("quote-bid").textContent = QS.price(t.bid);
      if (t.ask !== null) $("quote-ask").textContent = QS.price(t.ask);
    } catch (error) {
      if (error.status !== 404) throw error;
    }
  }

  // --- analytics ----------------------------------------------------------------------------
  function firstNumber(record, names) {
    for (var i = 0; i < names.length; i++) {
      var v = record[names[i]];
      if (typeof v === "number" && isFinite(v)) return v;
    }
    return null;
  }
  function recordTs(record) {
    return record.ts !== undefined ? record.ts : record.start !== undefined ? record.start : record.end;
  }
  function ofiPoint(record) {
    var v = firstNumber(record, ["ofi", "value"]);
    if (v === null) return null;
    var ms = recordTs(record);
    return { time: QS.seconds(ms - (ms % 60000)), value: v, color: v >= 0 ? theme.up : theme.down };
  }
  function vpinPoint(record) {
    var v = firstNumber(record, ["vpin", "value"]);
    if (v === null) return null;
    return { time: QS.seconds(recordTs(record)), value: v };
  }
  function points(rows, make) {
    var out = [];
    rows.forEach(function (row) {
      var p = make(row);
      if (!p) return;
      if (out.length && out[out.length - 1].time >= p.time) {
        if (out[out.length - 1].time === p.time) out[out.length - 1] = p;
        return;
      }
      out.push(p);
    });
    return out;
  }
  function analyticsNote(kind, text) {
    var note = $(kind + "-note");
    note.textContent = text || "";
    note.hidden = !text;
  }

  async function analyticsLoad(token, kind, params, series, make) {
    analyticsNote(kind, "");
    if (!state.analytics) {
      seriesReset(series, []);
      analyticsNote(kind, "Your plan does not include analytics. See the pricing page to upgrade.");
      return;
    }
    var end = visibleNow();
    try {
      var body = await QS.api(analyticsPath(kind) + QS.query(Object.assign({ start: end - ANALYTICS_HISTORY_MS, end: end }, params)));
      if (token !== state.loadToken) return;
      var rows = Array.isArray(body) ? body : body.data || [];
      var pts = points(rows, make);
      seriesReset(series, pts);
      $(kind + "-last").textContent = pts.length ? "Last " + QS.number(pts[pts.length - 1].value, 4) : "";
      if (kind === "vpin") {
        state.vpin = { buckets: rows.length, window: body.window || null, bucketVolume: body.bucket_volume || null };
        if (!pts.length) vpinProgress();
      } else if (!pts.length) {
        analyticsNote(kind, "Not enough data yet for this market.");
      }
    } catch (error) {
      if (token !== state.loadToken) return;
      seriesReset(series, []);
      if (kind === "vpin" && error.status === 400) {
        // No live VPIN stored yet, so no default bucket size: the live computation is
        // still filling its first bucket.
        state.vpin = { buckets: 0, window: null, bucketVolume: null };
        vpinProgress();
        return;
      }
      analyticsNote(kind, error.status === 404
        ? (state.feedDown ? feedDownText() : "Not available for this market yet.") : QS.errorText(error));
    }
  }

  /** VPIN needs `window` full volume buckets before its first value: say how far it is. */
  function vpinProgress() {
    var v = state.vpin;
    if (state.feedDown) {
      analyticsNote("vpin", feedDownText());
    } else if (!v || !v.buckets) {
      analyticsNote("vpin", "Filling the first volume bucket: VPIN needs " + (v && v.window ? v.window : "50") +
        " buckets of traded volume before its first value.");
    } else {
      analyticsNote("vpin", "Filling volume buckets: " + v.buckets + " of " + v.window +
        " before the first VPIN value" + (v.bucketVolume ? " (" + QS.number(v.bucketVolume, 4) + " per bucket)." : "."));
    }
    $("vpin-progress").hidden = false;
    $("vpin-progress").max = (v && v.window) || 50;
    $("vpin-progress").value = (v && v.buckets) || 0;
  }

  function analyticsApply(kind, records) {
    var series = kind === "ofi" ? ofiSeries : vpinSeries;
    var make = kind === "ofi" ? ofiPoint : vpinPoint;
    (Array.isArray(records) ? records : [records]).forEach(function (record) {
      var p = make(record);
      if (p && seriesPut(series, p)) {
        $(kind + "-last").textContent = "Last " + QS.number(p.value, 4);
        analyticsNote(kind, "");
        if (kind === "vpin") $("vpin-progress").hidden = true;
      } else if (!p && kind === "vpin" && state.vpin && firstNumber(record, ["bucket_volume"]) !== null) {
        state.vpin.buckets += 1; // a bucket without a value yet: closer to the first VPIN
        state.vpin.window = record.window || state.vpin.window;
        state.vpin.bucketVolume = record.bucket_volume;
        vpinProgress();
      }
    });
  }

  // --- the stream -----------------------------------------------------------------------------
  function channels() {
    var m = state.market;
    var suffix = "." + m.exchange + "." + m.symbol;
    var list = ["candles_1m" + suffix, "trades" + suffix, "book" + suffix];
    // Subscribing to analytics on a plan without them closes the socket (4003): ask only
    // when the plan includes them.
    if (state.analytics) list.push("ofi" + suffix, "vpin" + suffix);
    return list;
  }

  function setStatus(text, kind, stateName) {
    var badge = $("stream-status");
    badge.textContent = text;
    badge.className = "badge " + (kind ? "badge-" + kind : "");
    badge.setAttribute("data-state", stateName);
  }

  function showDelay(seconds) {
    state.delaySeconds = seconds;
    var badge = $("delay-badge");
    var note = $("delay-note");
    if (seconds > 0) {
      delayBadgeTick();
      badge.hidden = false;
      note.textContent = "Your plan shows market data " + QS.duration(seconds) +
        " late: prices, trades, the book and the chart are as of the time in the badge. " +
        "Upgrade on the pricing page for real-time data.";
      note.hidden = false;
    } else {
      badge.hidden = true;
      note.hidden = true;
    }
  }
  /** "Delayed 15 min · as of 12:03:07": the instant the whole page shows, in UTC. */
  function delayBadgeTick() {
    if (state.delaySeconds > 0) {
      $("delay-badge").textContent = "Delayed " + QS.duration(state.delaySeconds) + " · as of " + QS.clock(visibleNow()) + " UTC";
    }
  }

  function showLag(records) {
    var list = Array.isArray(records) ? records : [records];
    var last = list[list.length - 1];
    if (!last || typeof last.ts !== "number") return;
    state.lagMs = Math.max(0, Date.now() - last.ts - state.delaySeconds * 1000);
    $("stream-lag").textContent = "lag " + (state.lagMs < 1000 ? state.lagMs + " ms" : (state.lagMs / 1000).toFixed(1) + " s");
  }

  function onData(channel, type, data) {
    var kind = channel.split(".")[0];
    if (kind === "candles_1m") {
      (Array.isArray(data) ? data : [data]).forEach(function (c) { candleApply(c, true); });
    } else if (kind === "trades") {
      state.streamTradeAt = Date.now();
      tradesAdd(Array.isArray(data) ? data : [data]);
      showLag(data);
    } else if (kind === "book") {
      // Updates carry changed levels only: the held book applies them (book.js).
      var book = heldBook.frame(type, data);
      if (!book) return;
      state.bookStreamAt = Date.now();
      bookRender(book);
    } else if (kind === "ofi" || kind === "vpin") {
      analyticsApply(kind, data);
    }
  }

  async function refill() {
    if (state.refilling || !state.market) return;
    state.refilling = true;
    try {
      await candlesRefill();
      await tradesLoad(state.loadToken, state.lastTradeMs || undefined);
    } catch (error) {
      showError("Could not refill the chart after a reconnect: " + QS.errorText(error));
    } finally {
      state.refilling = false;
    }
  }

  var stream = new window.QSStream({
    url: root.getAttribute("data-stream-path"),
    handlers: {
      status: function (name, detail) {
        if (name === "connected") {
          var delay = (detail.limits && detail.limits.delay_seconds) || 0;
          // "Live" only when it is: a delayed plan's socket is connected, not live.
          setStatus(delay ? "Connected" : "Live", delay ? "info" : "success", "connected");
          showDelay(delay);
        } else if (name === "connecting") {
          setStatus(detail.attempt ? "Reconnecting…" : "Connecting…", "warning", "connecting");
        } else if (name === "reconnecting") {
          setStatus("Disconnected, retrying in " + Math.ceil(detail.retryMs / 1000) + " s", "warning", "reconnecting");
        } else if (name === "quota") {
          setStatus("Connection limit reached", "danger", "quota");
          showError("Your plan's stream connections are all in use (another tab or program?). Retrying in " +
            Math.round(detail.retryMs / 1000) + " s.");
        } else if (name === "signed_out") {
          setStatus("Signed out", "danger", "signed_out");
          showError("The stream ended your session. Sign in again to resume live data.");
        }
      },
      data: onData,
      gap: function () { refill(); },
      resumed: function () { showError(""); refill(); },
      skipped: function (list) {
        showError("Your plan allows fewer stream subscriptions than this page uses; not live: " + list.join(", "));
      },
      error: function (message) {
        if (message.code === "unknown_channel") return; // a market without a live feed
        showError(message.message || "Stream error.");
      },
    },
  });

  // --- instrument picker --------------------------------------------------------------------
  function marketFromValue(value) {
    var parts = (value || "").split(":");
    return parts.length === 2 ? { exchange: parts[0], symbol: parts[1] } : null;
  }

  function exchangeOf(id) {
    return state.exchanges.filter(function (x) { return x.id === id; })[0] || null;
  }
  /** No runner reports on the exchange ("unknown") or it reports a lost connection. */
  function feedIsDown(exchange) {
    return !!exchange && !(exchange.status && exchange.status.connected);
  }
  function feedDownText() {
    var x = state.market && exchangeOf(state.market.exchange);
    return ((x && x.name) || (state.market && state.market.exchange) || "This") + " feed not connected";
  }

  /** Every panel back to empty: nothing of the previous market may stay on screen. */
  function panelsClear() {
    state.lastCandleMs = null;
    state.lastTradeMs = null;
    state.bucket = null;
    state.tradeIds = {};
    state.vpin = null;
    state.streamTradeAt = 0;
    state.bookStreamAt = 0;
    state.polledBookAt = 0;
    heldBook = new window.QSHeldBook();
    seriesReset(candles, []);
    seriesReset(volume, []);
    seriesReset(ofiSeries, []);
    seriesReset(vpinSeries, []);
    $("price-chart").setAttribute("data-candles", "0");
    $("chart-legend").textContent = "";
    $("trade-tape").replaceChildren();
    $("book-asks").replaceChildren();
    $("book-bids").replaceChildren();
    $("book-spread").textContent = "";
    ["ofi-last", "vpin-last", "stream-lag"].forEach(function (id) { $(id).textContent = ""; });
    ["quote-last", "quote-change", "quote-bid", "quote-ask", "feed-health"].forEach(function (id) { $(id).textContent = "–"; });
    $("quote-change").className = "num";
    analyticsNote("ofi", "");
    analyticsNote("vpin", "");
    $("vpin-progress").hidden = true;
    var down = state.feedDown ? feedDownText() : "";
    $("tape-empty").textContent = down || "Waiting for trades…";
    $("book-empty").textContent = down || "Waiting for the book…";
    $("tape-empty").hidden = false;
    $("book-empty").hidden = false;
    var notice = $("feed-notice");
    notice.textContent = down ? down + ": no live data for " + state.market.symbol +
      ". Stored history, if any, is shown; the panels fill when the feed reconnects." : "";
    notice.hidden = !down;
  }

  function chartTitle() {
    var m = state.market;
    $("chart-title").textContent = m.symbol + " on " + m.exchange + ", " + INTERVAL_NAMES[state.interval] + " candles";
  }

  async function marketSelect(market) {
    state.market = market;
    state.loadToken += 1;
    var token = state.loadToken;
    var x = exchangeOf(market.exchange);
    state.feedDown = feedIsDown(x);
    panelsClear();
    if (x) $("feed-health").textContent = feedHealthText(x.status);
    chartTitle();
    try {
      window.localStorage.setItem("qs-market", market.exchange + ":" + market.symbol);
    } catch (e) { /* not remembered */ }
    var url = new URL(window.location.href);
    url.searchParams.set("market", market.exchange + ":" + market.symbol);
    window.history.replaceState(null, "", url);
    showError("");
    stream.setChannels(channels());
    try {
      await candlesLoad(token);
      await Promise.all([
        tradesLoad(token),
        bookLoad(token),
        tickerLoad(token),
        analyticsLoad(token, "ofi", { interval: "1m" }, ofiSeries, ofiPoint),
        analyticsLoad(token, "vpin", {}, vpinSeries, vpinPoint),
      ]);
      if (token === state.loadToken && !state.lastCandleMs) legend(null);
    } catch (error) {
      if (token === state.loadToken) showError(QS.errorText(error));
    }
  }

  async function intervalSelect(name) {
    if (!INTERVALS[name]) return;
    state.interval = name;
    try { window.localStorage.setItem("qs-interval", name); } catch (e) { /* the default */ }
    Array.prototype.forEach.call(document.querySelectorAll("#interval-picker button"), function (button) {
      button.setAttribute("aria-pressed", button.getAttribute("data-interval") === name ? "true" : "false");
    });
    if (!state.market) return;
    chartTitle();
    state.loadToken += 1;
    var token = state.loadToken;
    try {
      await candlesLoad(token);
    } catch (error) {
      if (token === state.loadToken) showError(QS.errorText(error));
    }
  }

  /** Delayed plans while their stream has nothing old enough to send: read the same
   * delayed view over REST (see the top of this file). */
  async function delayedPoll() {
    if (!state.market || state.delaySeconds <= 0 || document.hidden || state.refilling) return;
    var now = Date.now();
    if (now - state.streamTradeAt < STREAM_QUIET_MS) return; // the stream delivers itself
    var token = state.loadToken;
    try {
      var end = visibleNow();
      var from = state.lastTradeMs !== null ? state.lastTradeMs : end - (end % MINUTE_MS);
      var list = await tradesFetch(token, from, end);
      if (list === null || token !== state.loadToken || now - state.streamTradeAt < STREAM_QUIET_MS) return;
      candleFromTrades(list.filter(function (t) { return !state.tradeIds[t.id]; }));
      tradesAdd(list);
      if (now - state.bookStreamAt >= STREAM_QUIET_MS && now - state.polledBookAt >= POLL_BOOK_MS) {
        state.polledBookAt = now;
        await bookLoad(token);
      }
    } catch (error) {
      if (error.status === 429) return; // the plan's request budget: try again later
      if (token === state.loadToken) showError(QS.errorText(error));
    }
  }

  function feedHealthText(status) {
    if (!status || status.state === "unknown") return "not connected";
    var text = status.connected ? "connected" : status.state || "disconnected";
    if (typeof status.last_message_age_ms === "number") text += ", last message " + (status.last_message_age_ms / 1000).toFixed(1) + " s ago";
    return text;
  }

  async function feedHealthRefresh(exchanges) {
    var list = exchanges;
    if (!list) {
      try {
        list = (await QS.api("/api/v1/exchanges")).data || [];
      } catch (e) {
        return;
      }
    }
    state.exchanges = list;
    var current = state.market && exchangeOf(state.market.exchange);
    $("feed-health").textContent = current ? feedHealthText(current.status) : "–";
    var down = feedIsDown(current);
    if (down !== state.feedDown && state.market) marketSelect(state.market); // reconnected or lost
  }

  async function pickerInit() {
    var picker = $("instrument-picker");
    var results = await Promise.all([QS.api("/api/v1/exchanges"), QS.api("/api/v1/instruments")]);
    var exchanges = results[0].data || [];
    state.exchanges = exchanges;
    var instruments = (results[1].data || []).filter(function (i) { return i.active; });
    var names = {};
    exchanges.forEach(function (x) { names[x.id] = x.name; });
    var groups = {};
    instruments.forEach(function (i) {
      (groups[i.exchange] = groups[i.exchange] || []).push(i);
    });
    picker.replaceChildren();
    Object.keys(groups).sort().forEach(function (exchange) {
      var group = QS.el("optgroup", { label: names[exchange] || exchange });
      groups[exchange].forEach(function (i) {
        group.appendChild(QS.el("option", { value: i.exchange + ":" + i.symbol, text: i.symbol + " · " + (names[exchange] || exchange) }));
      });
      picker.appendChild(group);
    });
    if (!instruments.length) {
      picker.appendChild(QS.el("option", { text: "No instruments available" }));
      return;
    }
    var wanted = new URL(window.location.href).searchParams.get("market");
    if (!wanted) {
      try { wanted = window.localStorage.getItem("qs-market"); } catch (e) { wanted = null; }
    }
    var values = instruments.map(function (i) { return i.exchange + ":" + i.symbol; });
    // Default: the first market whose exchange feed is connected, so a first visit is live.
    var live = instruments.filter(function (i) {
      var x = exchanges.filter(function (e) { return e.id === i.exchange; })[0];
      return x && x.status && x.status.connected;
    });
    var fallback = live.length ? live[0].exchange + ":" + live[0].symbol : values[0];
    picker.value = values.indexOf(wanted) >= 0 ? wanted : fallback;
    picker.disabled = false;
    picker.addEventListener("change", function () {
      var market = marketFromValue(picker.value);
      if (market) marketSelect(market);
    });
    await marketSelect(marketFromValue(picker.value));
    feedHealthRefresh(exchanges);
    window.setInterval(feedHealthRefresh, 15000);
  }

  // The stream first (the welcome frame tells the delay), the picker loads REST meanwhile.
  showDelay(state.delaySeconds);
  Array.prototype.forEach.call(document.querySelectorAll("#interval-picker button"), function (button) {
    button.setAttribute("aria-pressed", button.getAttribute("data-interval") === state.interval ? "true" : "false");
    button.addEventListener("click", function () { intervalSelect(button.getAttribute("data-interval")); });
  });
  window.setInterval(delayBadgeTick, 1000);
  window.setInterval(delayedPoll, POLL_TRADES_MS);
  stream.start();
  pickerInit().catch(function (error) { showError(QS.errorText(error)); });
  window.addEventListener("pagehide", function () { stream.stop(); });
  // For the browser tests and for curious users in the console.
  window.QSDashboard = { stream: stream, state: state, refill: refill, intervalSelect: intervalSelect };
})();
