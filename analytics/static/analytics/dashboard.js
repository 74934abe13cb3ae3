/* The analytics dashboard: draws the page's charts from its embedded figures, then polls
   data.json every few seconds so a running campaign fills the charts as it goes.
   body[data-charts] counts the charts drawn (the headless-browser check reads it). */
(function () {
  "use strict";
  var POLL_MS = 5000;
  var COLORS = {
    sent: "#2563eb", delivered: "#0891b2", opens: "#16a34a", clicks: "#ca8a04",
    replies: "#9333ea", hard_bounces: "#dc2626", blocked_bounces: "#f97316",
    spam_reports: "#be123c", unsubscribes: "#64748b", machine_opens: "#86efac", bot_clicks: "#fde68a"
  };
  var charts = {};

  function el(tag, attrs, text) {
    var node = document.createElementNS(tag === "svg" || attrs.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
    Object.keys(attrs).forEach(function (k) { if (k !== "svg") node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + " %"; }

  function chart(id, config) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    if (charts[id]) {
      charts[id].data = config.data;
      charts[id].update("none");
      return;
    }
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
    charts[id] = new window.Chart(canvas, config);
    document.body.dataset.charts = Object.keys(charts).length;
  }

  function series(points, names, label) {
    return names.map(function (name) {
      return { label: name.replace(/_/g, " "), data: points.map(function (p) { return p[name]; }),
               borderColor: COLORS[name], backgroundColor: COLORS[name], tension: 0.25, pointRadius: 0 };
    });
  }

  function hourLabel(iso) { var d = iso.slice(5, 16).replace("T", " "); return d; }

  function drawCards(id, cards) {
    var box = document.getElementById(id);
    if (!box) return;
    box.textContent = "";
    cards.forEach(function (c) {
      var card = el("div", { "class": "card" });
      card.appendChild(el("b", {}, c[1]));
      card.appendChild(el("span", {}, c[0]));
      box.appendChild(card);
    });
  }

  function drawPlan(graph) {
    var box = document.getElementById("plan");
    if (!box) return;
    var W = 200, H = 92, GX = 70, GY = 28, pos = {}, cols = 0, rows = 0;
    graph.nodes.forEach(function (n) {
      pos[n.name] = { x: 10 + n.column * (W + GX), y: 10 + n.row * (H + GY), n: n };
      cols = Math.max(cols, n.column + 1); rows = Math.max(rows, n.row + 1);
    });
    var svg = el("svg", { width: cols * (W + GX) + 20, height: rows * (H + GY) + 20, viewBox: "0 0 " + (cols * (W + GX) + 20) + " " + (rows * (H + GY) + 20) });
    var defs = el("defs", { svg: 1 });
    var marker = el("marker", { svg: 1, id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.appendChild(el("path", { svg: 1, d: "M 0 0 L 10 5 L 0 10 z", fill: "#94a3b8" }));
    defs.appendChild(marker); svg.appendChild(defs);
    graph.edges.forEach(function (e) {
      var a = pos[e.from], b = pos[e.to];
      if (!a || !b) return;
      var x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      if (b.x <= a.x) { x1 = a.x + W / 2; y1 = a.y + H; x2 = b.x + W / 2; y2 = b.y + H; }
      var mx = (x1 + x2) / 2;
      var d = b.x > a.x ? "M" + x1 + "," + y1 + " C" + mx + "," + y1 + " " + mx + "," + y2 + " " + x2 + "," + y2
                        : "M" + x1 + "," + y1 + " C" + x1 + "," + (y1 + 40) + " " + x2 + "," + (y2 + 40) + " " + x2 + "," + y2;
      svg.appendChild(el("path", { svg: 1, d: d, fill: "none", stroke: "#94a3b8", "stroke-width": 1.5, "marker-end": "url(#arrow)" }));
      svg.appendChild(el("text", { svg: 1, x: mx, y: (y1 + y2) / 2 - 4, "class": "edge" }, e.label));
    });
    graph.nodes.forEach(function (n) {
      var p = pos[n.name], g = el("g", { svg: 1, "class": "node " + n.type, "data-step": n.name });
      g.appendChild(el("rect", { svg: 1, x: p.x, y: p.y, width: W, height: H, rx: 8 }));
      g.appendChild(el("text", { svg: 1, x: p.x + 10, y: p.y + 20, "class": "name" }, n.name + " · " + n.type));
      var lines = n.type === "email"
        ? ["sent " + n.sent + " · delivered " + n.delivered, "opened " + n.unique_opens + " · clicked " + n.unique_clicks, "replied " + n.unique_replies]
        : n.type === "sms"
        ? ["texted " + n.sms_sent + " · delivered " + n.sms_delivered, "undelivered " + n.sms_undelivered, "replied " + n.sms_replies + " · opted out " + n.sms_opt_outs]
        : n.type === "end" ? ["finished here " + n.finished] : [];
      lines.push("on this step now " + n.here);
      lines.forEach(function (line, i) {
        g.appendChild(el("text", { svg: 1, x: p.x + 10, y: p.y + 40 + i * 15, "class": "count" }, line));
      });
      svg.appendChild(g);
    });
    box.textContent = "";
    box.appendChild(svg);
    document.body.dataset.plan = graph.nodes.length;
  }

  function drawTable(id, rows) {
    var body = document.querySelector("#" + id + " tbody");
    if (!body || !rows.length) return;
    body.textContent = "";
    rows.forEach(function (cells) {
      var tr = el("tr", {});
      cells.forEach(function (c) {
        var td = el("td", c && c.cls ? { "class": c.cls } : {});
        if (c && c.href) { td.appendChild(el("a", { href: c.href }, c.text)); } else { td.textContent = c && c.text !== undefined ? c.text : c; }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function campaign(data) {
    var a = data.analytics, t = a.totals;
    var cards = [["enrolled", t.enrolled], ["sent", t.sent], ["delivered", t.delivered],
      ["open rate", pct(t.rates.open_rate)], ["click rate", pct(t.rates.click_rate)], ["reply rate", pct(t.rates.reply_rate)],
      ["bounce rate", pct(t.rates.bounce_rate)], ["spam reports", t.spam_reports], ["unsubscribes", t.unsubscribes]];
    // Texts have counters of their own (the email cards never include them).
    if (t.sms_sent || t.sms_failed) {
      cards.push(["texts sent", t.sms_sent], ["texts delivered", t.sms_delivered],
        ["text replies", t.sms_replies], ["text opt-outs", t.sms_opt_outs]);
    }
    drawCards("campaign-cards", cards);
    chart("funnel", { type: "bar", data: { labels: a.funnel.map(function (s) { return s.stage; }),
      datasets: [{ label: "leads / messages", data: a.funnel.map(function (s) { return s.count; }), backgroundColor: ["#64748b", "#2563eb", "#0891b2", "#16a34a", "#ca8a04", "#9333ea"] }] },
      options: { indexAxis: "y", plugins: { legend: { display: false } } } });
    chart("variants", { type: "bar", data: { labels: a.variants.map(function (v) { return v.step + " / " + v.variant; }),
      datasets: [["open_rate", "#16a34a", "open"], ["click_rate", "#ca8a04", "click"], ["reply_rate_over_delivered", "#9333ea", "reply"]].map(function (r) {
        return { label: r[2] + " rate", backgroundColor: r[1], data: a.variants.map(function (v) { return (v.rates[r[0]] || 0) * 100; }) };
      }) }, options: { scales: { y: { title: { display: true, text: "% of delivered" }, beginAtZero: true } } } });
    var pts = data.hourly.points;
    chart("hourly", { type: "line", data: { labels: pts.map(function (p) { return hourLabel(p.start); }),
      datasets: series(pts, ["sent", "delivered", "opens", "clicks", "replies", "hard_bounces", "unsubscribes"]) },
      options: { interaction: { mode: "index", intersect: false }, scales: { y: { beginAtZero: true } } } });
    drawPlan(a.plan_graph);
    drawTable("journey", Object.keys(a.journey.states).map(function (k) { return [k, a.journey.states[k]]; }));
    drawTable("reasons", Object.keys(a.journey.reasons).map(function (k) { return [k, a.journey.reasons[k]]; }));
    return a.as_of;
  }

  function tenant(data) {
    var acc = data.account, t = acc.totals;
    drawCards("account-cards", [["sent (30 days)", t.sent], ["delivered", t.delivered], ["open rate", pct(t.rates.open_rate)],
      ["reply rate", pct(t.rates.reply_rate)], ["bounce rate", pct(t.rates.bounce_rate)], ["spam rate", pct(t.rates.spam_rate)]]);
    chart("account-daily", { type: "bar", data: { labels: acc.by_day.map(function (d) { return d.day; }),
      datasets: series(acc.by_day, ["sent", "opens", "clicks", "replies", "hard_bounces"]) },
      options: { scales: { y: { beginAtZero: true } } } });
    var share = location.search;
    drawTable("campaigns", data.campaigns.map(function (c) {
      return [{ text: c.name, href: "campaigns/" + c.id + "/" + share }, c.status, c.sent, c.delivered, pct(c.rates.open_rate),
              pct(c.rates.click_rate), pct(c.rates.reply_rate), pct(c.rates.bounce_rate), c.unsubscribes];
    }));
    drawTable("senders", data.senders.map(function (s) {
      return [s.from_email, s.owner_name, s.sent, { text: pct(s.spam_rate), cls: s.spam_status }, { text: pct(s.bounce_rate), cls: s.bounce_status }];
    }));
    return acc.as_of;
  }

  function render(data) {
    var page = document.body.dataset.page;
    var asOf = page === "campaign" ? campaign(data) : page === "tenant" ? tenant(data) : null;
    var fresh = document.getElementById("freshness");
    if (fresh) fresh.textContent = asOf ? "figures as of " + new Date(asOf).toLocaleTimeString() : "";
    document.body.dataset.rendered = String(Date.now());
  }

  function poll() {
    var url = document.body.dataset.pollUrl;
    if (!url) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) render(data); })
      .catch(function () {})
      .then(function () { setTimeout(poll, POLL_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var node = document.getElementById("dashboard-data");
    var data = node ? JSON.parse(node.textContent) : null;
    if (data && window.Chart) render(data);
    setTimeout(poll, POLL_MS);
  });
})();
