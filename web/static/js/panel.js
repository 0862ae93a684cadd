/* Shared helpers of the supervisor panel. Everything builds DOM with textContent (never HTML strings
   with data), and no inline styles or scripts: the CSP forbids both. */
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";

  function csrf() {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }

  function sclass(v) {
    if (v === null || v === undefined) return "none";
    if (v <= -0.2) return "neg";
    if (v >= 0.2) return "pos";
    return "mid";
  }

  function signed(v, nd) {
    if (v === null || v === undefined) return "–";
    const s = Number(v).toFixed(nd === undefined ? 2 : nd);
    return v >= 0 ? "+" + s : s;
  }

  function dur(sec) {
    if (sec === null || sec === undefined) return "–";
    sec = Math.max(0, Math.round(sec));
    const h = Math.floor(sec / 3600), m = Math.floor(sec / 60) % 60, s = sec % 60;
    const mm = (h ? String(m).padStart(2, "0") : String(m));
    return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
  }

  function ago(ts) {
    if (!ts) return "–";
    const d = Math.max(0, Date.now() / 1000 - ts);
    if (d < 60) return Math.round(d) + " s ago";
    if (d < 3600) return Math.round(d / 60) + " min ago";
    if (d < 86400) return (d / 3600).toFixed(1) + " h ago";
    return (d / 86400).toFixed(1) + " d ago";
  }

  function clock(ts) {
    if (!ts) return "–";
    return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  /* Sparkline of values in [-1, 1] as an SVG polyline (attributes only, no style). */
  function spark(values, cls, big) {
    const w = 120, h = 28;
    const s = svgEl("svg", { viewBox: "0 0 " + w + " " + h, preserveAspectRatio: "none", role: "img", "aria-label": "sentiment trend" });
    s.setAttribute("class", "spark" + (big ? " big" : ""));
    s.appendChild(svgEl("line", { class: "zero", x1: 0, y1: h / 2, x2: w, y2: h / 2 }));
    const vals = values.filter(function (v) { return v !== null && v !== undefined; });
    if (vals.length >= 2) {
      const pts = vals.map(function (v, i) {
        const y = h - (Math.min(Math.max(v, -1), 1) + 1) / 2 * h;
        return (w * i / (vals.length - 1)).toFixed(1) + "," + y.toFixed(1);
      }).join(" ");
      s.appendChild(svgEl("polyline", { class: cls || "none", points: pts }));
    }
    return s;
  }

  function ack(id) {
    return fetch("/api/alerts/" + encodeURIComponent(id) + "/ack", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), "Accept": "application/json" },
    }).then(function (r) {
      if (!r.ok) throw new Error("acknowledge failed: " + r.status);
      return r.json();
    });
  }

  function postJSON(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), "Accept": "application/json", "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (r) {
      if (!r.ok) throw new Error(url + ": " + r.status);
      return r.json();
    });
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(url + ": " + r.status); return r.json(); });
  }

  // Forms that destroy something ask first (data-confirm: no inline handler under the CSP).
  document.addEventListener("submit", function (e) {
    const msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  window.Panel = { csrf, sclass, signed, dur, ago, clock, el, svgEl, spark, ack, getJSON, postJSON };
})();
