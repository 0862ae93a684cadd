/* Call detail: valence/arousal/sentiment chart (uPlot), alert markers, transcript <-> chart sync. */
(function () {
  "use strict";
  const P = window.Panel;
  const box = document.getElementById("va-chart");
  if (!box || !window.uPlot) return;
  const rows = Array.prototype.slice.call(document.querySelectorAll("#transcript tbody tr"));

  function highlight(t) {
    let best = null, bestD = Infinity;
    rows.forEach(function (r) {
      const s = Number(r.dataset.start), e = Number(r.dataset.end);
      const d = t < s ? s - t : (t > e ? t - e : 0);
      if (d < bestD) { bestD = d; best = r; }
      r.classList.remove("hl");
    });
    if (best) best.classList.add("hl");
    return best;
  }

  P.getJSON("/api/calls/" + encodeURIComponent(box.dataset.callId)).then(function (call) {
    const cust = call.utterances.filter(function (u) {
      return u.speaker === "customer" && (u.valence !== null || u.sentiment !== null);
    });
    const xs = cust.map(function (u) { return (u.start + u.end) / 2; });
    const val = cust.map(function (u) { return u.valence; });
    const aro = cust.map(function (u) { return u.arousal; });
    const sen = cust.map(function (u) { return u.sentiment; });
    const alerts = (call.alerts || []).map(function (a) { return a.at; }).filter(function (x) { return x !== null; });
    if (!xs.length) {
      box.append(P.el("p", "muted", "No customer scores on this call."));
      return;
    }
    const dur = Math.max(call.duration || 0, xs[xs.length - 1] + 1);
    const opts = {
      width: Math.max(300, box.clientWidth),
      height: 260,
      scales: { x: { time: false, range: [0, dur] }, y: { range: [-1, 1] } },
      axes: [
        { label: "seconds into the call", values: function (u, v) { return v.map(function (x) { return P.dur(x); }); } },
        { label: "score (−1 … +1)", size: 50 },
      ],
      series: [
        { label: "t", value: function (u, v) { return v === null ? "–" : P.dur(v); } },
        { label: "valence", stroke: "rgba(124, 58, 237, 0.55)", width: 5, points: { size: 6 }, spanGaps: true },
        { label: "arousal", stroke: "#f08c00", width: 2, points: { size: 5 }, spanGaps: true },
        { label: "sentiment", stroke: "#111827", width: 2.5, dash: [6, 3], points: { size: 6 }, spanGaps: true },
      ],
      cursor: { drag: { x: false, y: false } },
      hooks: {
        draw: [function (u) {
          const ctx = u.ctx;
          ctx.save();
          const y0 = u.valToPos(0, "y", true);
          ctx.strokeStyle = "#d0d5dd";
          ctx.setLineDash([3, 3]);
          ctx.beginPath(); ctx.moveTo(u.bbox.left, y0); ctx.lineTo(u.bbox.left + u.bbox.width, y0); ctx.stroke();
          ctx.setLineDash([]);
          ctx.strokeStyle = "#d64545";
          ctx.lineWidth = 2;
          alerts.forEach(function (t) {
            const x = u.valToPos(t, "x", true);
            ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
          });
          ctx.restore();
        }],
        setCursor: [function (u) {
          if (u.cursor.idx !== null && u.cursor.idx !== undefined) highlight(u.data[0][u.cursor.idx]);
        }],
      },
    };
    const plot = new uPlot(opts, [xs, val, aro, sen], box);
    box.dataset.ready = "1";
    rows.forEach(function (r) {
      r.addEventListener("mouseenter", function () {
        const t = (Number(r.dataset.start) + Number(r.dataset.end)) / 2;
        let best = 0;
        xs.forEach(function (x, i) { if (Math.abs(x - t) < Math.abs(xs[best] - t)) best = i; });
        plot.setCursor({ left: plot.valToPos(xs[best], "x"), top: plot.valToPos(sen[best] || 0, "y") });
      });
    });
    if (window.ResizeObserver) {
      new ResizeObserver(function () { plot.setSize({ width: Math.max(300, box.clientWidth), height: 260 }); }).observe(box);
    }
  }).catch(function (e) { box.append(P.el("p", "muted", String(e))); });
})();
