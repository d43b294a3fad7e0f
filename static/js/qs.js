/*
 * Shared helpers for the app pages (dashboard, options, backtests, usage, landing):
 * calling our REST API with the session, reading the theme for charts, formatting.
 * Exposes one global, window.QS. No inline scripts anywhere (strict CSP): pages pass
 * data through data-* attributes and these files read them.
 */
(function () {
  "use strict";

  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  /** An API error with the one error shape of docs/api.md: {error: {code, message, details}}. */
  function ApiError(status, body) {
    var error = (body && body.error) || {};
    this.name = "ApiError";
    this.status = status;
    this.code = error.code || "http_" + status;
    this.message = error.message || "The server answered " + status + ".";
    this.details = error.details || {};
  }
  ApiError.prototype = Object.create(Error.prototype);

  /**
   * fetch() against our own API with the session cookie. Writes carry the CSRF token:
   * DRF's SessionAuthentication enforces it, which is what stops other sites from
   * using a visitor's session.
   */
  async function api(path, options) {
    options = options || {};
    var headers = { Accept: "application/json" };
    var init = { method: options.method || "GET", credentials: "same-origin", headers: headers };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["X-CSRFToken"] = cookie("csrftoken");
      init.body = JSON.stringify(options.body);
    }
    if (options.signal) init.signal = options.signal;
    var response = await fetch(path, init);
    var body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  function query(params) {
    var parts = [];
    Object.keys(params).forEach(function (key) {
      var value = params[key];
      if (value !== undefined && value !== null && value !== "") {
        parts.push(encodeURIComponent(key) + "=" + encodeURIComponent(value));
      }
    });
    return parts.length ? "?" + parts.join("&") : "";
  }

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  /** Chart colours from the site's design tokens, so charts follow light and dark. */
  function chartTheme() {
    return {
      background: cssVar("--surface", "#ffffff"),
      text: cssVar("--text-muted", "#4a5568"),
      grid: cssVar("--border", "#d5dce5"),
      up: cssVar("--up", "#05795a"),
      down: cssVar("--down", "#c0262d"),
      primary: cssVar("--primary", "#1d4ed8"),
      warning: cssVar("--warning", "#8a4b08"),
    };
  }

  function chartOptions(extra) {
    var theme = chartTheme();
    var options = {
      autoSize: true,
      layout: {
        background: { type: "solid", color: theme.background },
        textColor: theme.text,
        fontFamily: cssVar("--font-sans", "system-ui, sans-serif"),
        // The library's logo injects a <style> element, which our CSP refuses; pages with
        // charts credit TradingView in text instead (templates/web/_chart_credit.html).
        attributionLogo: false,
      },
      grid: { vertLines: { color: theme.grid }, horzLines: { color: theme.grid } },
      rightPriceScale: { borderColor: theme.grid },
      timeScale: { borderColor: theme.grid, timeVisible: true, secondsVisible: false, rightOffset: 4 },
      crosshair: { mode: 0 },
    };
    return Object.assign(options, extra || {});
  }

  /** Re-apply colours when the theme changes (toggle in the footer, or the system's). */
  function onThemeChange(callback) {
    new MutationObserver(callback).observe(document.documentElement, {
      attributes: true,
      attributeFilter: ["data-theme"],
    });
    if (window.matchMedia) {
      var media = window.matchMedia("(prefers-color-scheme: dark)");
      if (media.addEventListener) media.addEventListener("change", callback);
    }
  }

  function themeChart(chart) {
    var theme = chartTheme();
    chart.applyOptions({
      layout: { background: { type: "solid", color: theme.background }, textColor: theme.text },
      grid: { vertLines: { color: theme.grid }, horzLines: { color: theme.grid } },
      rightPriceScale: { borderColor: theme.grid },
      timeScale: { borderColor: theme.grid },
    });
  }

  /** Chart time: lightweight-charts wants UTC seconds; the API speaks milliseconds. */
  function seconds(ms) {
    return Math.floor(ms / 1000);
  }

  function decimals(value) {
    var abs = Math.abs(value);
    if (abs >= 1000) return 2;
    if (abs >= 1) return 4;
    return 6;
  }

  function price(value, digits) {
    if (value === null || value === undefined || isNaN(value)) return "–";
    var d = digits === undefined ? decimals(value) : digits;
    return Number(value).toLocaleString("en-US", {
      minimumFractionDigits: Math.min(d, 2),
      maximumFractionDigits: d,
    });
  }

  function number(value, digits) {
    if (value === null || value === undefined || isNaN(value)) return "–";
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 4 : digits });
  }

  function percent(value, digits) {
    if (value === null || value === undefined || isNaN(value)) return "–";
    return (value * 100).toFixed(digits === undefined ? 2 : digits) + " %";
  }

  function clock(ms) {
    var d = new Date(ms);
    return d.toISOString().substring(11, 19);
  }

  function duration(seconds) {
    if (seconds >= 3600 && seconds % 3600 === 0) return seconds / 3600 + " h";
    if (seconds >= 60 && seconds % 60 === 0) return seconds / 60 + " min";
    return seconds + " s";
  }

  /** Replace an element's children with text-only nodes (never innerHTML: no injection). */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "className") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  /** Every message inside an error's details, flattened (never raw JSON on a page). */
  function messagesOf(value) {
    if (value === null || value === undefined) return [];
    if (Array.isArray(value)) return value.reduce(function (all, v) { return all.concat(messagesOf(v)); }, []);
    if (typeof value === "object") return Object.keys(value).reduce(function (all, k) { return all.concat(messagesOf(value[k])); }, []);
    return [String(value)];
  }

  function errorText(error) {
    if (error && error.details && typeof error.details === "object") {
      var fields = Object.keys(error.details)
        .filter(function (key) { return key !== "plans"; })
        .map(function (key) {
          return messagesOf(error.details[key]).join(" ");
        });
      if (fields.length && error.code === "invalid") return fields.join(" ");
    }
    return (error && error.message) || "Something went wrong.";
  }


  // --- field errors: next to the field, in the words of its label -------------------------
  function fieldLabel(input) {
    var label = input.id && document.querySelector("label[for='" + input.id + "']");
    return label ? label.textContent.replace(/\s+/g, " ").trim() : input.name;
  }

  /** Remove every message placed by fieldError inside `form`. */
  function fieldErrorsClear(form) {
    Array.prototype.forEach.call(form.querySelectorAll(".field-errors[data-for]"), function (node) { node.remove(); });
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid=true]"), function (input) {
      input.removeAttribute("aria-invalid");
      var ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) { return id && id !== input.id + "-error"; });
      if (ids.length) input.setAttribute("aria-describedby", ids.join(" "));
      else input.removeAttribute("aria-describedby");
    });
  }

  /** Show `text` under `input`, marked invalid and described by it (screen readers read it). */
  function fieldError(input, text) {
    var id = input.id + "-error";
    var node = document.getElementById(id);
    if (!node) {
      node = el("p", { className: "field-errors", id: id, "data-for": input.name });
      input.insertAdjacentElement("afterend", node);
    }
    node.textContent = text;
    input.setAttribute("aria-invalid", "true");
    var ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
    if (ids.indexOf(id) < 0) ids.push(id);
    input.setAttribute("aria-describedby", ids.join(" "));
  }

  /** The browser's own checks (required, min, max, a number) in plain words, per field.
   * Returns the number of invalid fields; the first one gets the focus. */
  function fieldsCheck(form) {
    var bad = [];
    Array.prototype.forEach.call(form.querySelectorAll("input, select, textarea"), function (input) {
      if (input.disabled || input.closest("[hidden]") || !input.validity || input.validity.valid) return;
      var v = input.validity;
      var text;
      if (v.valueMissing) text = "Enter a value.";
      else if (v.badInput || v.typeMismatch) text = "Enter a number.";
      else if (v.rangeUnderflow) text = "Must be at least " + input.min + ".";
      else if (v.rangeOverflow) text = "Must be at most " + input.max + ".";
      else if (v.stepMismatch) text = "Enter a whole number.";
      else text = input.validationMessage;
      fieldError(input, text);
      bad.push(input);
    });
    if (bad.length) bad[0].focus();
    return bad.length;
  }

  /**
   * An API `invalid` error placed next to the fields it names. `fields` maps the API's
   * field paths ("fee_bp", "params.slow") to inputs; `words` turns internal names in the
   * API's messages into the labels people see. Returns what could not be placed.
   */
  function apiFieldErrors(form, error, fields, words) {
    var rest = [];
    function humane(text) {
      var names = Object.keys(words || {});
      if (names.length) {
        // One pass, so a replacement is never replaced again ("the slow window").
        text = text.replace(new RegExp("\\b(" + names.join("|") + ")\\b", "g"), function (name) { return words[name]; });
      }
      return text.charAt(0).toUpperCase() + text.slice(1);
    }
    function walk(details, path) {
      Object.keys(details || {}).forEach(function (key) {
        var value = details[key];
        var name = path ? path + "." + key : key;
        if (value && typeof value === "object" && !Array.isArray(value)) return walk(value, name);
        if (Array.isArray(value) && value.some(function (v) { return v && typeof v === "object"; })) {
          return value.forEach(function (v) { if (v && typeof v === "object") walk(v, name); });
        }
        var text = humane((Array.isArray(value) ? value : [value]).join(" "));
        var input = fields[name] || fields[key];
        if (input && !input.closest("[hidden]")) fieldError(input, text);
        else if (key !== "plans") rest.push(text);
      });
    }
    if (error && error.code === "invalid" && error.details && typeof error.details === "object") {
      walk(error.details.fields || error.details, ""); // {"fields": {...}}: see docs/api.md
      var first = form.querySelector("[aria-invalid=true]");
      if (first) first.focus();
      return rest.join(" ");
    }
    return errorText(error);
  }

  window.QS = {
    api: api,
    ApiError: ApiError,
    query: query,
    chartTheme: chartTheme,
    chartOptions: chartOptions,
    themeChart: themeChart,
    onThemeChange: onThemeChange,
    seconds: seconds,
    price: price,
    number: number,
    percent: percent,
    clock: clock,
    duration: duration,
    el: el,
    errorText: errorText,
    fieldError: fieldError,
    fieldErrorsClear: fieldErrorsClear,
    fieldsCheck: fieldsCheck,
    fieldLabel: fieldLabel,
    apiFieldErrors: apiFieldErrors,
  };
})();
