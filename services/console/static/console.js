// 送到家 console: the live queue (Server-Sent Events) and the deadline countdowns. Everything works without
// it but those two: the pages are server-rendered, the forms are plain forms.
"use strict";

function pad(n) { return String(n).padStart(2, "0"); }

function countdowns() {
  var now = Date.now();
  document.querySelectorAll("time.due[datetime]").forEach(function (el) {
    var due = Date.parse(el.getAttribute("datetime"));
    if (isNaN(due)) { return; }
    var s = Math.round((due - now) / 1000), late = s < 0;
    s = Math.abs(s);
    var text = Math.floor(s / 3600) + ":" + pad(Math.floor(s % 3600 / 60)) + ":" + pad(s % 60);
    el.textContent = (late ? el.dataset.overdue : el.dataset.left) + " " + text;
    el.classList.toggle("overdue", late);
    var row = el.closest("tr");
    if (row) { row.classList.toggle("overdue", late); }
  });
}

function liveQueue() {
  var sections = document.getElementById("queue-sections"), status = document.getElementById("live");
  if (!sections || !window.EventSource) { return; }
  var loading = false, again = false;
  function refresh() {
    if (loading) { again = true; return; }
    loading = true;
    var before = new Set(Array.from(sections.querySelectorAll("tr[data-ticket]"), function (r) { return r.dataset.ticket; }));
    fetch("/queue/rows", {credentials: "same-origin", headers: {"Accept": "text/html"}}).then(function (answer) {
      if (answer.redirected || !answer.ok) { window.location.reload(); return null; }
      return answer.text();
    }).then(function (html) {
      if (html === null) { return; }
      sections.innerHTML = html;
      sections.querySelectorAll("tr[data-ticket]").forEach(function (r) {
        if (!before.has(r.dataset.ticket)) { r.classList.add("fresh"); }
      });
      countdowns();
      status.textContent = status.dataset.updated + " " + new Date().toLocaleTimeString();
    }).finally(function () {
      loading = false;
      if (again) { again = false; refresh(); }
    });
  }
  var stream = new EventSource("/events"), opened = false;
  stream.addEventListener("work", function (event) {
    try {
      if (JSON.parse(event.data).event === "following") { status.dataset.state = "following"; }  // bound: live
    } catch (e) { /* a "look again" all the same */ }
    refresh();
  });
  stream.onopen = function () {
    status.classList.remove("offline");
    status.textContent = status.dataset.live;
    if (opened) { refresh(); }  // back after a break: what arrived meanwhile
    opened = true;
  };
  stream.onerror = function () {
    status.classList.add("offline");
    status.textContent = status.dataset.offline;
    delete status.dataset.state;
    if (stream.readyState === EventSource.CLOSED) { refresh(); }  // refused for good (signed out): to sign-in
  };
}

document.addEventListener("DOMContentLoaded", function () {
  countdowns();
  window.setInterval(countdowns, 1000);
  liveQueue();
});
