/* Result page: wait for unfinished results; zoom (shared by all panels, synced scrolling); tinted mask layer
   over the input with an opacity slider. */
(function () {
  "use strict";

  var VS = window.VS;
  var ZOOM_STEPS = [0.25, 0.33, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8];
  var MASK_TINT = [255, 214, 0];   // yellow: distinct from the overlay's green-cyan and from the red retina

  function waitUntilFinished(head) {
    var url = head.getAttribute("data-status-url");
    VS.poll(function () {
      return VS.getJSON(url).then(function (r) {
        if (r.state === "done" || r.state === "failed") { window.location.reload(); }
      }, function () { /* transient: keep polling */ });
    }, 2000);
  }

  function referenceWidth(viewer) {
    var best = 0;
    Array.prototype.forEach.call(viewer.querySelectorAll("img.zoomable"), function (img) {
      best = Math.max(best, img.naturalWidth || 0);
    });
    return best;
  }

  function setupZoom(viewer) {
    var stages = viewer.querySelectorAll(".stage");
    var frames = viewer.querySelectorAll(".frame");
    var label = document.getElementById("zoom-label");
    var zoom = null;   // null = fit to panel

    function apply() {
      var ref = referenceWidth(viewer);
      Array.prototype.forEach.call(stages, function (stage) {
        stage.style.width = (zoom === null || !ref) ? "" : Math.round(ref * zoom) + "px";
      });
      viewer.classList.toggle("zoomed", zoom !== null && zoom > 1);
      VS.setText(label, zoom === null ? "Fit" : Math.round(zoom * 100) + " %");
    }

    function currentScale() {
      var ref = referenceWidth(viewer);
      if (zoom !== null) { return zoom; }
      return ref ? frames[0].clientWidth / ref : 1;
    }

    function step(direction) {
      var scale = currentScale();
      var next = null;
      var i;
      if (direction > 0) {
        for (i = 0; i < ZOOM_STEPS.length; i++) { if (ZOOM_STEPS[i] > scale + 1e-6) { next = ZOOM_STEPS[i]; break; } }
        zoom = next === null ? ZOOM_STEPS[ZOOM_STEPS.length - 1] : next;
      } else {
        for (i = ZOOM_STEPS.length - 1; i >= 0; i--) { if (ZOOM_STEPS[i] < scale - 1e-6) { next = ZOOM_STEPS[i]; break; } }
        zoom = next === null ? ZOOM_STEPS[0] : next;
      }
    }

    viewer.querySelectorAll("[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        var action = button.getAttribute("data-zoom");
        if (action === "fit") { zoom = null; }
        else if (action === "in") { step(1); }
        else if (action === "out") { step(-1); }
        else { zoom = parseFloat(action) || 1; }
        apply();
      });
    });

    // Keep the panels looking at the same spot while scrolling a zoomed view.
    var syncing = false;
    Array.prototype.forEach.call(frames, function (frame) {
      frame.addEventListener("scroll", function () {
        if (syncing) { return; }
        syncing = true;
        Array.prototype.forEach.call(frames, function (other) {
          if (other !== frame) { other.scrollLeft = frame.scrollLeft; other.scrollTop = frame.scrollTop; }
        });
        window.requestAnimationFrame(function () { syncing = false; });
      });
    });
    apply();
  }

  function tintedMask(img) {
    var canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    var ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    var data = ctx.getImageData(0, 0, canvas.width, canvas.height);
    var px = data.data;
    for (var i = 0; i < px.length; i += 4) {
      var v = px[i];               // mask is gray: 0 background, 255 vessel
      px[i] = MASK_TINT[0]; px[i + 1] = MASK_TINT[1]; px[i + 2] = MASK_TINT[2]; px[i + 3] = v;
    }
    ctx.putImageData(data, 0, 0);
    canvas.className = "mask-canvas";
    canvas.setAttribute("aria-label", "Vessel mask layer");
    return canvas;
  }

  function setupOverlay() {
    var slider = document.getElementById("opacity");
    var label = document.getElementById("opacity-label");
    var maskImg = document.getElementById("mask-layer");
    if (!slider || !maskImg) { return; }
    var layer = maskImg;

    function applyOpacity() {
      layer.style.opacity = String(slider.value / 100);
      VS.setText(label, slider.value + " %");
    }

    function upgrade() {
      try {
        var canvas = tintedMask(maskImg);
        maskImg.parentNode.insertBefore(canvas, maskImg.nextSibling);
        maskImg.hidden = true;
        layer = canvas;
      } catch (err) {
        layer = maskImg;   // keep the plain (screen-blended) mask if the canvas is unavailable
      }
      applyOpacity();
    }

    slider.addEventListener("input", applyOpacity);
    if (maskImg.complete && maskImg.naturalWidth) { upgrade(); } else { maskImg.addEventListener("load", upgrade); }
    applyOpacity();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var head = document.getElementById("result-head");
    var state = head ? head.getAttribute("data-state") : null;
    if (state === "queued" || state === "processing") { waitUntilFinished(head); }
    var viewer = document.getElementById("viewer");
    if (viewer) {
      setupZoom(viewer);
      setupOverlay();
    }
  });
})();
