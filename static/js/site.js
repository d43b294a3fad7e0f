/*
 * Site-wide behaviour, kept in a file of our own so the Content-Security-Policy can
 * forbid inline scripts. Every page works without it; it only adds conveniences.
 *
 * Loaded in <head> without `defer` on purpose: the stored theme must be applied
 * before the first paint, or dark-mode users would see a white flash.
 */
(function () {
  "use strict";

  var THEME_KEY = "qs-theme";
  var root = document.documentElement;

  function storedTheme() {
    try {
      return window.localStorage.getItem(THEME_KEY);
    } catch (e) {
      return null; // storage disabled: follow the system preference
    }
  }

  function applyTheme(theme) {
    if (theme === "light" || theme === "dark") {
      root.setAttribute("data-theme", theme);
    } else {
      root.removeAttribute("data-theme");
    }
  }

  applyTheme(storedTheme());

  // Lets the CSS keep the narrow-screen account menu closed until initAccountMenu has run,
  // without hiding it from visitors who have no JavaScript.
  root.classList.add("js");

  function themeLabel(theme) {
    if (theme === "light") return "Theme: light";
    if (theme === "dark") return "Theme: dark";
    return "Theme: system";
  }

  function initThemeToggle() {
    var button = document.querySelector("[data-theme-toggle]");
    if (!button) return;
    button.hidden = false;
    button.textContent = themeLabel(storedTheme());
    button.addEventListener("click", function () {
      // system -> light -> dark -> system
      var next = { light: "dark", dark: "" }[storedTheme() || ""];
      if (next === undefined) next = "light";
      try {
        if (next) window.localStorage.setItem(THEME_KEY, next);
        else window.localStorage.removeItem(THEME_KEY);
      } catch (e) {
        /* the choice just lasts for this page */
      }
      applyTheme(next);
      button.textContent = themeLabel(next);
    });
  }

  // The organization switcher submits as soon as another organization is chosen;
  // without JavaScript its own button does the same.
  function initAutoSubmit() {
    var selects = document.querySelectorAll("select[data-auto-submit]");
    Array.prototype.forEach.call(selects, function (select) {
      var form = select.form;
      if (!form) return;
      var button = form.querySelector("[data-auto-submit-button]");
      if (button) button.classList.add("visually-hidden");
      select.addEventListener("change", function () {
        if (typeof form.requestSubmit === "function") form.requestSubmit();
        else form.submit();
      });
    });
  }

  // Forms marked data-confirm ask before doing something destructive.
  function initConfirm() {
    document.addEventListener("submit", function (event) {
      var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
      if (message && !window.confirm(message)) event.preventDefault();
    });
  }

  // The header's account menu is a <details> rendered open. Whether it is collapsible is
  // decided by the CSS alone (the "Menu" toggle is displayed or not), so the breakpoint
  // lives in one place: wide screens keep it open, narrow ones start closed.
  function initAccountMenu() {
    var menu = document.querySelector("[data-account-menu]");
    if (!menu) return;
    var toggle = menu.querySelector("summary");
    var narrow = null;

    function sync() {
      var collapsible = window.getComputedStyle(toggle).display !== "none";
      if (collapsible === narrow) return;
      narrow = collapsible;
      menu.open = !collapsible;
    }

    function close(returnFocus) {
      if (!narrow || !menu.open) return;
      menu.open = false;
      if (returnFocus) toggle.focus();
    }

    sync();
    menu.setAttribute("data-ready", "");
    window.addEventListener("resize", sync);
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape") close(menu.contains(document.activeElement));
    });
    document.addEventListener("click", function (event) {
      if (!menu.contains(event.target)) close(false);
    });
    // Tabbing past the last item closes the panel so it does not cover the page.
    menu.addEventListener("focusout", function (event) {
      if (event.relatedTarget && !menu.contains(event.relatedTarget)) close(false);
    });
  }

  // On phones the sidebar is a horizontally scrolling strip; bring the current page into view.
  function revealCurrentNavItem() {
    var nav = document.querySelector(".app-nav");
    var current = nav && nav.querySelector("[aria-current=page]");
    if (!current || nav.scrollWidth <= nav.clientWidth) return;
    var navBox = nav.getBoundingClientRect();
    var itemBox = current.getBoundingClientRect();
    nav.scrollLeft += itemBox.left - navBox.left - (nav.clientWidth - itemBox.width) / 2;
  }

  function init() {
    initThemeToggle();
    initAutoSubmit();
    initConfirm();
    initAccountMenu();
    revealCurrentNavItem();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
