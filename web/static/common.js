/* Shared helpers for the status page: JSON fetch, polling, DOM building, local time display. */
(function () {
  "use strict";

  var VS = {};

  /** GET a JSON document; rejects with an Error carrying .status for non-2xx answers. */
  VS.getJSON = function (url) {
    return fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Accept": "application/json" }
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (body) {
        if (!resp.ok) {
          var err = new Error((body && body.error) || ("HTTP " + resp.status));
          err.status = resp.status;
          throw err;
        }
        return body;
      });
    });
  };

  /** Call task() (returning a promise) every intervalMs, never overlapping, paused while the tab is hidden. */
  VS.poll = function (task, intervalMs) {
    var timer = null;
    var stopped = false;
    function schedule() {
      if (!stopped) { timer = window.setTimeout(run, intervalMs); }
    }
    function run() {
      if (document.hidden) { schedule(); return; }
      Promise.resolve().then(task).then(schedule, schedule);
    }
    schedule();
    return { stop: function () { stopped = true; window.clearTimeout(timer); } };
  };

  /** Create an element: VS.el("a", {href: "/x", className: "c"}, [children or text]). */
  VS.el = function (tag, props, children) {
    var node = document.createElement(tag);
    var key;
    props = props || {};
    for (key in props) {
      if (!Object.prototype.hasOwnProperty.call(props, key) || props[key] === null || props[key] === undefined) {
        continue;
      }
      if (key === "className" || key === "textContent" || key === "href" || key === "src" || key === "alt") {
        node[key] = props[key];
      } else {
        node.setAttribute(key, props[key]);
      }
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) { return; }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  };

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  /** "2026-11-21 11:00:05" in the tablet's local time for an ISO timestamp (unchanged text if unparsable). */
  VS.formatTime = function (iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return iso || ""; }
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  };

  /** Rewrite every <time data-local datetime=...> under root into local time. */
  VS.localTimes = function (root) {
    var nodes = (root || document).querySelectorAll("time[data-local]");
    Array.prototype.forEach.call(nodes, function (node) {
      node.textContent = VS.formatTime(node.getAttribute("datetime"));
    });
  };

  VS.setText = function (node, value) {
    if (node) {
      var text = value === null || value === undefined ? "" : String(value);
      if (node.textContent !== text) { node.textContent = text; }
    }
  };

  window.VS = VS;
  document.addEventListener("DOMContentLoaded", function () { VS.localTimes(document); });
})();
