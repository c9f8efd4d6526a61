// meseta UI: live updates from the event stream, forms that call the public API, log tails.
// Pages work without this script; it only makes them live.
"use strict";
(function () {
  var status = document.getElementById("live-status");
  function say(text) { if (status) status.textContent = text; }

  // ---- live regions: re-read the page and swap every [data-live] region in place ----
  var pending = null;
  var inflight = false;
  function refresh() {
    if (inflight) { schedule(); return; }
    inflight = true;
    fetch(location.href, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        doc.querySelectorAll("[data-live]").forEach(function (fresh) {
          var name = fresh.getAttribute("data-live");
          var cur = document.querySelector('[data-live="' + name + '"]');
          if (!cur || cur.contains(document.activeElement)) return;
          cur.innerHTML = fresh.innerHTML;
        });
        say("Live · updated " + new Date().toLocaleTimeString());
      })
      .catch(function () { say("Live updates paused (master unreachable)"); })
      .finally(function () { inflight = false; });
  }
  function schedule() {
    if (pending) return;
    pending = setTimeout(function () { pending = null; refresh(); }, 300);
  }
  if (document.querySelector("[data-live]")) {
    if (window.EventSource) {
      var es = new EventSource("/v2/events");
      es.onmessage = schedule;
      ["status_update_event", "deployment_success", "deployment_step_success", "deployment_info",
       "instance_changed_event", "health_status_changed_event", "api_post_event", "app_terminated_event"]
        .forEach(function (t) { es.addEventListener(t, schedule); });
      es.onopen = function () { say("Live"); };
      es.onerror = function () { say("Live updates reconnecting…"); };
    }
    // Usage figures and tasks of other frameworks change without a /v2 event.
    setInterval(schedule, 5000);
  }

  // ---- forms: call the public API, show its message next to the field on refusal ----
  function apiMessage(body, status) {
    if (!body) return "The API answered " + status;
    var msg = body.message || ("The API answered " + status);
    if (Array.isArray(body.details) && body.details.length) {
      msg += ": " + body.details.map(function (d) {
        if (typeof d === "string") return d;
        return (d.path ? d.path + ": " : "") + (d.errors || []).join("; ");
      }).join("; ");
    }
    return msg;
  }
  function valueOf(text) {
    var t = text.trim();
    return t !== "" && !isNaN(Number(t)) ? Number(t) : text;
  }
  document.querySelectorAll("form[data-api-method]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var kind = form.getAttribute("data-api-body");
      var body = null;
      if (kind === "scale") body = { instances: valueOf(form.elements.instances.value) };
      else if (kind === "rollback") body = { version: form.elements.version.value };
      else if (form.hasAttribute("data-api-json")) body = JSON.parse(form.getAttribute("data-api-json"));
      var err = form.querySelector(".field-error");
      var input = form.querySelector("input,select");
      var button = form.querySelector("button");
      if (button) button.disabled = true;
      fetch(form.getAttribute("data-api-path"), {
        method: form.getAttribute("data-api-method"),
        headers: body ? { "Content-Type": "application/json" } : {},
        body: body ? JSON.stringify(body) : undefined,
      }).then(function (r) {
        if (r.ok) {
          if (err) { err.hidden = true; err.textContent = ""; }
          if (input) input.removeAttribute("aria-invalid");
          say("Done: " + (button ? button.textContent : "change") + " accepted");
          refresh();
          return;
        }
        return r.text().then(function (t) {
          var parsed = null;
          try { parsed = JSON.parse(t); } catch (e) { parsed = { message: t }; }
          if (err) { err.textContent = apiMessage(parsed, r.status); err.hidden = false; }
          if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
        });
      }).catch(function (e) {
        if (err) { err.textContent = "Request failed: " + e; err.hidden = false; }
      }).finally(function () { if (button) button.disabled = false; });
    });
  });

  // ---- log tails: follow the public logs endpoint ----
  document.querySelectorAll("pre[data-log-task]").forEach(function (pre) {
    var task = pre.getAttribute("data-log-task");
    var stream = pre.getAttribute("data-log-stream");
    var offset = Number(pre.getAttribute("data-log-offset") || 0);
    function poll() {
      fetch("/api/meseta/v1/tasks/" + encodeURIComponent(task) + "/logs?stream=" + stream +
            "&offset=" + offset + "&length=65536", { cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (c) {
          if (c && c.data) {
            var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
            pre.appendChild(document.createTextNode(c.data));
            offset = c.offset + new TextEncoder().encode(c.data).length;
            if (atEnd) pre.scrollTop = pre.scrollHeight;
          }
        })
        .catch(function () {})
        .finally(function () { setTimeout(poll, 1000); });
    }
    setTimeout(poll, 1000);
  });
})();
