/* Customer page: per-call sentiment and enthusiasm from relationships.detail.history. */
(function () {
  "use strict";
  const P = window.Panel;
  const box = document.getElementById("trend-chart");
  if (!box || !window.uPlot) return;
  P.getJSON("/api/customers/" + encodeURIComponent(box.dataset.ref)).then(function (c) {
    const h = c.history || [];
    if (!h.length) { box.append(P.el("p", "muted", "No call history yet.")); return; }
    const xs = h.map(function (_, i) { return i + 1; });
    const opts = {
      width: Math.max(300, box.clientWidth), height: 240,
      scales: { x: { time: false, range: [0.5, Math.max(h.length, 2) + 0.5] }, y: { range: [-1, 1] } },
      axes: [{ label: "call", values: function (u, v) { return v.map(function (x) { return Number.isInteger(x) ? String(x) : ""; }); } }, { size: 44 }],
      series: [
        { label: "call", value: function (u, v) { return v === null ? "–" : (h[v - 1] ? P.clock(h[v - 1].ts) : v); } },
        { label: "sentiment", stroke: "#111827", width: 2.5, points: { size: 7 } },
        { label: "enthusiasm", stroke: "#f08c00", width: 2, points: { size: 6 } },
      ],
    };
    new uPlot(opts, [xs, h.map(function (x) { return x.sentiment; }), h.map(function (x) { return x.enthusiasm; })], box);
    box.dataset.ready = "1";
  }).catch(function (e) { box.append(P.el("p", "muted", String(e))); });
})();
