/* Upload page: XHR upload with a progress bar, then poll /api/results/<id> until done or failed and open
   the result page. Without JavaScript the form still posts (no progress shown). */
(function () {
  "use strict";

  var VS = window.VS;
  var POLL_MS = 1000;
  var GIVE_UP_MS = 10 * 60 * 1000;

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("upload-form");
    var input = document.getElementById("image");
    var button = document.getElementById("upload-button");
    var zone = document.getElementById("dropzone");
    var fileName = document.getElementById("file-name");
    var box = document.getElementById("upload-status");
    var progress = document.getElementById("upload-progress");
    var message = document.getElementById("upload-message");
    if (!form || !input) { return; }

    function say(text, percent) {
      box.hidden = false;
      VS.setText(message, text);
      if (typeof percent === "number") { progress.value = percent; }
    }

    function fail(text) {
      say(text);
      message.className = "alert alert-error";
      button.disabled = false;
    }

    input.addEventListener("change", function () {
      VS.setText(fileName, input.files.length ? input.files[0].name : "or drop it here");
    });
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.add("dragover"); });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragover"); });
    });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        VS.setText(fileName, input.files[0].name);
      }
    });

    function waitForResult(answer) {
      var started = Date.now();
      var poller = VS.poll(function () {
        return VS.getJSON(answer.status_url).then(function (r) {
          if (r.state === "done" || r.state === "failed") {
            poller.stop();
            say(r.state === "done" ? "Done. Opening the result…" : "Processing failed. Opening the details…", 100);
            window.location.assign(answer.result_url);
          } else {
            say(r.state === "processing" ? "Processing on the " + runtimeWord() + "…" : "Queued for processing…", 100);
          }
        }, function (err) {
          if (err && err.status === 401) { poller.stop(); fail("Session expired: sign in again."); }
        }).then(function () {
          if (Date.now() - started > GIVE_UP_MS) {
            poller.stop();
            fail("Still not finished. The result will appear on the dashboard when it is ready.");
          }
        });
      }, POLL_MS);
    }

    function runtimeWord() {
      var pill = document.getElementById("runtime-pill");
      return pill && pill.classList.contains("pill-sim") ? "simulator" : "NPU";
    }

    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (!input.files.length) { fail("Choose an image first."); return; }
      message.className = "";
      button.disabled = true;
      say("Uploading… 0 %", 0);
      var data = new FormData();
      data.append("image", input.files[0]);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/upload");
      xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = function (evt) {
        if (evt.lengthComputable) {
          var pct = Math.round(100 * evt.loaded / evt.total);
          say("Uploading… " + pct + " %", pct);
        }
      };
      xhr.onload = function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText || "{}"); } catch (err) { body = {}; }
        if (xhr.status === 202 && body.id) {
          say("Uploaded. Waiting for the pipeline…", 100);
          waitForResult(body);
        } else {
          fail("Upload refused (" + xhr.status + "): " + (body.error || "unexpected answer"));
        }
      };
      xhr.onerror = function () { fail("Upload failed: the appliance could not be reached."); };
      xhr.send(data);
    });
  });
})();
