// liveshelf live-room console. Plain JavaScript, no build step, no third-party code.
// Reads /v1/dashboard/* and /v1/users/{user}/{profile,feed}; draws charts as inline SVG.
// Text from the server (titles, comments, ids) is only ever set with textContent.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const replayStart = parseTime(params.get("at"));
  const speed = Number(params.get("speed") || "1") > 0 ? Number(params.get("speed") || "1") : 1;
  const loadedAt = performance.now();
  const KEY_STORE = "liveshelf.apiKey";
  const SVG = "http://www.w3.org/2000/svg";

  const state = {
    config: null, pollMs: 2000, busy: false, timer: null, room: null, changes: null,
    serverTime: null, lastTick: 0, modelsLoaded: false,
  };

  // ------------------------------------------------------------------ clock
  function parseTime(text) {
    if (text === null || text === "") return null;
    if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
    // an unencoded "+00:00" arrives as " 00:00" (a '+' in a query string is a space)
    const ms = Date.parse(text.trim().replace(/ (\d\d:?\d\d)$/, "+$1"));
    return Number.isNaN(ms) ? null : ms / 1000;
  }

  /** Epoch seconds the page asks about: the replay clock, or null for the server's now. */
  function clock() {
    if (replayStart === null) return null;
    return replayStart + ((performance.now() - loadedAt) / 1000) * speed;
  }

  function fmtTime(sec, withDate = true) {
    if (sec === null || sec === undefined) return "–";
    const iso = new Date(sec * 1000).toISOString();
    return withDate ? iso.slice(0, 19).replace("T", " ") + " UTC" : iso.slice(11, 19);
  }

  function showClock() {
    const c = clock();
    const el = document.getElementById("clock");
    if (c === null) {
      el.textContent = state.serverTime ? "live · " + fmtTime(state.serverTime) : "live";
    } else {
      el.textContent = "replay" + (speed !== 1 ? " ×" + speed : "") + " · " + fmtTime(c);
    }
  }

  // ------------------------------------------------------------------ DOM helpers
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "style") el.style.cssText = v; // CSSOM, allowed by the page's CSP (attributes are not)
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k.startsWith("data-")) el.setAttribute(k, String(v));
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function s(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  function fill(id, ...children) {
    const el = document.getElementById(id);
    el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
    return el;
  }

  const money = (v) => "¥" + Number(v || 0).toLocaleString("en-US", { maximumFractionDigits: 0 });
  const pct = (v) => (v === null || v === undefined ? "–" : Math.round(v * 100) + "%");

  function setStatus(text, kind) {
    const el = document.getElementById("status");
    el.textContent = text || "";
    el.className = "status" + (kind ? " " + kind : "");
  }

  // ------------------------------------------------------------------ API
  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  function detailText(body, status) {
    if (!body || body.detail === undefined) return "HTTP " + status;
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    return JSON.stringify(body.detail);
  }

  async function api(path, options = {}) {
    const url = new URL(path, location.origin);
    const at = clock();
    if (at !== null && options.at !== false) url.searchParams.set("at", at.toFixed(3));
    for (const [k, v] of Object.entries(options.query || {})) url.searchParams.set(k, v);
    const headers = { Accept: options.blob ? "image/png" : "application/json" };
    const key = sessionStorage.getItem(KEY_STORE);
    if (key) headers["X-API-Key"] = key;
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(url, {
      method: options.method || "GET", headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    if (!res.ok) {
      let body = null;
      try { body = await res.json(); } catch (_) { body = null; }
      throw new ApiError(res.status, detailText(body, res.status));
    }
    return options.blob ? res.blob() : res.json();
  }

  function handleError(err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      document.getElementById("key-form").hidden = false;
      setStatus(err.message, "warn");
    } else {
      setStatus(err.message || String(err), "error");
    }
  }

  // ------------------------------------------------------------------ charts
  /** Comment volume bars and the negative share line over the last buckets. */
  function sparkline(buckets, width = 150, height = 36) {
    const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "spark", role: "img" });
    const n = buckets.length || 1;
    const bw = width / n;
    const top = Math.max(1, ...buckets.map((b) => b.n));
    svg.append(s("line", { x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5, class: "axis" }));
    buckets.forEach((b, i) => {
      const bh = (b.n / top) * (height - 4);
      svg.append(s("rect", { x: i * bw + 1, y: height - bh, width: Math.max(1, bw - 2), height: bh, class: "vol" }));
    });
    const pts = buckets.map((b, i) => (b.share === null ? null : [i * bw + bw / 2, height - 2 - b.share * (height - 4)]));
    let path = "";
    pts.forEach((p, i) => {
      if (!p) return;
      path += (i > 0 && pts[i - 1] ? " L " : " M ") + p[0].toFixed(1) + " " + p[1].toFixed(1);
    });
    if (path) svg.append(s("path", { d: path.trim(), class: "neg" }));
    pts.forEach((p) => { if (p) svg.append(s("circle", { cx: p[0], cy: p[1], r: 1.8, class: "neg-dot" })); });
    const title = s("title");
    title.textContent = "comments per bucket (bars) and negative share (line)";
    svg.append(title);
    return svg;
  }

  /** Horizontal bars: [{key, share}] (shares in [0, 1]; ``raw``: plain weights). Category paths show their leaf. */
  function shareBars(rows, cls = "", raw = false) {
    if (!rows.length) return h("p", { class: "empty", text: "no item interests yet" });
    const max = Math.max(...rows.map((r) => r.share), 1e-9);
    return h("ul", { class: "bars " + cls }, rows.map((r) =>
      h("li", { "data-key": r.key, title: r.key },
        h("span", { class: "bar-label", text: r.key.split(">").pop().trim() }),
        h("span", { class: "bar-track" }, h("span", { class: "bar", style: `width:${(100 * r.share / max).toFixed(1)}%` })),
        h("span", { class: "bar-value", text: raw ? r.share.toFixed(1) : pct(r.share) }))));
  }

  function reasonChips(reasons) {
    const all = reasons || [];
    const shown = [...all.filter((r) => r.source !== "comments-negative").slice(0, 3),
      ...all.filter((r) => r.source === "comments-negative")];
    return h("span", { class: "chips" }, shown.map((r) => {
      const what = r.interest || r.item || r.host || r.shelf_item || "";
      return h("span", { class: "chip " + r.source, title: `${r.source} ${r.score}` },
        r.source + (what && r.source !== "on-shelf" && r.source !== "live-now" ? " · " + what : ""));
    }));
  }

  // ------------------------------------------------------------------ rooms
  async function loadRooms() {
    const data = await api("/v1/dashboard/rooms");
    state.serverTime = data.at;
    const empty = document.getElementById("rooms-empty");
    if (!data.rooms.length) {
      empty.hidden = false;
      empty.replaceChildren("No room is live at " + fmtTime(data.at) + ".");
      if (data.data_until) {
        const link = h("a", { href: "?at=" + encodeURIComponent(data.data_until) + "#rooms", text: "replay from there" });
        empty.append(" The stored events end at " + fmtTime(parseTime(data.data_until)) + ": ", link, ".");
      }
    } else {
      empty.hidden = true;
    }
    fill("rooms", data.rooms.map((r) => {
      const alert = r.alerts && r.alerts.length;
      return h("a", { class: "room-card" + (alert ? " alerting" : ""), href: "#room/" + encodeURIComponent(r.room), "data-room": r.room },
        h("div", { class: "card-head" },
          h("strong", { text: r.title || r.room }),
          alert ? h("span", { class: "badge alert", text: "alert" }) : null),
        h("div", { class: "muted", text: `${r.room} · host ${r.host || "–"} · ${r.shelf_size} items` }),
        h("div", { class: "kpis" },
          kpi("viewers", r.audience, "audience"), kpi("GMV", money(r.gmv), "gmv"), kpi("orders", r.orders, "orders"),
          kpi("negative", data.comments_monitored ? pct(r.negative_share) : "off", "negative")),
        h("div", { class: "spark-row" }, sparkline(r.spark), h("span", { class: "muted", text: `${r.comments} comments / 5 min` })));
    }));
  }

  function kpi(label, value, name) {
    return h("div", { class: "kpi", "data-kpi": name }, h("span", { class: "kpi-value", text: String(value) }),
      h("span", { class: "kpi-label", text: label }));
  }

  // ------------------------------------------------------------------ one room
  async function loadRoom(room) {
    const data = await api("/v1/dashboard/rooms/" + encodeURIComponent(room));
    state.serverTime = data.at;
    renderRoom(data);
  }

  function renderRoom(data) {
    fill("room-title", (data.title || data.room) + " ", h("span", { class: "muted", text: `${data.room} · host ${data.host || "–"}` }),
      data.live ? h("span", { class: "badge live", text: "LIVE" }) : h("span", { class: "badge ended", text: "ended" }));
    fill("room-kpis", kpi("viewers", data.audience.viewers, "audience"), kpi("with history", data.audience.known, "known"),
      kpi("GMV", money(data.gmv), "gmv"), kpi("orders", data.orders, "orders"),
      kpi("model", data.model_version || "–", "model"));
    document.getElementById("audience").title =
      `shares averaged over the ${data.audience.with_interests} viewers whose history names items`;
    document.getElementById("simulate").disabled = !data.live || !data.items.length;

    const a = data.audience;
    fill("audience",
      h("h4", { text: "Categories" }), shareBars(a.categories, "categories"),
      h("h4", { text: "Sub-categories" }), shareBars(a.leaf_categories.slice(0, 4), "leaves"),
      h("h4", { text: "Brands" }), shareBars(a.brands.slice(0, 4), "brands"));

    const moves = {};
    if (state.changes && state.changes.room === data.room) {
      for (const m of state.changes.moves) moves[m.item] = m;
    }
    const nextId = data.next_item ? data.next_item.item : null;
    const top = Math.max(...data.items.map((i) => i.score), 1e-9);
    fill("shelf", data.items.map((it) => {
      const m = moves[it.item];
      let delta = null;
      if (m && m.before !== null && m.after !== null) {
        const d = m.before - m.after;
        delta = h("span", { class: "delta " + (d > 0 ? "up" : "down"), text: (d > 0 ? "▲" : "▼") + Math.abs(d) });
      } else if (m && m.before === null) {
        delta = h("span", { class: "delta up", text: "new" });
      }
      const demoted = (it.reasons || []).some((r) => r.source === "comments-negative");
      return h("li", { "data-item": it.item, class: (it.item === nextId ? "next " : "") + (demoted ? "demoted" : ""),
        title: demoted ? "demoted: recent comments about this item are negative" : null },
        h("div", { class: "row" }, h("span", { class: "title", text: it.title || it.item }), delta),
        h("div", { class: "row" },
          h("span", { class: "bar-track" }, h("span", { class: "bar", style: `width:${(100 * it.score / top).toFixed(1)}%` })),
          h("span", { class: "score", text: it.score.toFixed(3) })),
        reasonChips(it.reasons));
    }));
    if (!data.items.length) fill("shelf", h("p", { class: "empty", text: "The shelf is empty now." }));

    const p = data.pitch;
    if (data.next_item) {
      fill("next-item", h("div", { class: "next-card", "data-item": data.next_item.item },
        h("div", { class: "next-title", text: data.next_item.title || data.next_item.item }),
        p && p.reason ? h("p", { class: "reason" }, h("strong", { text: "Why: " }), p.reason) : null,
        p && p.talking_points ? h("ol", { class: "points" }, p.talking_points.map((t) => h("li", { text: t }))) : null,
        p && p.push ? h("p", { class: "push" }, h("strong", { text: "Push line: " }), p.push) : null,
        reasonChips(data.next_item.reasons)));
    } else {
      fill("next-item", h("p", { class: "empty", text: "Nothing to present: the shelf is empty." }));
    }

    const sen = data.sentiment;
    fill("sentiment", sen
      ? [kpi("negative (5 min)", pct(sen.negative_share), "negative"), kpi("baseline", pct(sen.baseline), "baseline"),
        kpi("comments", sen.volume, "volume"),
        sen.keywords && sen.keywords.length ? h("div", { class: "keywords" }, "complaints: ",
          sen.keywords.slice(0, 6).map((k) => h("span", { class: "chip neg", text: k }))) : null]
      : h("p", { class: "muted", text: "Sentiment is off (no sentiment model: liveshelf sentiment train)." }));
    fill("comments", data.comments.length ? data.comments.map((c) =>
      h("li", { class: c.negative === null ? "unknown" : c.negative ? "negative" : "positive",
        title: c.p_negative === null ? "" : `P(negative) = ${c.p_negative}` },
      h("span", { class: "time", text: fmtTime(c.ts, false) }),
      h("span", { class: "user", text: c.user }),
      h("span", { class: "text", text: c.text }),
      c.item_title ? h("span", { class: "about", text: "about " + c.item_title }) : null))
      : h("li", { class: "empty", text: "No comments in the last 30 minutes." }));
    fill("alerts", data.alerts.length ? data.alerts.map((al) =>
      h("li", { class: "alert" },
        h("strong", { text: fmtTime(al.ts, false) + " negative spike" }),
        ` ${pct(al.negative_share)} of ${al.n} comments (baseline ${pct(al.baseline)}, z ${al.z})`,
        al.keywords && al.keywords.length ? h("div", { class: "keywords" },
          al.keywords.map((k) => h("span", { class: "chip neg", text: k }))) : null))
      : h("li", { class: "empty", text: "No alerts." }));
  }

  async function simulate() {
    const room = state.room;
    const button = document.getElementById("simulate");
    button.disabled = true;
    setStatus("simulating 100 viewers …");
    try {
      const out = await api("/v1/dashboard/rooms/" + encodeURIComponent(room) + "/simulate",
        { method: "POST", body: { viewers: 100 } });
      state.changes = { room, moves: out.changes.moves };
      renderChanges(out);
      renderRoom(out.after);
      setStatus(`${out.posted.accepted} events posted for ${out.burst.viewers} viewers (favouring ${out.burst.focus})`, "ok");
    } catch (err) {
      handleError(err);
    } finally {
      button.disabled = false;
    }
  }

  function titleOf(view, item) {
    const it = view.items.find((i) => i.item === item);
    return it ? it.title || item : item || "–";
  }

  function renderChanges(out) {
    const c = out.changes;
    const el = fill("changes",
      h("h3", { text: `What ${out.burst.viewers} simulated viewers changed` }),
      h("div", { class: "change-grid" },
        change("viewers", c.audience.before, c.audience.after),
        change("top categories", c.top_categories.before.join(", ") || "–", c.top_categories.after.join(", ") || "–"),
        change("GMV", money(c.gmv.before), money(c.gmv.after)),
        change("next item", titleOf(out.before, c.next_item.before), titleOf(out.after, c.next_item.after),
          c.next_item.changed ? "changed" : "same"),
        change("shelf order", "", c.shelf_order_changed ? `${c.moves.length} items moved` : "unchanged")));
    el.hidden = false;
  }

  function change(label, before, after, note) {
    return h("div", { class: "change", "data-change": label },
      h("span", { class: "kpi-label", text: label }),
      before !== "" ? h("span", { class: "before", text: String(before) }) : null,
      before !== "" ? h("span", { class: "arrow", text: "→" }) : null,
      h("span", { class: "after", text: String(after) }),
      note ? h("span", { class: "badge " + note, text: note }) : null);
  }

  // ------------------------------------------------------------------ viewer
  async function loadViewer(user) {
    document.getElementById("viewer-id").value = user;
    const enc = encodeURIComponent(user);
    const [profile, feed] = await Promise.all([api(`/v1/users/${enc}/profile`), api(`/v1/users/${enc}/feed`)]);
    const i = profile.interests;
    const weights = (rows) => rows.map((r) => ({ key: r.key, share: r.weight }));
    fill("viewer-profile",
      h("div", { class: "kpis" }, kpi("events", profile.events, "events"),
        kpi("last seen", profile.last_ts ? fmtTime(profile.last_ts) : "never", "last"),
        kpi("feed", feed.fallback ? "trending (new viewer)" : "personal", "fallback")),
      h("div", { class: "muted", text: Object.entries(profile.event_types || {}).map(([k, v]) => `${k} ${v}`).join(" · ") }),
      i && (i.tags_en || i.tags_zh) ? h("div", { class: "keywords" }, "tags: ",
        ((i.tags_en && i.tags_en.length ? i.tags_en : i.tags_zh) || []).slice(0, 8).map((t) => h("span", { class: "chip", text: t }))) : null,
      h("h4", { text: "Categories (decayed weight)" }), shareBars(weights(profile.top_categories || []), "", true),
      h("h4", { text: "Brands (decayed weight)" }), shareBars(weights(profile.top_brands || []), "", true),
      h("h4", { text: "Hosts (decayed weight)" }), shareBars(weights(profile.top_hosts || []), "", true));
    fill("viewer-feed", feed.rooms.length ? feed.rooms.map((r) =>
      h("li", { "data-room": r.room },
        h("a", { href: "#room/" + encodeURIComponent(r.room), text: r.title || r.room }),
        h("span", { class: "muted", text: ` host ${r.host || "–"} · ${r.shelf_size} items · score ${r.score.toFixed(3)}` }),
        reasonChips(r.reasons)))
      : h("li", { class: "empty", text: "No room is live now." }));
  }

  // ------------------------------------------------------------------ models
  async function loadModels() {
    const [m, e] = await Promise.all([api("/v1/dashboard/models", { at: false }), api("/v1/dashboard/experiments", { at: false })]);
    fill("models", m.models.length ? m.models.map((model) => h("div", { class: "panel" },
      h("h3", { text: `${model.name} (${model.role}) · serving ${model.serving || "nothing yet"}` }),
      model.versions.length ? h("table", { class: "versions" },
        h("thead", {}, h("tr", {}, ["version", "type", "created", "metrics", ""].map((c) => h("th", { text: c })))),
        h("tbody", {}, model.versions.map((v) => h("tr", { class: v.production ? "production" : "", "data-version": v.version },
          h("td", { text: v.version }), h("td", { text: v.model_type }), h("td", { text: v.created_at.slice(0, 19).replace("T", " ") }),
          h("td", { class: "metrics" }, Object.entries(v.metrics || {}).slice(0, 8).map(([k, val]) =>
            h("span", { class: "chip", text: `${k} ${typeof val === "number" ? Number(val.toFixed(4)) : JSON.stringify(val)}` }))),
          h("td", {}, v.production ? h("span", { class: "badge live", text: "production" }) : null)))))
        : h("p", { class: "empty", text: "No version registered yet (liveshelf train --register)." }),
      model.history.length ? h("p", { class: "muted", text: "history: " + model.history.slice(-5).map((ev) =>
        `${ev.action} ${ev.version}`).join(" · ") }) : null))
      : h("p", { class: "empty", text: "No model is served." }));
    const box = fill("experiments");
    if (!e.available || !e.experiments.length) {
      box.append(h("p", { class: "empty", text: "No experiments." }));
      return;
    }
    for (const ex of e.experiments) {
      const sum = ex.summary || {};
      const panel = h("div", { class: "panel experiment", "data-experiment": ex.name },
        h("h3", { text: `${ex.name} · ${sum.status || ""}` }),
        h("p", { class: "muted", text: `arms ${(sum.arms || []).join(" / ")} · shares ${JSON.stringify(sum.shares || {})} · primary ${sum.primary || "–"}` }));
      box.append(panel);
      for (const file of ex.reports) {
        const blob = await api(`/v1/dashboard/experiments/${encodeURIComponent(ex.name)}/reports/${encodeURIComponent(file)}`,
          { at: false, blob: true });
        panel.append(h("img", { src: URL.createObjectURL(blob), alt: `${ex.name} ${file}`, class: "report" }));
      }
    }
  }

  // ------------------------------------------------------------------ routing and polling
  function route() {
    const [name, ...rest] = (location.hash.replace(/^#/, "") || "rooms").split("/");
    return { name, arg: rest.length ? decodeURIComponent(rest.join("/")) : null };
  }

  function show(view) {
    for (const sec of document.querySelectorAll("section.view")) sec.hidden = sec.id !== "view-" + view;
    const tab = view === "room" ? "rooms" : view;
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.tab === tab);
  }

  async function refresh(force = false) {
    if (state.busy) return;
    if (state.config && state.config.read_key_required && !sessionStorage.getItem(KEY_STORE)) {
      document.getElementById("key-form").hidden = false;
      setStatus("This server needs an API key for reads: enter one above.", "warn");
      return;
    }
    state.busy = true;
    const r = route();
    try {
      if (r.name === "room" && r.arg) {
        if (state.room !== r.arg) { state.room = r.arg; state.changes = null; fill("changes").hidden = true; }
        show("room");
        await loadRoom(r.arg);
      } else if (r.name === "viewer") {
        show("viewer");
        if (r.arg && force) await loadViewer(r.arg);
      } else if (r.name === "models") {
        show("models");
        if (force || !state.modelsLoaded) { await loadModels(); state.modelsLoaded = true; }
      } else {
        show("rooms");
        await loadRooms();
      }
      if (document.getElementById("status").classList.contains("error")) setStatus("");
    } catch (err) {
      handleError(err);
    } finally {
      state.busy = false;
      showClock();
    }
  }

  async function start() {
    try {
      state.config = await api("/v1/dashboard/config", { at: false });
      state.pollMs = Math.min(2000, state.config.poll_ms || 2000);
      document.getElementById("poll").textContent = String(state.pollMs / 1000);
      if (state.config.keys) document.getElementById("key-form").hidden = false;
    } catch (err) {
      handleError(err);
    }
    document.getElementById("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const key = document.getElementById("key").value.trim();
      if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE);
      document.getElementById("key").value = "";
      setStatus(key ? "key set for this tab" : "key cleared", "ok");
      refresh(true);
    });
    document.getElementById("viewer-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const user = document.getElementById("viewer-id").value.trim();
      if (user) location.hash = "#viewer/" + encodeURIComponent(user);
    });
    document.getElementById("simulate").addEventListener("click", simulate);
    window.addEventListener("hashchange", () => { state.modelsLoaded = false; setStatus(""); refresh(true); });
    setInterval(showClock, 250);
    await refresh(true);
    state.timer = setInterval(() => refresh(false), state.pollMs);
  }

  // for tests and the curious: the clock the page asks the server about
  window.liveshelfConsole = { clock, refresh: () => refresh(true) };
  document.addEventListener("DOMContentLoaded", start);
})();
