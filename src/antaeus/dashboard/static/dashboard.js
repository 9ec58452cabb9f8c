// Antaeus dashboard: the live parts. Plain JavaScript, no library; values are
// written with textContent and numeric attributes only, never as HTML.
(function () {
  "use strict";
  var PERIOD_MS = 1500;
  var BAR_WIDTH = 300;

  function fields(root, name) {
    return root.querySelectorAll('[data-field="' + name + '"]');
  }

  function setText(root, name, value) {
    fields(root, name).forEach(function (el) { el.textContent = String(value); });
  }

  function setProgress(root, percent) {
    fields(root, "progress").forEach(function (el) {
      el.setAttribute("width", String(Math.max(0, Math.min(100, percent)) * 3));
    });
  }

  function updateRun(root, run) {
    setText(root, "status", run.status);
    setText(root, "done", run.done);
    setText(root, "due", run.due);
    setText(root, "percent", run.percent);
    setText(root, "duration", run.duration);
    setProgress(root, run.percent);
    var scale = Math.max(run.due, 1);
    (run.bars || []).forEach(function (bar) {
      root.querySelectorAll('[data-bar="' + bar.outcome + '"]').forEach(function (el) {
        el.setAttribute("width", (bar.count * BAR_WIDTH / scale).toFixed(1));
      });
      root.querySelectorAll('[data-count="' + bar.outcome + '"]').forEach(function (el) {
        el.textContent = String(bar.count);
      });
    });
    fields(root, "collected").forEach(function (list) {
      var amounts = run.collectedText || [];
      while (list.firstChild) { list.removeChild(list.firstChild); }
      (amounts.length ? amounts : ["nothing"]).forEach(function (text) {
        var item = document.createElement("li");
        item.textContent = text;
        if (!amounts.length) { item.className = "muted"; }
        list.appendChild(item);
      });
    });
    fields(root, "status").forEach(function (el) {
      el.className = "badge run-" + (run.status === "completed" ? "completed" : "running");
    });
  }

  function poll(url, onData) {
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (!r.ok || (r.headers.get("content-type") || "").indexOf("json") < 0) {
            throw new Error("HTTP " + r.status);
          }
          return r.json();
        })
        .then(function (data) {
          if (onData(data)) { window.setTimeout(tick, PERIOD_MS); }
        })
        .catch(function () { /* signed out or gone: stop */ });
    }
    window.setTimeout(tick, PERIOD_MS);
  }

  function runPage(root) {
    if (root.getAttribute("data-status") !== "running") { return; }
    poll(root.getAttribute("data-live"), function (run) {
      updateRun(document, run);
      if (run.status !== "running") {
        window.location.reload(); // the final state, as the server renders it
        return false;
      }
      return true;
    });
  }

  function overviewPage(root) {
    var shown = root.getAttribute("data-runs") || "";
    poll(root.getAttribute("data-live"), function (state) {
      var ids = state.runs.map(function (r) { return String(r.id); }).join(",");
      if (ids !== shown) {
        window.location.reload(); // a run opened or completed
        return false;
      }
      setText(document, "backlog", state.dueBacklog);
      state.runs.forEach(function (run) {
        var row = document.querySelector('tr[data-run="' + run.id + '"]');
        if (row) { updateRun(row, run); }
      });
      return true;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var run = document.getElementById("run");
    if (run) { runPage(run); }
    var overview = document.getElementById("overview");
    if (overview) { overviewPage(overview); }
  });
})();
