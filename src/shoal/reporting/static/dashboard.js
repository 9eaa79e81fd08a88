// The dashboard page: one server-sent event per second carries the run's snapshot.
"use strict";
(function () {
  const KEEP = 300; // points kept on the charts (five minutes)
  const times = [], rates = [], byteRates = [];
  let last = null;
  const $ = (id) => document.getElementById(id);
  const fmt = (n) => (n === null || n === undefined) ? "—" : Math.round(n).toLocaleString("en");
  const ms = (n) => (n === null || n === undefined) ? "—" : n.toFixed(1) + " ms";
  const duration = (s) => {
    if (s === null || s === undefined) return "—";
    const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), r = Math.round(s % 60);
    return h ? `${h}h ${m}m` : m ? `${m}m ${r}s` : `${r}s`;
  };
  function chart(id, label) {
    const element = $(id);
    return new uPlot({ width: Math.max(320, element.clientWidth || 480), height: 180,
      series: [{}, { label: label, stroke: "#3b7ddd", fill: "rgba(59,125,221,0.12)" }],
      axes: [{}, { size: 60 }] }, [[], []], element);
  }
  const rateChart = chart("chart-rate", "requests/s");
  const bytesChart = chart("chart-bytes", "bytes/s");
  const latencyChart = new uPlot({ width: 360, height: 160,
    series: [{}, { label: "requests", stroke: "#7b51c2", fill: "rgba(123,81,194,0.15)" }],
    scales: { x: { time: false, distr: 3 } }, axes: [{ label: "ms" }, { size: 50 }] },
    [[], []], $("chart-latency"));
  function table(id, counts) {
    const rows = Object.entries(counts).sort();
    $(id).innerHTML = rows.length ? rows.map(([k, v]) =>
      `<tr><td>${k}</td><td data-name="${k}">${fmt(v)}</td></tr>`).join("") : "<tr><td>none</td></tr>";
  }
  function hosts(data) {
    const seen = new Map();
    for (const h of data.hosts.concat(data.busiest)) seen.set(h.host, h);
    $("hosts").tBodies[0].innerHTML = Array.from(seen.values()).map((h) =>
      `<tr><td>${h.host}</td><td>${h.state}</td><td>${h.in_flight}</td><td>${h.queued}</td>` +
      `<td>${h.cap}</td><td>${h.delay_s}</td><td>${h.wait_s}</td><td>${h.failures}</td></tr>`).join("");
  }
  function show(data) {
    for (const key of ["ok", "failed", "in_flight", "queued", "waiting_retry", "retries", "done"])
      $(key).textContent = fmt(data[key]);
    $("total").textContent = data.total === null ? "?" : fmt(data.total) + (data.total_is_estimate ? " (estimate)" : "");
    $("eta").textContent = duration(data.eta_s);
    const total = data.total ? data.total - data.skipped : 0;
    $("bar-fill").style.width = total ? Math.min(100, 100 * data.done / total) + "%" : "0";
    $("p50").textContent = ms(data.latency_p50_ms); $("p90").textContent = ms(data.latency_p90_ms);
    $("p99").textContent = ms(data.latency_p99_ms); $("pmax").textContent = ms(data.latency_max_ms);
    table("statuses", data.by_status); table("errors", data.by_error); hosts(data);
    const now = Date.now() / 1000;
    let rate = 0, bytesRate = 0;
    if (last && now > last.at) {
      rate = Math.max(0, (data.done - last.done) / (now - last.at));
      bytesRate = Math.max(0, (data.bytes - last.bytes) / (now - last.at));
    }
    last = { at: now, done: data.done, bytes: data.bytes };
    $("rate").textContent = fmt(rate); $("bytes_rate").textContent = fmt(bytesRate);
    times.push(now); rates.push(rate); byteRates.push(bytesRate);
    if (times.length > KEEP) { times.shift(); rates.shift(); byteRates.shift(); }
    rateChart.setData([times, rates]); bytesChart.setData([times, byteRates]);
    const buckets = data.latency_buckets.map(([b, n]) => [Math.expm1((b + 0.5) / 40), n]);
    latencyChart.setData([buckets.map((p) => p[0]), buckets.map((p) => p[1])]);
    const state = $("state");
    state.className = "state";
    if (data.interrupted) { state.textContent = "stopping"; state.classList.add("stopped"); }
    else if (data.paused) { state.textContent = "paused"; state.classList.add("paused"); }
    else { state.textContent = "running"; }
    document.body.dataset.done = data.done;
  }
  const events = new EventSource("/api/events");
  events.addEventListener("stats", (event) => show(JSON.parse(event.data)));
  events.onerror = () => { $("state").textContent = "disconnected"; };
  for (const action of ["pause", "resume", "stop"]) {
    $(action).addEventListener("click", () => fetch("/api/" + action, { method: "POST" }));
  }
})();
