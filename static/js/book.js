/*
 * A book kept from the stream (docs/streaming.md, "Books"): a snapshot, or any whole
 * book (the REST answer), replaces it; an update carries only the changed levels
 * ([price, size], size 0 = gone) and is applied. Returns the whole book, best first,
 * in the shape the ladder renders ({bids, asks, ts}).
 */
(function () {
  "use strict";

  function HeldBook() {
    this.bids = new Map();
    this.asks = new Map();
    this.ts = null;
    this.whole = false; // an update means nothing until a whole book arrived
  }

  HeldBook.prototype.replace = function (data) {
    this.bids = new Map((data.bids || []).map(function (l) { return [l[0], l]; }));
    this.asks = new Map((data.asks || []).map(function (l) { return [l[0], l]; }));
    this.ts = data.ts;
    this.whole = true;
    return this.view();
  };

  HeldBook.prototype.apply = function (data) {
    if (!this.whole) return null;
    [["bids", this.bids], ["asks", this.asks]].forEach(function (pair) {
      (data[pair[0]] || []).forEach(function (level) {
        if (level[1]) pair[1].set(level[0], level);
        else pair[1].delete(level[0]);
      });
    });
    this.ts = data.ts;
    return this.view();
  };

  /** A stream frame of a book channel: snapshot or (v1.0) whole update replaces. */
  HeldBook.prototype.frame = function (type, data) {
    return type === "snapshot" || data.checksum === undefined ? this.replace(data) : this.apply(data);
  };

  HeldBook.prototype.view = function () {
    return {
      bids: Array.from(this.bids.values()).sort(function (a, b) { return b[0] - a[0]; }),
      asks: Array.from(this.asks.values()).sort(function (a, b) { return a[0] - b[0]; }),
      ts: this.ts,
    };
  };

  window.QSHeldBook = HeldBook;
})();
