// The dashboard page: one server-sent event per second carries the run's snapshot. The
// charts' points are the server's (one a second): those so far come from /api/history
// when the page opens, and each event brings the newest.
"use strict";
(function () {
  const KEEP = 300; // points kept on the charts (five minutes), as the server keeps them
  const times = [], rates = [], byteRates = [];
  let hostsLast = new Map(); // host -> [time, attempts ended], for each host's rate
  const $ = (id) => document.getElementById(id);
  // Everything shown comes from the run's input and from servers: escape it all.
  const esc = (v) => String(v).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  // Binary units, as the command line's (1 KiB = 1,024 bytes).
  const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
  const bytes = (n) => {
    let i = 0;
    while (Math.abs(n) >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : Math.round(n)) + " " + UNITS[i];
  };
  // A chart's value axis starts at 0 (and shows at least 0..1 when everything is 0).
  const fromZero = (u, min, max) => [0, max > 0 ? max * 1.05 : 1];
  const fmt = (n) => (n === null || n === undefined) ? "—" : Math.round(n).toLocaleString("en");
  const ms = (n) => (n === null || n === undefined) ? "—" : n.toFixed(1) + " ms";
  const duration = (s) => {
    if (s === null || s === undefined) return "—";
    const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), r = Math.round(s % 60);
    return h ? `${h}h ${m}m` : m ? `${m}m ${r}s` : `${r}s`;
  };
  function chart(id, label, values) {
    const element = $(id);
    return new uPlot({ width: Math.max(320, element.clientWidth || 480), height: 180,
      series: [{}, { label: label, stroke: "#3b7ddd", fill: "rgba(59,125,221,0.12)",
        value: (u, v) => v === null ? "—" : values([v])[0] }],
      scales: { y: { range: fromZero } },
      axes: [{}, { size: 80, values: (u, splits) => values(splits) }] }, [[], []], element);
  }
  const rateChart = chart("chart-rate", "requests/s", (vs) => vs.map(fmt));
  const bytesChart = chart("chart-bytes", "bytes/s", (vs) => vs.map((v) => bytes(v) + "/s"));
  const latencyChart = new uPlot({ width: Math.max(320, $("chart-latency").clientWidth || 360), height: 160,
    series: [{}, { label: "requests", stroke: "#7b51c2", fill: "rgba(123,81,194,0.15)" }],
    scales: { x: { time: false, distr: 3 }, y: { range: fromZero } },
    axes: [{ label: "ms" }, { size: 50 }] },
    [[], []], $("chart-latency"));
  function table(id, counts) {
    const rows = Object.entries(counts).sort();
    $(id).innerHTML = rows.length ? rows.map(([k, v]) =>
      `<tr><td>${esc(k)}</td><td data-name="${esc(k)}">${fmt(v)}</td></tr>`).join("") :
      "<tr><td>none</td></tr>";
  }
  function hosts(data, now) {
    const seen = new Map();
    for (const h of data.hosts.concat(data.busiest)) seen.set(h.host, h);
    const counted = new Map();
    $("hosts").tBodies[0].innerHTML = Array.from(seen.values()).map((h) => {
      const before = hostsLast.get(h.host);
      counted.set(h.host, [now, h.done]);
      const rate = before && now > before[0] && h.done >= before[1] ?
        fmt((h.done - before[1]) / (now - before[0])) : "—";
      const state = h.endpoint ? `${h.state} ${h.endpoint}` : h.state;
      return `<tr><td>${esc(h.host)}</td><td>${esc(state)}</td><td>${h.in_flight}</td>` +
        `<td>${h.queued}</td><td>${rate}</td><td>${h.cap}</td><td>${h.delay_s}</td>` +
        `<td>${h.wait_s}</td><td>${h.failures}</td>` +
        `<td class="message">${h.last_error === null ? "" : esc(h.last_error)}</td></tr>`;
    }).join("");
    hostsLast = counted;
  }
  function recent(samples, now) {
    $("recent").tBodies[0].innerHTML = samples.length ? samples.map((e) =>
      `<tr><td>${esc(e.kind)}</td><td>${duration(Math.max(0, now - e.at))} ago</td>` +
      `<td class="message">${esc(e.url)}</td><td class="message">${esc(e.message)}</td></tr>`
    ).join("") : "<tr><td>none</td></tr>";
  }
  function workers(list) {
    // A shared job (many workers on one store): the whole job's progress, and who runs it.
    $("workers_section").hidden = !list.length;
    $("by_workers").textContent = list.length ? ` by ${list.length} worker${list.length > 1 ? "s" : ""}` : "";
    $("workers").tBodies[0].innerHTML = list.map((w) =>
      `<tr><td>${esc(w.worker)}</td><td>${esc(w.machine)}</td><td>${w.pid}</td>` +
      `<td>${fmt(w.hosts)}</td><td>${fmt(w.ok)}</td><td>${fmt(w.failed)}</td>` +
      `<td>${duration(w.seen_s)} ago</td></tr>`).join("");
  }
  function show(data) {
    for (const key of ["ok", "failed", "in_flight", "queued", "waiting_retry", "retries", "done"])
      $(key).textContent = fmt(data[key]);
    const shared = (data.workers || []).length > 0;
    workers(data.workers || []);
    const jobDone = data.job_ok + data.job_failed;
    if (shared) $("done").textContent = fmt(jobDone);
    const unit = data.unit || "request";  // a map's work is items, and moves no bytes
    $("rate_unit").textContent = unit + "s/s";
    $("rate_title").textContent = unit[0].toUpperCase() + unit.slice(1) + "s per second";
    $("bytes_tile").hidden = unit !== "request";
    const links = data.links || {};
    if (links.found) {  // a crawl: what became of the links its pages gave
      for (const tile of document.querySelectorAll(".tiles .links")) tile.hidden = false;
      $("links_found").textContent = fmt(links.found);
      $("links_admitted").textContent = fmt(links.admitted);
      $("links_left_out").textContent = fmt(links.found - links.admitted);
    }
    $("total").textContent = data.total === null ? "?" : fmt(data.total) + (data.total_is_estimate ? " (estimate)" : "");
    $("eta").textContent = data.finished ? "—" : data.paused ? "paused" : duration(data.eta_s);
    const total = data.total ? (shared ? data.total : data.total - data.skipped) : 0;
    const counted = shared ? jobDone : data.done;
    $("bar-fill").style.width = total ? Math.min(100, 100 * counted / total) + "%" : "0";
    $("p50").textContent = ms(data.latency_p50_ms); $("p90").textContent = ms(data.latency_p90_ms);
    $("p99").textContent = ms(data.latency_p99_ms); $("pmax").textContent = ms(data.latency_max_ms);
    const now = Date.now() / 1000;
    table("statuses", data.by_status); table("errors", data.by_error);
    hosts(data, now); recent(data.recent_errors, now);
    plot(data.chart || []);
    const buckets = data.latency_buckets.map(([b, n]) => [Math.expm1((b + 0.5) / 40), n]);
    latencyChart.setData([buckets.map((p) => p[0]), buckets.map((p) => p[1])]);
    const state = $("state");
    state.className = "state";
    if (data.finished) {
      state.textContent = data.interrupted ? "stopped" : "finished";
      state.classList.add(data.interrupted ? "stopped" : "finished");
    } else if (data.interrupted) { state.textContent = "stopping"; state.classList.add("stopped"); }
    else if (data.paused) { state.textContent = "paused"; state.classList.add("paused"); }
    else { state.textContent = "running"; }
    document.body.dataset.done = data.done;
  }
  const seen = new Map(); // server time -> [rate, bytes rate]: the charts' points
  function plot(points) {
    // Merge the points (the history may arrive after an event's newest), keep the last KEEP.
    const before = seen.size;
    for (const [at, rate, bytesRate] of points) seen.set(at, [rate, bytesRate]);
    if (seen.size === before) return;
    const kept = Array.from(seen.keys()).sort((x, y) => x - y).slice(-KEEP);
    for (const at of seen.keys()) if (at < kept[0]) seen.delete(at);
    times.length = rates.length = byteRates.length = 0;
    for (const at of kept) { const [r, b] = seen.get(at); times.push(at); rates.push(r); byteRates.push(b); }
    $("rate").textContent = fmt(rates[rates.length - 1]);
    $("bytes_rate").textContent = bytes(byteRates[byteRates.length - 1]);
    rateChart.setData([times, rates]); bytesChart.setData([times, byteRates]);
    document.body.dataset.points = times.length;
  }
  window.shoalCharts = { rate: rateChart, bytes: bytesChart, latency: latencyChart };
  fetch("/api/history").then((r) => r.ok ? r.json() : { points: [] })
    .then((history) => plot(history.points)).catch(() => {});
  const events = new EventSource("/api/events");
  events.addEventListener("stats", (event) => show(JSON.parse(event.data)));
  events.onerror = () => { $("state").textContent = "disconnected"; };
  for (const action of ["pause", "resume", "stop"]) {
    $(action).addEventListener("click", () => fetch("/api/" + action, { method: "POST" }));
  }
})();
