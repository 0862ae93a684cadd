/* Live page: one card per position, re-rendered from server-sent `live` events (/api/stream). */
(function () {
  "use strict";
  const P = window.Panel;
  const grid = document.getElementById("positions");
  const feed = document.getElementById("alert-feed");
  const status = document.getElementById("live-status");
  const summary = document.getElementById("live-summary");
  const empty = document.getElementById("no-positions");
  const lastSeen = {};
  // positions this user may start/end calls at (configured ones, when the role allows it)
  const commandable = JSON.parse(grid.dataset.commands || "[]");
  let updates = 0;

  function setStatus(cls, text) {
    status.className = "live-status " + cls;
    status.querySelector(".text").textContent = text;
  }

  function alertLine(a, withPosition) {
    const line = P.el("div", "alert-line " + a.severity);
    line.dataset.alertId = a.id;
    const badge = P.el("span", "badge " + a.severity, a.severity);
    const text = P.el("div", "text");
    const reason = P.el("div", "reason", a.reason || a.rule);
    reason.title = a.reason || a.rule;
    const meta = P.el("div", "small muted",
      (withPosition && a.position ? a.position + " · " : "") + (a.customer_ref ? a.customer_ref + " · " : "") + P.clock(a.created_at));
    text.append(reason, meta);
    const btn = P.el("button", "small", "Ack");
    btn.type = "button";
    btn.title = "Acknowledge";
    btn.addEventListener("click", function () {
      btn.disabled = true;
      P.ack(a.id).then(function () { line.remove(); }).catch(function () { btn.disabled = false; });
    });
    line.append(badge, text, btn);
    return line;
  }

  function card(p) {
    const on = p.state === "on_call";
    const c = P.el("article", "pos-card " + p.sentiment_class + (on ? "" : " idle"));
    c.dataset.position = p.position;
    c.dataset.state = p.state;
    const head = P.el("div", "pos-head");
    head.append(P.el("span", "pos-name", p.position));
    const pill = P.el("span", "pill " + (on ? "on" : "off"), on ? "On call" : "Idle");
    if (on && p.call && p.call.started_at) {
      pill.dataset.started = p.call.started_at;
      pill.textContent = "On call · " + P.dur(Date.now() / 1000 - p.call.started_at);
    }
    head.append(pill);
    c.append(head);

    const meta = P.el("div", "pos-meta");
    if (p.call) {
      const who = p.call.customer_ref ? "Customer " + p.call.customer_ref : "Unknown customer";
      meta.textContent = on
        ? who + " · " + (p.call.call_type || "") + " · since " + P.clock(p.call.started_at)
        : "Last call " + P.ago(p.last_activity) + " · " + who + " · " + P.dur(p.call.duration);
    } else {
      meta.textContent = "No calls yet";
    }
    c.append(meta);

    const main = P.el("div", "pos-main");
    const left = P.el("div");
    left.append(P.el("div", "small muted", on ? "Customer emotion" : "Last customer emotion"));
    const emo = P.el("div", "emotion", p.emotion ? p.emotion.label : "–");
    if (p.emotion) {
      const conf = p.emotion.uncertain ? "uncertain" : Math.round(100 * (p.emotion.confidence || 0)) + "%";
      emo.append(P.el("span", "conf", conf));
    }
    left.append(emo);
    const right = P.el("div", "right");
    right.append(P.el("div", "small muted", "Sentiment"));
    right.append(P.el("div", "sent-big " + p.sentiment_class, P.signed(p.sentiment)));
    main.append(left, right);
    c.append(main);

    c.append(P.spark((p.trajectory || []).map(function (t) { return t.sentiment; }), p.sentiment_class, true));

    if (p.alerts && p.alerts.length) {
      const list = P.el("div", "pos-alerts");
      if (on) {
        p.alerts.slice(0, 3).forEach(function (a) { list.append(alertLine(a, false)); });
      }
      if (!on || p.alerts.length > 3) {
        const more = P.el("a", "more", (on ? "+" + (p.alerts.length - 3) + " more" : p.alerts.length + " open alert(s) from the last call") + " →");
        more.href = "/alerts";
        list.append(more);
      }
      c.append(list);
    }
    if (p.call) {
      const link = P.el("a", "small call-link", on ? "Open live call →" : "Last call →");
      link.href = "/calls/" + encodeURIComponent(p.call.id);
      c.append(link);
    }
    if (commandable.indexOf(p.position) >= 0) c.append(commandButton(p.position, on));
    if (lastSeen[p.position] !== undefined && lastSeen[p.position] !== p.last_activity) c.classList.add("flash");
    lastSeen[p.position] = p.last_activity;
    return c;
  }

  function commandButton(position, on) {
    const cmd = P.el("button", "small call-cmd", on ? "End call" : "Start call");
    cmd.type = "button";
    cmd.title = on ? "End the call at this position" : "Open a call at this position now";
    cmd.addEventListener("click", function () {
      cmd.disabled = true;
      P.postJSON("/api/positions/" + encodeURIComponent(position) + "/call", { action: on ? "end" : "start" })
        .then(function () { cmd.textContent = "Sent"; })
        .catch(function () { cmd.disabled = false; });
    });
    return cmd;
  }

  function render(snap) {
    updates += 1;
    grid.dataset.updates = String(updates);
    grid.replaceChildren.apply(grid, snap.positions.map(card));
    const onCall = snap.positions.filter(function (p) { return p.state === "on_call"; }).length;
    summary.textContent = snap.positions.length + " position(s) · " + onCall + " on a call · updated " + P.clock(snap.at);
    if (empty) empty.textContent = snap.positions.length ? "" : "No positions yet: they appear with their first call (or list them in the config).";
    if (snap.alerts.length) {
      feed.replaceChildren.apply(feed, snap.alerts.map(function (a) { return alertLine(a, true); }));
    } else {
      feed.replaceChildren(P.el("p", "muted small", "No open alerts."));
    }
  }

  setInterval(function () {
    grid.querySelectorAll(".pill[data-started]").forEach(function (pill) {
      pill.textContent = "On call · " + P.dur(Date.now() / 1000 - Number(pill.dataset.started));
    });
  }, 1000);

  P.getJSON("/api/positions/live").then(render).catch(function () {});
  const es = new EventSource("/api/stream");
  es.addEventListener("live", function (e) { render(JSON.parse(e.data)); });
  es.addEventListener("open", function () { setStatus("connected", "live"); });
  // the session ended on the server (logout elsewhere, user disabled, timeout): sign in again
  es.addEventListener("logout", function () { es.close(); window.location.assign("/login"); });
  es.addEventListener("error", function () { setStatus("error", "reconnecting…"); });
})();
