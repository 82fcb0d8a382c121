// The connection check: open a test stream, time each event on arrival, and say plainly
// whether the path buffers events or cuts the stream.
(function () {
  "use strict";
  var page = document.getElementById("connection-check");
  if (!page) return;
  var statusLine = document.getElementById("check-status");
  var log = document.getElementById("check-log");
  var LATE_MS = 1500; // an event this much behind its schedule was held back on the way

  function note(text) {
    var item = document.createElement("li");
    item.textContent = text;
    log.appendChild(item);
  }

  function run(quiet) {
    log.textContent = "";
    var interval = 1;
    var url = page.dataset.stream + "?ticks=10&interval=" + interval + "&quiet=" + quiet;
    var opened = performance.now();
    var arrivals = [];
    var finished = false;
    statusLine.textContent = quiet ? "Running: a quiet minute first, then 10 events, one a second…" : "Running: 10 events, one a second…";
    var source = new EventSource(url);
    source.addEventListener("hello", function () {
      note("Connected after " + Math.round(performance.now() - opened) + " ms.");
    });
    source.addEventListener("tick", function (event) {
      var n = JSON.parse(event.data).n;
      arrivals.push(performance.now());
      note("Event " + (n + 1) + " arrived at " + ((performance.now() - opened) / 1000).toFixed(2) + " s.");
    });
    source.addEventListener("done", function () {
      finished = true;
      source.close();
      verdict(arrivals, interval * 1000);
    });
    source.onerror = function () {
      if (finished) return;
      source.close();
      var seconds = ((performance.now() - opened) / 1000).toFixed(1);
      statusLine.textContent = "The stream was cut after " + seconds + " s, with " + arrivals.length +
        " of 10 events received. Something on the way closes streams: raise its read or idle timeout " +
        "(nginx: proxy_read_timeout) above the heartbeat interval.";
    };
  }

  function verdict(arrivals, intervalMs) {
    var worst = 0;
    for (var i = 1; i < arrivals.length; i++) {
      worst = Math.max(worst, arrivals[0] + i * intervalMs - arrivals[i]);
    }
    // Events that arrive together came late: the first of a lump is measured against the last.
    var lump = 0;
    for (var j = 1; j < arrivals.length; j++) {
      if (arrivals[j] - arrivals[j - 1] < intervalMs / 4) lump++;
    }
    if (lump >= 2 || worst > LATE_MS) {
      statusLine.textContent = "Buffering: events arrived in lumps (" + (lump + 1) + " together) instead of one a second. " +
        "A proxy on the way holds the stream back, so answers will appear in jumps. Turn buffering off for " +
        "event streams (nginx: proxy_buffering off; the app already sends X-Accel-Buffering: no).";
    } else {
      statusLine.textContent = "All 10 events arrived one by one, on time. Nothing on the way buffers or cuts streams.";
    }
  }

  page.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-check]");
    if (!button) return;
    run(button.dataset.check === "quiet" ? 65 : 0);
  });
})();
