
"use strict";
(function () {
  // Everything shown comes from the dashboard's /api/ and is put on the page with
  // textContent only: state names, payloads and failure messages are user data.
  var STATUSES = ["pending", "scheduled", "waiting", "in_progress", "done", "failed"];
  var STATUS_KEYS = ["pending", "scheduled", "waiting", "in_progress", "done", "failed", "workers",
                     "oldest_pending_at", "recent_failures", "sampled_at", "rate", "series", "error",
                     "refresh_seconds", "by_state", "actions"];
  var TOKEN_KEY = "doves-dashboard-token";
  var refreshSeconds = 2;
  var clockOffset = 0;  // server time - browser time, seconds: ages are judged by the server's clock
  var lastStatus = null;
  var reachable = true;
  var listNames = [];   // the state files the list shows (for "retry the failed ones shown")

  function byId(id) { return document.getElementById(id); }
  function setText(id, value) { byId(id).textContent = value === null || value === undefined ? "" : String(value); }
  function now() { return Date.now() / 1000 + clockOffset; }

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (className) { node.className = className; }
    return node;
  }

  function link(text, href, className) {
    var a = el("a", text, className);
    a.setAttribute("href", href);
    return a;
  }

  function cell(content, className) {
    var td = el("td", null, className);
    if (content instanceof Node) { td.appendChild(content); } else { td.textContent = content === null || content === undefined ? "" : String(content); }
    return td;
  }

  function rowOf(cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (td) { tr.appendChild(td); });
    return tr;
  }

  function fill(id, nodes, emptyId) {
    var target = byId(id);
    target.replaceChildren.apply(target, nodes);
    if (emptyId) { byId(emptyId).hidden = nodes.length > 0; }
  }

  // -- formats --------------------------------------------------------------------------------

  function duration(seconds) {
    if (seconds === null || seconds === undefined) { return "-"; }
    seconds = Math.max(0, seconds);
    if (seconds < 1) { return Math.round(seconds * 1000) + " ms"; }
    if (seconds < 60) { return seconds.toFixed(seconds < 10 ? 2 : 1) + " s"; }
    if (seconds < 7200) { return Math.round(seconds / 60) + " min"; }
    if (seconds < 172800) { return (seconds / 3600).toFixed(1) + " h"; }
    return (seconds / 86400).toFixed(1) + " d";
  }

  function ago(time) {
    if (!time) { return "-"; }
    var seconds = now() - time;
    return seconds < 1 ? "just now" : (seconds < 60 ? Math.round(seconds) + " s" : duration(seconds)) + " ago";
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function when(time) {
    if (!time) { return "-"; }
    var d = new Date(time * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" +
           pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function rateText(rate) {
    var text = rate >= 100 ? String(Math.round(rate)) : rate.toFixed(rate >= 10 ? 1 : 2);
    return text.replace(/\.0+$/, "").replace(/(\.\d*?)0+$/, "$1") + "/s";
  }

  function badge(status) { return el("span", status.replace("_", " "), "badge st-" + status); }

  function stateHref(name) { return "#/state/" + encodeURIComponent(name); }
  function lineageHref(name) { return "#/lineage/" + encodeURIComponent(name); }

  function listHref(base, params) {
    var query = new URLSearchParams();
    Object.keys(params).forEach(function (key) {
      if (params[key] !== null && params[key] !== undefined && params[key] !== "") { query.set(key, params[key]); }
    });
    var text = query.toString();
    return base + (text ? "?" + text : "");
  }

  // -- talking to the server ----------------------------------------------------------------------

  function token() { try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; } }

  function setToken(value) {
    try { if (value) { sessionStorage.setItem(TOKEN_KEY, value); } else { sessionStorage.removeItem(TOKEN_KEY); } }
    catch (e) { /* storage refused: the token lasts until the page is left */ }
    renderAccess();
  }

  function request(path, options) {
    var controller = new AbortController();
    var guard = setTimeout(function () { controller.abort(); }, Math.max(10, 3 * refreshSeconds) * 1000);
    options = options || {};
    options.cache = "no-store";
    options.signal = controller.signal;
    return fetch(path, options).then(function (response) {
      var date = Date.parse(response.headers.get("Date") || "");
      if (!isNaN(date)) { clockOffset = date / 1000 - Date.now() / 1000; }
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          var error = new Error(body.error || ("HTTP " + response.status));
          error.status = response.status;
          throw error;
        }
        return body;
      });
    }, function (error) {
      throw new Error(error && error.name === "AbortError" ? "timed out" : String(error && error.message || error));
    }).finally(function () { clearTimeout(guard); });
  }

  function notice(message, kind) {
    var box = byId("notice");
    box.textContent = message || "";
    box.className = "notice" + (kind ? " " + kind : "");
    box.hidden = !message;
  }

  function act(what, names, question) {
    if (!names.length) { return; }
    if (question && !window.confirm(question)) { return; }
    var headers = { "Content-Type": "application/json" };
    if (token()) { headers.Authorization = "Bearer " + token(); }
    request("api/" + what, { method: "POST", headers: headers, body: JSON.stringify({ names: names }) })
      .then(function (answer) {
        var message = what === "retry"
          ? answer.retried + " of " + answer.asked + " failed state(s) pending again"
          : answer.forgotten + " state(s) deleted (machines that had not ended are kept whole)";
        notice(message, "good");
        refreshStatus();
        route();
      }, function (error) {
        notice((error.status === 403 ? "Refused (403): " : "Failed: ") + error.message, "bad");
      });
  }

  // -- header, banner ----------------------------------------------------------------------------

  function isReadOnly() { return !!(lastStatus && lastStatus.actions === "read-only"); }

  function renderAccess() {
    var readOnly = isReadOnly();
    var unlocked = !readOnly && !!token();
    var access = byId("access");
    access.textContent = readOnly ? "read-only dashboard" : unlocked ? "actions unlocked" : "read-only: enter the token to act";
    access.className = "access" + (unlocked ? " unlocked" : "");
    byId("token-form").hidden = readOnly || unlocked;
    byId("lock").hidden = !unlocked;
    Array.prototype.forEach.call(document.querySelectorAll("button.action"), function (button) {
      button.hidden = readOnly;
    });
  }

  function renderBanner() {
    var banner = byId("banner");
    var data = lastStatus;
    var sampled = data && data.sampled_at !== null && data.sampled_at !== undefined;
    var problem = !reachable ? "Cannot reach the dashboard server" + (data ? "; showing its last answer" : "")
                : data && data.error ? "The store cannot be read: " + data.error + (sampled ? " (showing the last good sample)" : "")
                : null;
    banner.className = "banner" + (problem ? " bad" : "");
    banner.textContent = problem || (sampled ? "store read " + ago(data.sampled_at) + ", every " + refreshSeconds + " s"
                                             : "waiting for the first status sample");
  }

  // -- overview --------------------------------------------------------------------------------------

  function niceCeiling(value) {
    // The axis' top: 1, 2 or 5 times a power of ten, at least the highest rate.
    if (!(value > 0)) { return 1; }
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) { if (value <= steps[i] * power) { return steps[i] * power; } }
    return 10 * power;
  }

  function sparkline(series) {
    // Rate between consecutive samples: (finished difference) / (time difference).
    var rates = [];
    for (var i = 1; i < series.length; i++) {
      var dt = series[i][0] - series[i - 1][0];
      if (dt > 0) { rates.push([series[i][0], Math.max(0, series[i][1] - series[i - 1][1]) / dt]); }
    }
    var top = 0;
    rates.forEach(function (point) { top = Math.max(top, point[1]); });
    top = niceCeiling(top);
    var start = series.length ? series[0][0] : now();
    var span = Math.max(1, now() - start);
    var points = rates.map(function (point) {
      var x = (300 * (point[0] - start) / span).toFixed(1);
      var y = (59 - 58 * point[1] / top).toFixed(1);
      return x + "," + y;
    });
    byId("spark-line").setAttribute("points", points.length > 1 ? points.join(" ") : "");
    setText("axis-top", rateText(top));
    setText("axis-mid", rateText(top / 2));
    setText("axis-start", "-" + duration(span));
    setText("axis-middle", "-" + duration(span / 2));
    setText("rate-caption", "transitions (done + failed) per second: " + rateText(lastStatus.rate || 0) +
            " now; last " + duration(span) + ", a point every " + refreshSeconds + " s");
  }

  function byStateRows(rows) {
    return rows.map(function (row) {
      var cells = [cell(link(row.state, listHref("#/states", { state: row.state })), "name")];
      STATUSES.forEach(function (status) {
        var count = row.counts[status] || 0;
        var content = status === "failed" && count
          ? link(count, listHref("#/failures", { state: row.state })) : count;
        cells.push(cell(content, "num" + (count ? (status === "failed" ? " failed" : "") : " zero")));
      });
      cells.push(cell(row.total, "num"));
      return rowOf(cells);
    });
  }

  function claimList(claims) {
    var list = el("ul", null, "claims");
    claims.forEach(function (claim) {
      var item = el("li");
      item.appendChild(link(claim.name, stateHref(claim.name)));
      item.appendChild(document.createTextNode(" (" + claim.state + ", " + (claim.since ? duration(now() - claim.since) : "?") + ")"));
      list.appendChild(item);
    });
    if (!claims.length) { list.appendChild(el("li", "-", "muted")); }
    return list;
  }

  function workerRows(workers) {
    return workers.slice().sort(function (a, b) { return (b.alive - a.alive) || (a.name < b.name ? -1 : 1); })
      .map(function (w) {
        var standing = w.ended ? "ended: " + w.ended : w.alive ? "alive" : "silent";
        var up = w.started_at ? duration((w.alive ? now() : w.last_seen) - w.started_at) : "-";
        var name = el("span");
        name.appendChild(el("strong", w.name));
        name.appendChild(el("div", w.host + " · pid " + w.pid, "muted"));
        return rowOf([cell(name, "name"), cell(standing, w.ended ? "ended" : w.alive ? "alive" : "silent"), cell(up, "nowrap"),
                      cell(ago(w.last_seen), "nowrap"),
                      cell(w.processed === null ? "?" : w.processed - (w.failed || 0), "num"),
                      cell(w.failed === null ? "?" : w.failed, "num" + (w.failed ? " failed" : "")),
                      cell(claimList(w.claims || []), "name")]);
      });
  }

  function renderOverview(data) {
    if (data.sampled_at === null || data.sampled_at === undefined) { return; }
    STATUSES.forEach(function (status) { setText(status.replace("_", "-"), data[status] === undefined ? "-" : data[status]); });
    byId("tile-failed").classList.toggle("bad", data.failed > 0);
    setText("oldest", data.pending > 0 && data.oldest_pending_at ? "oldest waits " + duration(now() - data.oldest_pending_at) : "");
    var claims = 0;
    (data.workers || []).forEach(function (w) { claims += (w.claims || []).length; });
    setText("claims-note", claims ? claims + " claimed by the workers below" : "");
    sparkline(data.series || []);

    fill("by-state", byStateRows(data.by_state || []), "by-state-empty");
    var workers = data.workers || [];
    var alive = workers.filter(function (w) { return w.alive; }).length;
    setText("workers-summary", alive + " alive, " + workers.length + " registered");
    fill("workers", workerRows(workers), "workers-empty");
    fill("failures", (data.recent_failures || []).map(function (f) {
      return rowOf([cell(link(f.name, stateHref(f.name)), "name"), cell(f.code, "code"), cell(f.message, "message")]);
    }), "failures-empty");

    var items = [];
    Object.keys(data).forEach(function (key) {
      if (STATUS_KEYS.indexOf(key) >= 0) { return; }
      var value = data[key];
      items.push(el("dt", key), el("dd", value !== null && typeof value === "object" ? JSON.stringify(value) : String(value)));
    });
    fill("details", items);
  }

  function refreshStatus() {
    return request("api/status").then(function (data) {
      lastStatus = data;
      reachable = true;
      if (data.refresh_seconds > 0) { refreshSeconds = data.refresh_seconds; }
      document.title = (data.sampled_at ? data.pending + " pending, " + data.failed + " failed - " : "") + "doves dashboard";
      setText("store", data.store ? String(data.store) : "");
      setText("nav-failed-count", data.failed ? String(data.failed) : "");
      fill("state-names", (data.by_state || []).map(function (row) {
        var option = el("option");
        option.value = row.state;
        return option;
      }));
      if (currentView === "overview") { renderOverview(data); }
      renderAccess();
      renderBanner();
    }, function () {
      reachable = false;
      renderBanner();
    });
  }

  function poll() {
    refreshStatus().finally(function () { setTimeout(poll, refreshSeconds * 1000); });
  }

  // -- lists ----------------------------------------------------------------------------------------

  function listRows(states) {
    return states.map(function (s) {
      var buttons = el("span");
      if (isReadOnly()) {
        buttons.textContent = "-";
      } else if (s.status === "failed") {
        var retry = el("button", "Retry", "action");
        retry.type = "button";
        retry.addEventListener("click", function () { act("retry", [s.name]); });
        buttons.appendChild(retry);
        buttons.appendChild(document.createTextNode(" "));
      }
      if (!isReadOnly() && (s.status === "failed" || s.status === "done")) {
        var forget = el("button", "Delete", "action danger");
        forget.type = "button";
        forget.addEventListener("click", function () {
          act("forget", [s.name], "Delete the machine of " + s.name + ", every state of it? This cannot be undone.");
        });
        buttons.appendChild(forget);
      }
      return rowOf([cell(link(s.name, stateHref(s.name)), "name"),
                    cell(link(s.state, listHref("#/states", { state: s.state }))), cell(badge(s.status)),
                    cell(s.code, "code"), cell(s.message, "message"), cell(s.attempts, "num"), cell(s.worker),
                    cell(ago(s.updated_at), "nowrap"), cell(buttons, "actions")]);
    });
  }

  function renderList(base, params) {
    var failures = base === "#/failures";
    var filters = {
      q: params.get("q") || "", state: params.get("state") || "", code: params.get("code") || "",
      status: params.get("status") || (failures ? "failed" : "any")
    };
    var offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
    var form = byId("filters");
    ["q", "state", "code", "status"].forEach(function (key) { form.elements[key].value = filters[key]; });
    setText("list-title", filters.state ? "State " + filters.state : failures && filters.status === "failed" ? "Failures" : "States");
    var counts = [];
    if (filters.state && lastStatus) {
      (lastStatus.by_state || []).forEach(function (row) {
        if (row.state !== filters.state) { return; }
        STATUSES.forEach(function (status) {
          if (row.counts[status]) { counts.push(el("span", row.counts[status] + " " + status.replace("_", " "), "st-" + status)); }
        });
      });
    }
    fill("list-counts", counts);
    byId("list-counts").hidden = !counts.length;
    var query = { status: filters.status === "any" ? "" : filters.status, state: filters.state, code: filters.code, q: filters.q, offset: offset, limit: 50 };
    return request(listHref("api/states", query)).then(function (page) {
      listNames = page.states.filter(function (s) { return s.status === "failed"; }).map(function (s) { return s.name; });
      fill("list", listRows(page.states), "list-empty");
      setText("page-range", page.states.length ? (offset + 1) + "–" + (offset + page.states.length) + (page.more ? " of more" : "") : "");
      byId("newer").disabled = offset === 0;
      byId("older").disabled = !page.more;
      byId("retry-shown").disabled = !listNames.length;
      byId("newer").onclick = function () { location.hash = listHref(base, Object.assign({}, filters, { offset: Math.max(0, offset - page.limit) })); };
      byId("older").onclick = function () { location.hash = listHref(base, Object.assign({}, filters, { offset: offset + page.limit })); };
    });
  }

  // -- one state, one lineage ---------------------------------------------------------------------

  function field(items, name, value) {
    if (value === null || value === undefined || value === "") { return; }
    var dd = el("dd");
    if (value instanceof Node) { dd.appendChild(value); } else { dd.textContent = String(value); }
    items.push(el("dt", name), dd);
  }

  function links(names) {
    var span = el("span");
    names.forEach(function (name, index) {
      if (index) { span.appendChild(document.createTextNode(", ")); }
      span.appendChild(link(name, stateHref(name)));
    });
    return span;
  }

  function waitText(wait) {
    if (!wait) { return null; }
    if (wait.event !== undefined) {
      return "event " + wait.event + ", then " + wait.then + (wait.deadline ? ", until " + when(wait.deadline) +
             " then " + (wait.on_timeout || "fail") : "");
    }
    return wait.children + " child machine(s), then " + wait.then;
  }

  function renderState(name) {
    return request("api/states/" + encodeURIComponent(name)).then(function (s) {
      setText("state-name", s.name);
      byId("state-status").replaceWith(Object.assign(badge(s.status), { id: "state-status" }));
      byId("state-lineage").setAttribute("href", lineageHref(s.name));
      byId("state-retry").hidden = s.status !== "failed" || isReadOnly();
      byId("state-retry").onclick = function () { act("retry", [s.name]); };
      byId("state-forget").hidden = !s.settled || isReadOnly();
      byId("state-forget").onclick = function () {
        act("forget", [s.name], "Delete machine " + s.machine + ", every state of it? This cannot be undone.");
      };
      var items = [];
      field(items, "state", link(s.state, listHref("#/states", { state: s.state })));
      field(items, "machine", link(s.machine, lineageHref(s.name)));
      field(items, "parent", s.parent ? link(s.parent, stateHref(s.parent)) : "-");
      field(items, "worker", s.worker || "-");
      field(items, "submitted", when(s.submitted_at));
      field(items, "claimed", when(s.claimed_at));
      field(items, "finished", when(s.finished_at));
      field(items, "took", duration(s.duration_seconds));
      field(items, "failed attempts", s.attempts);
      field(items, "retries asked", s.retries);
      field(items, "due", s.not_before ? when(s.not_before) + " (in " + duration(s.not_before - now()) + ")" : null);
      field(items, "waits for", waitText(s.wait));
      field(items, "event", s.event ? s.event.name + " " + JSON.stringify(s.event.data) : null);
      field(items, "spawned by", s.origin ? link(s.origin.parent + " (child " + s.origin.index + ")", stateHref(s.origin.parent)) : null);
      field(items, "children", s.children.length ? links(s.children) : null);
      fill("state-fields", items);
      var failed = !!s.failure || s.errors.length > 0;
      byId("state-failure-block").hidden = !failed;
      setText("state-failure", s.failure ? s.failure.code + ": " + s.failure.message : "");
      fill("state-errors", s.errors.map(function (error) { return el("li", error); }));
      setText("state-traceback", s.failure && s.failure.traceback ? s.failure.traceback : "");
      byId("state-traceback").hidden = !(s.failure && s.failure.traceback);
      setText("state-payload", s.payload === null ? "(the state file cannot be read: see the failure)" : JSON.stringify(s.payload, null, 2));
    });
  }

  function stepNotes(step) {
    var notes = el("span");
    function add(node) {
      if (notes.childNodes.length) { notes.appendChild(document.createTextNode("; ")); }
      notes.appendChild(node instanceof Node ? node : document.createTextNode(node));
    }
    if (step.wait) { add("waits for " + waitText(step.wait)); }
    if (step.event) { add("got event " + step.event); }
    if (step.not_before && step.status === "scheduled") { add("timer: due " + when(step.not_before)); }
    if (step.children.length) { var c = el("span"); c.appendChild(document.createTextNode("children: ")); c.appendChild(links(step.children)); add(c); }
    if (step.origin) { var o = el("span"); o.appendChild(document.createTextNode("spawned by ")); o.appendChild(link(step.origin.parent, stateHref(step.origin.parent))); add(o); }
    if (step.retries) { add(step.retries + " retries asked"); }
    if (step.code) { add(step.code + ": " + step.message); }
    return notes;
  }

  function bar(step, start, span) {
    var box = el("div", null, "bar");
    function part(from, to, className) {
      if (!from) { return; }
      var left = 100 * (from - start) / span;
      var width = 100 * (Math.max(from, to || now()) - from) / span;
      var piece = el("span", null, className);
      piece.style.left = Math.max(0, Math.min(100, left)).toFixed(2) + "%";
      piece.style.width = Math.max(0, Math.min(100 - left, width)).toFixed(2) + "%";
      box.appendChild(piece);
    }
    part(step.submitted_at, step.claimed_at || (step.status === "in_progress" ? null : step.finished_at), "queued");
    part(step.claimed_at, step.finished_at, "ran st-" + step.status);
    return box;
  }

  function renderLineage(name) {
    return request("api/states/" + encodeURIComponent(name) + "/lineage").then(function (l) {
      setText("lineage-machine", l.machine);
      byId("lineage-status").replaceWith(Object.assign(badge(l.status), { id: "lineage-status" }));
      var start = l.started_at || (l.steps[0] && l.steps[0].submitted_at) || now();
      var end = l.finished_at || now();
      l.steps.forEach(function (step) { end = Math.max(end, step.finished_at || 0); });
      var span = Math.max(0.001, end - start);
      setText("lineage-summary", l.length + " state(s), started " + when(l.started_at) +
              (l.finished_at ? ", ended " + when(l.finished_at) + " after " + duration(l.finished_at - l.started_at) : ", still running") +
              (l.skipped_before ? "; " + l.skipped_before + " earlier step(s) not shown" : "") +
              (l.skipped_after ? "; " + l.skipped_after + " later step(s) not shown" : ""));
      fill("lineage", l.steps.map(function (step, index) {
        var queued = step.claimed_at && step.submitted_at ? step.claimed_at - step.submitted_at : null;
        var tr = rowOf([cell(l.skipped_before + index + 1, "num"), cell(link(step.name, stateHref(step.name)), "name"),
                        cell(step.state), cell(badge(step.status)), cell(step.worker || "-"),
                        cell(duration(queued), "num nowrap"), cell(duration(step.duration_seconds), "num nowrap"),
                        cell(bar(step, start, span), "bar-cell"), cell(stepNotes(step), "message")]);
        if (step.name === name) { tr.className = "current"; }
        return tr;
      }));
    });
  }

  // -- routes -----------------------------------------------------------------------------------------

  var currentView = "overview";

  function show(view) {
    currentView = view;
    ["overview", "list", "state", "lineage"].forEach(function (name) { byId("view-" + name).hidden = name !== view; });
    byId("nav-overview").classList.toggle("current", view === "overview");
    byId("nav-failures").classList.toggle("current", view === "list");
  }

  function route() {
    var hash = location.hash || "#/";
    var tokenMatch = /^#token=(.+)$/.exec(hash);
    if (tokenMatch) {  // the address printed at start-up: keep the token, then drop it from the address bar
      setToken(decodeURIComponent(tokenMatch[1]));
      history.replaceState(null, "", location.pathname + location.search + "#/");
      hash = "#/";
    }
    var question = hash.indexOf("?");
    var path = question < 0 ? hash : hash.slice(0, question);
    var params = new URLSearchParams(question < 0 ? "" : hash.slice(question + 1));
    var loading;
    if (path === "#/failures" || path === "#/states") {
      show("list");
      loading = renderList(path, params);
    } else if (path.indexOf("#/state/") === 0) {
      show("state");
      loading = renderState(decodeURIComponent(path.slice(8)));
    } else if (path.indexOf("#/lineage/") === 0) {
      show("lineage");
      loading = renderLineage(decodeURIComponent(path.slice(10)));
    } else {
      show("overview");
      if (lastStatus) { renderOverview(lastStatus); }
      loading = Promise.resolve();
    }
    loading.catch(function (error) { notice(error.message, "bad"); });
  }

  byId("filters").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target;
    var base = location.hash.indexOf("#/failures") === 0 ? "#/failures" : "#/states";
    location.hash = listHref(base, { q: form.elements.q.value.trim(), state: form.elements.state.value.trim(),
                                     code: form.elements.code.value.trim(), status: form.elements.status.value });
  });
  byId("clear-filters").addEventListener("click", function () { location.hash = "#/failures"; });
  byId("retry-shown").addEventListener("click", function () { act("retry", listNames); });
  byId("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    setToken(byId("token-input").value.trim());
    byId("token-input").value = "";
  });
  byId("lock").addEventListener("click", function () { setToken(""); });
  window.addEventListener("hashchange", function () { notice(""); route(); });

  route();
  renderAccess();
  poll();
})();
