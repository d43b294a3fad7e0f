/*
 * The dashboard's consolidated panel (templates/web/_consolidated.html): the best bid
 * and ask across venues, each with its venue, and the merged ladder with every venue's
 * size at each level. Polled over REST every POLL_MS while the page is visible: the
 * panel must not take one of the plan's stream connections.
 *
 * It starts on DOMContentLoaded: the panel's deferred script sits in the page body, so it
 * runs before qs.js, which the page's scripts block loads after it.
 */
document.addEventListener("DOMContentLoaded", function () {
  "use strict";

  var POLL_MS = 2000;
  var root = document.getElementById("consolidated");
  if (!root || !window.QS) return;
  var pair = root.getAttribute("data-pair");
  var depth = Number(root.getAttribute("data-depth")) || 10;
  var $ = function (id) { return document.getElementById(id); };
  var base = "";

  function pairSet(next) {
    pair = next;
    base = "/api/v1/markets/consolidated/" + encodeURIComponent(pair);
    $("consolidated-pair").textContent = pair;
  }
  pairSet(pair);

  // The pair of the instrument picked on the dashboard ("exchange:BASE-QUOTE").
  var picker = $("instrument-picker");
  if (picker) {
    picker.addEventListener("change", function () {
      var symbol = (picker.value || "").split(":")[1];
      if (symbol && symbol !== pair) {
        pairSet(symbol);
        poll();
      }
    });
  }

  function side(body, name) {
    return name === "bid"
      ? QS.price(body.bid) + " " + (body.bid_venue || "")
      : QS.price(body.ask) + " " + (body.ask_venue || "");
  }

  function venueText(sizes) {
    return Object.keys(sizes).map(function (v) { return v + " " + QS.number(sizes[v], 4); }).join(", ");
  }

  function rows(levels, cls, best) {
    var out = levels.map(function (level) {
      var row = QS.el("tr", { className: "ladder-" + cls }, [
        QS.el("td", { className: "num " + (cls === "bid" ? "up" : "down"), text: QS.price(level[0]) }),
        QS.el("td", { className: "num", text: QS.number(level[1], 4) }),
        QS.el("td", { className: "small", text: venueText(level[2] || {}) }),
      ]);
      if (level[0] === best) row.setAttribute("aria-current", "true");
      return row;
    });
    if (cls === "ask") out.reverse(); // best ask next to the best bid
    return out;
  }

  function render(bbo, book) {
    var venues = bbo.venues || [];
    $("consolidated-venues").textContent = venues.length ? "Venues: " + venues.join(", ") : "No venue live";
    $("consolidated-bid").textContent = bbo.bid == null ? "–" : side(bbo, "bid");
    $("consolidated-ask").textContent = bbo.ask == null ? "–" : side(bbo, "ask");
    $("consolidated-asks").replaceChildren.apply($("consolidated-asks"), rows(book.asks || [], "ask", bbo.ask));
    $("consolidated-bids").replaceChildren.apply($("consolidated-bids"), rows(book.bids || [], "bid", bbo.bid));
    $("consolidated-empty").hidden = (book.bids || []).length + (book.asks || []).length > 0;
  }

  async function poll() {
    if (document.hidden) return;
    try {
      var both = await Promise.all([
        QS.api(base + "/bbo"),
        QS.api(base + "/book" + QS.query({ depth: depth })),
      ]);
      render(both[0], both[1]);
    } catch (error) {
      ["consolidated-asks", "consolidated-bids"].forEach(function (id) { $(id).replaceChildren(); });
      ["consolidated-bid", "consolidated-ask"].forEach(function (id) { $(id).textContent = "–"; });
      $("consolidated-venues").textContent = "";
      $("consolidated-empty").hidden = false;
      $("consolidated-empty").textContent =
        error && error.status === 404 ? "No venue offers " + pair + " yet." : "The consolidated view is unavailable.";
    }
  }

  poll();
  window.setInterval(poll, POLL_MS);
});
