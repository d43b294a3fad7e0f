/*
 * Browser client of /ws/v1/stream (docs/api.md, docs/streaming.md), authenticated by the
 * session cookie. What it adds on top of a WebSocket:
 *   - reconnects with exponential backoff and jitter, and resubscribes;
 *   - tracks `seq` per channel and reports a gap (a missed message, a `lagged`
 *     notice, or a reconnect) through onGap, so the page refills from REST;
 *   - a watchdog: heartbeats arrive every 15 s on an idle socket, so silence for
 *     much longer means a dead connection even if the browser has not noticed;
 *   - respects the plan: subscribes to at most limits.subscriptions channels, in the
 *     order the page listed them, and reports the delay from the welcome frame.
 */
(function () {
  "use strict";

  var BACKOFF_START_MS = 1000;
  var BACKOFF_MAX_MS = 30000;
  var QUOTA_BACKOFF_MS = 30000; // 4008: another tab holds the plan's connection
  var WATCHDOG_MS = 40000;

  function StreamClient(options) {
    this.url = options.url;
    this.handlers = options.handlers || {};
    this.wanted = [];
    this.subscribed = {};
    this.seq = {};
    this.limits = null;
    this.plan = null;
    this.socket = null;
    this.attempt = 0;
    this.stopped = false;
    this.reconnectTimer = null;
    this.watchdogTimer = null;
    this.everConnected = false;
    this.lastMessageAt = 0;
  }

  StreamClient.prototype.emit = function (name) {
    var handler = this.handlers[name];
    if (handler) handler.apply(null, Array.prototype.slice.call(arguments, 1));
  };

  StreamClient.prototype.status = function (state, detail) {
    this.emit("status", state, detail || {});
  };

  StreamClient.prototype.start = function () {
    this.stopped = false;
    this.connect();
  };

  StreamClient.prototype.stop = function () {
    this.stopped = true;
    window.clearTimeout(this.reconnectTimer);
    window.clearTimeout(this.watchdogTimer);
    if (this.socket) this.socket.close(1000, "page closed");
  };

  /** Replace the channel set (e.g. another instrument was picked). */
  StreamClient.prototype.setChannels = function (channels) {
    var old = Object.keys(this.subscribed);
    this.wanted = channels.slice();
    this.seq = {};
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN || !this.limits) return;
    if (old.length) this.send({ op: "unsubscribe", channels: old });
    this.subscribed = {};
    this.subscribeWanted();
  };

  StreamClient.prototype.send = function (message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  };

  StreamClient.prototype.subscribeWanted = function () {
    var max = this.limits && this.limits.subscriptions ? this.limits.subscriptions : this.wanted.length;
    var channels = this.wanted.slice(0, max);
    var skipped = this.wanted.slice(max);
    if (skipped.length) this.emit("skipped", skipped);
    if (!channels.length) return;
    channels.forEach(function (channel) { this.subscribed[channel] = true; }, this);
    this.send({ op: "subscribe", channels: channels });
  };

  StreamClient.prototype.connect = function () {
    var self = this;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket;
    this.status("connecting", { attempt: this.attempt });
    try {
      socket = new WebSocket(scheme + window.location.host + this.url);
    } catch (e) {
      this.scheduleReconnect(BACKOFF_START_MS);
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", function () {
      self.lastMessageAt = Date.now();
      self.armWatchdog();
    });
    socket.addEventListener("message", function (event) {
      self.lastMessageAt = Date.now();
      self.armWatchdog();
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      self.handle(message);
    });
    socket.addEventListener("close", function (event) {
      if (self.socket !== socket) return;
      self.socket = null;
      self.subscribed = {};
      window.clearTimeout(self.watchdogTimer);
      if (self.stopped) return;
      self.onClose(event.code, event.reason);
    });
    // An "error" event is always followed by "close", which decides what to do.
  };

  StreamClient.prototype.onClose = function (code, reason) {
    if (code === 4001) {
      // The session ended (signed out elsewhere, or removed from the organization).
      this.status("signed_out", { code: code, reason: reason });
      return;
    }
    if (code === 4008) {
      this.status("quota", { code: code, reason: reason, retryMs: QUOTA_BACKOFF_MS });
      this.scheduleReconnect(QUOTA_BACKOFF_MS);
      return;
    }
    var delay = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * Math.pow(2, this.attempt));
    delay = Math.round(delay / 2 + Math.random() * (delay / 2)); // jitter: no reconnect storms
    this.status("reconnecting", { code: code, reason: reason, retryMs: delay });
    this.scheduleReconnect(delay);
  };

  StreamClient.prototype.scheduleReconnect = function (delay) {
    var self = this;
    this.attempt += 1;
    window.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = window.setTimeout(function () { self.connect(); }, delay);
  };

  StreamClient.prototype.armWatchdog = function () {
    var self = this;
    window.clearTimeout(this.watchdogTimer);
    this.watchdogTimer = window.setTimeout(function () {
      if (self.socket) self.socket.close(4000, "no heartbeat");
    }, WATCHDOG_MS);
  };

  StreamClient.prototype.checkSeq = function (channel, seq, isSnapshot) {
    var last = this.seq[channel];
    this.seq[channel] = seq;
    if (isSnapshot || last === undefined) return;
    if (seq !== last + 1) this.emit("gap", channel, { from: last + 1, to: seq - 1 });
  };

  StreamClient.prototype.handle = function (message) {
    switch (message.type) {
      case "welcome":
        this.limits = message.limits || {};
        this.plan = message.plan;
        this.everConnected = true;
        this.attempt = 0;
        this.seq = {};
        this.status("connected", { plan: this.plan, limits: this.limits });
        this.subscribeWanted();
        // Whatever happened before this socket (a drop, or a slow first connect after the
        // page loaded its history) is missing: the page refills from REST.
        this.emit("resumed");
        break;
      case "snapshot":
      case "update":
        if (!this.subscribed[message.channel]) return; // a late frame of an old instrument
        this.checkSeq(message.channel, message.seq, message.type === "snapshot");
        this.emit("data", message.channel, message.type, message.data, message.seq);
        break;
      case "lagged":
        this.seq[message.channel] = message.to_seq;
        this.emit("gap", message.channel, { from: message.from_seq, to: message.to_seq, missed: message.missed });
        break;
      case "error":
        this.emit("error", message);
        break;
      default:
        break; // subscribed, unsubscribed, heartbeat, pong
    }
  };

  window.QSStream = StreamClient;
})();
