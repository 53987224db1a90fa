/* Dashboard: refresh status numbers and the newest results every 2 s from /api/status and /api/results. */
(function () {
  "use strict";

  var VS = window.VS;
  var INTERVAL_MS = 2000;
  var RESULTS_URL = "/api/results?limit=12";
  var HEALTH_CLASSES = ["health-ok", "health-degraded", "health-failed"];

  function bind(name) { return document.querySelector('[data-bind="' + name + '"]'); }

  function setHealth(health) {
    var nodes = document.querySelectorAll('[data-bind-class="health"], #health-dot');
    Array.prototype.forEach.call(nodes, function (node) {
      HEALTH_CLASSES.forEach(function (c) { node.classList.remove(c); });
      node.classList.add("health-" + (HEALTH_CLASSES.indexOf("health-" + health) >= 0 ? health : "failed"));
    });
  }

  function runtimeLabel(runtime) {
    if (runtime === "sim") { return "Simulator"; }
    if (runtime === "acl") { return "Ascend NPU"; }
    return runtime || "unknown";
  }

  function renderStages(latency) {
    var list = document.getElementById("stage-latency");
    if (!list) { return; }
    var stages = Object.keys(latency || {}).filter(function (k) { return typeof latency[k] === "number"; });
    var peak = stages.reduce(function (m, k) { return Math.max(m, latency[k]); }, 0);
    var items = stages.map(function (stage) {
      var bar = VS.el("span", { className: "bar" });
      bar.style.width = (peak > 0 ? (100 * latency[stage] / peak) : 0).toFixed(1) + "%";
      return VS.el("li", {}, [
        VS.el("span", { className: "bar-label", textContent: stage }),
        VS.el("span", { className: "bar-track" }, [bar]),
        VS.el("span", { className: "bar-value", textContent: latency[stage].toFixed(1) })
      ]);
    });
    if (!items.length) { items = [VS.el("li", { className: "muted", textContent: "No images processed yet." })]; }
    list.replaceChildren.apply(list, items);
  }

  function renderLastHour(counts) {
    var list = document.getElementById("last-hour");
    if (!list) { return; }
    var keys = Object.keys(counts || {});
    var rows = keys.map(function (key) {
      return VS.el("div", { className: "kv" }, [
        VS.el("dt", { textContent: key.replace(/_/g, " ") }),
        VS.el("dd", { textContent: String(counts[key]) })
      ]);
    });
    if (!rows.length) { rows = [VS.el("div", { className: "kv muted" }, [VS.el("dt", { textContent: "No data" })])]; }
    list.replaceChildren.apply(list, rows);
  }

  function renderStatus(s) {
    var model = s.model || {};
    var info = s.runtime_info || {};
    VS.setText(bind("health"), s.health || "unknown");
    VS.setText(bind("health_reason"), s.health_reason || "");
    VS.setText(bind("pipeline_state"), s.pipeline_state || "unknown");
    VS.setText(bind("paused_reason"), s.paused_reason || "");
    VS.setText(bind("runtime_label"), runtimeLabel(s.runtime));
    VS.setText(bind("soc"), info.soc || "");
    VS.setText(bind("device_state"), s.device_state || "unknown");
    VS.setText(bind("model_name"), model.name || "unknown");
    VS.setText(bind("model_version"), model.version || "?");
    VS.setText(bind("queued"), s.queued);
    VS.setText(bind("processed"), s.processed);
    VS.setText(bind("failed"), s.failed);
    VS.setText(bind("throughput"), (typeof s.throughput_ipm === "number" ? s.throughput_ipm : 0).toFixed(1));
    setHealth(s.health);
    renderStages(s.stage_latency_ms);
    renderLastHour(s.last_hour);
  }

  function resultCard(item) {
    var thumb = item.thumb_url
      ? VS.el("img", { src: item.thumb_url, alt: "Result " + (item.source || item.id), loading: "lazy" })
      : VS.el("span", { className: "thumb-placeholder", textContent: item.state });
    var sub = [VS.el("span", { className: "chip chip-" + item.state, textContent: item.state })];
    if (item.created) {
      sub.push(VS.el("time", { datetime: item.created, textContent: VS.formatTime(item.created) }));
    }
    var meta = [
      VS.el("span", { className: "result-source", title: item.source || "", textContent: item.source || item.id }),
      VS.el("span", { className: "result-sub" }, sub)
    ];
    if (typeof item.vessel_density_fov === "number") {
      meta.push(VS.el("span", { className: "result-density",
        textContent: "vessel density " + (item.vessel_density_fov * 100).toFixed(1) + " %" }));
    }
    var card = VS.el("a", { className: "result-card state-" + item.state, href: item.url, "data-id": item.id },
      [VS.el("span", { className: "thumb" }, [thumb]), VS.el("span", { className: "result-meta" }, meta)]);
    card.setAttribute("data-key", item.id + ":" + item.state + ":" + (item.thumb_url ? "t" : ""));
    return card;
  }

  function renderResults(items) {
    var grid = document.getElementById("newest-results");
    if (!grid) { return; }
    var existing = {};
    Array.prototype.forEach.call(grid.querySelectorAll(".result-card"), function (card) {
      existing[card.getAttribute("data-key")] = card;
    });
    var cards = items.map(function (item) {
      var key = item.id + ":" + item.state + ":" + (item.thumb_url ? "t" : "");
      return existing[key] || resultCard(item);   // reuse cards so thumbnails are not fetched again
    });
    if (!cards.length) {
      cards = [VS.el("p", { className: "muted", id: "no-results",
        textContent: "No results yet. Images dropped into the capture folder, or uploaded, appear here." })];
    }
    grid.replaceChildren.apply(grid, cards);
  }

  function showError(message) {
    var box = document.getElementById("poll-error");
    if (!box) { return; }
    VS.setText(box, message || "");
    box.hidden = !message;
  }

  function refresh() {
    return Promise.all([VS.getJSON("/api/status"), VS.getJSON(RESULTS_URL)]).then(function (answers) {
      renderStatus(answers[0]);
      renderResults(answers[1].items || []);
      showError(null);
    }, function (err) {
      if (err && err.status === 401) {
        showError("Session expired: reload the page and sign in again.");
      } else {
        showError("Lost contact with the appliance (" + (err && err.message ? err.message : "network error") +
          "). Retrying…");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".result-card").forEach(function (card) {
      var state = (card.className.match(/state-(\w+)/) || [])[1];
      var hasThumb = !!card.querySelector(".thumb img");
      card.setAttribute("data-key", card.getAttribute("data-id") + ":" + state + ":" + (hasThumb ? "t" : ""));
    });
    VS.poll(refresh, INTERVAL_MS);
  });
})();
