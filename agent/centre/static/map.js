// The blank-spot map, in two modes:
// - offline (`blankspot map`): draws the data embedded in #bs-data; background tiles are
//   the only thing fetched, and the map draws cells, tracks and tags without them;
// - live (`blankspot serve`, data.live set): asks the server's API for the cells, tracks,
//   stretches, tags and places of the visible area, zoom and filters whenever they change,
//   and shows the fleet; a language switch chooses Bahasa Indonesia or English.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("bs-data").textContent);
  var LIVE = data.live || null;
  var COLORS = { blank: "#d7191c", weak: "#fdae61", covered: "#1a9641", unknown: "#9e9e9e" };
  var TRACK = "#2b6cb0", SEGMENT = "#7f0000", TAG = "#6a1b9a";
  // Every text of the page as [Bahasa Indonesia, English]; the offline page shows both.
  var T = {
    filters: ["Filter dan lapisan", "Filters and layers"],
    legend: ["Keterangan", "Legend"],
    layers: ["Lapisan", "Layers"],
    technology: ["Teknologi", "Technology"],
    all: ["Semua", "All"],
    days: ["Hari (WITA)", "Days (WITA)"],
    from: ["Dari", "From"],
    to: ["Sampai", "To"],
    units: ["Unit", "Units"],
    fleet: ["Armada unit", "Fleet"],
    state: ["Status", "State"],
    lastSeen: ["Terakhir terlihat", "Last seen"],
    backlog: ["Antrean", "Backlog"],
    missing: ["Hilang", "Missing"],
    stored: ["Tersimpan", "Stored"],
    noUnits: ["Belum ada unit", "No units yet"],
    aliveBySms: ["Hidup lewat SMS", "Alive by SMS"],
    oldest: ["terlama", "oldest"],
    lastSignal: ["sinyal terakhir", "last signal"],
    dataDown: ["data mati", "data down"],
    refusedSms: ["SMS ditolak", "SMS refused"],
    down_no_data_service: ["tanpa layanan data", "no data service"],
    down_quota_exhausted: ["kuota habis", "quota exhausted"],
    down_broker_unreachable: ["broker tak terjangkau", "broker unreachable"],
    down_login_refused: ["login ditolak", "login refused"],
    down_no_signal: ["tanpa sinyal", "no signal"],
    down_unknown: ["tidak diketahui", "unknown"],
    noUnit: ["Tidak ada unit yang dipilih", "No unit chosen"],
    noBase: ["Tanpa peta dasar", "No base map"],
    baseOffline: ["Peta dasar tidak tersedia (luring)", "Base map unavailable (offline)"],
    noData: ["Belum ada data", "No readings yet"],
    shortLeft: ["lintasan pendek tidak digambar", "short track pieces not drawn"],
    stretchesLeft: ["ruas tanpa layanan terpendek tidak digambar", "shortest stretches without service not drawn"],
    tagsLeft: ["tanda tidak digambar (terlalu banyak untuk satu berkas)", "tags not drawn (too many for one file)"],
    loading: ["Memuat…", "Loading…"],
    failed: ["Gagal memuat", "Could not load"],
    cellsLeft: ["sel tidak digambar: perbesar peta", "cells not drawn: zoom in"],
    language: ["Bahasa", "Language"],
    cells: ["Sel cakupan", "Coverage cells"],
    tracks: ["Lintasan unit", "Unit tracks"],
    segments: ["Ruas tanpa layanan", "Stretches without service"],
    tags: ["Titik yang ditandai", "Tagged spots"],
    places: ["Nama tempat", "Place names"],
    track: ["Lintasan unit", "Unit track"],
    segment: ["Ruas tanpa layanan", "Stretch without service"],
    tag: ["Titik yang ditandai", "Tagged spot"]
  };
  var LEGEND = [
    ["blank", "Blank spot: tidak ada sinyal", "Blank spot: no service"],
    ["weak", "Sinyal lemah atau putus-putus", "Weak or intermittent signal"],
    ["covered", "Tercakup", "Covered"],
    ["unknown", "Data belum cukup", "Not enough readings"]
  ];
  LEGEND.forEach(function (row) { T[row[0]] = [row[1], row[2]]; });
  var LAYERS = ["cells", "tracks", "segments", "tags", "places"];

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  // map.html#operator=510-01&hide=tracks,segments&tech=LTE&lang=en: a link can open a chosen view.
  var wanted = {};
  window.location.hash.replace(/^#/, "").split("&").forEach(function (pair) {
    var at = pair.indexOf("=");
    if (at > 0) { wanted[decodeURIComponent(pair.slice(0, at))] = decodeURIComponent(pair.slice(at + 1)); }
  });

  // The language: both on the offline page; live, Indonesian unless the browser asks for English.
  var lang = null;
  if (LIVE) {
    var asked = (navigator.languages && navigator.languages[0]) || navigator.language || "id";
    lang = wanted.lang === "en" || wanted.lang === "id" ? wanted.lang : (/^en\b/i.test(asked) ? "en" : "id");
  }
  function say(key) {
    var pair = T[key];
    return lang === null ? pair[0] + " / " + pair[1] : pair[lang === "en" ? 1 : 0];
  }
  // Two lines (Indonesian, English below) offline; one line live.
  function sayHtml(key) {
    var pair = T[key];
    return lang === null ? esc(pair[0]) + '<br><span class="en">' + esc(pair[1]) + "</span>"
      : esc(pair[lang === "en" ? 1 : 0]);
  }
  function sayInline(key) {
    var pair = T[key];
    return lang === null ? esc(pair[0]) + ' <span class="en">' + esc(pair[1]) + "</span>"
      : esc(pair[lang === "en" ? 1 : 0]);
  }

  // Times: shown in WITA (UTC+8, no daylight saving), UTC on hover.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(date, name) {
    return date.getUTCFullYear() + "-" + pad(date.getUTCMonth() + 1) + "-" + pad(date.getUTCDate()) + " " +
      pad(date.getUTCHours()) + ":" + pad(date.getUTCMinutes()) + " " + name;
  }
  function timeHtml(iso) {
    if (!iso) { return "-"; }
    var utc = new Date(iso);
    var wita = new Date(utc.getTime() + 8 * 3600 * 1000);
    return '<span class="bs-time" title="' + esc(clock(utc, "UTC")) + '">' + esc(clock(wita, "WITA")) + "</span>";
  }

  // A row is [label, value] or, for times, [label, WITA, UTC]: UTC shows on hover.
  function table(rows) {
    return "<table>" + rows.map(function (row) {
      var value = row.length > 2 ? '<span class="bs-time" title="' + esc(row[2]) + '">' + esc(row[1]) + "</span>"
        : esc(row[1]);
      return "<tr><th>" + esc(row[0]) + "</th><td>" + value + "</td></tr>";
    }).join("") + "</table>";
  }

  var map = L.map("map", { preferCanvas: false, zoomControl: true });
  L.control.scale({ imperial: false }).addTo(map);

  // On a phone the panels start folded: open, they would cover most of the map.
  var PHONE = !!(window.matchMedia && window.matchMedia("(max-width: 600px), (max-height: 500px)").matches);
  var hidden = (wanted.hide || "").split(",");
  var layerOn = {};
  LAYERS.forEach(function (layer) { layerOn[layer] = hidden.indexOf(layer) < 0; });

  // What is chosen: the operator, a technology ("" for all), WITA days and units (live).
  var state = {
    operator: wanted.operator || data.default_operator || "",
    tech: wanted.tech || "",
    from: wanted.from || "",
    to: wanted.to || "",
    units: wanted.units ? wanted.units.split(",") : []
  };
  var overview = { operators: data.operators, technologies: data.technologies || [], units: [], days: null };
  var noticeText = "";
  var fleetUnits = null;
  var fleetRefused = {};

  // -- title, filters, layers, notices --
  // A box in a corner of the map whose clicks and scrolls stay in it (not the map's).
  function cornerPanel(position, className) {
    var div = null;
    var control = L.control({ position: position });
    control.onAdd = function () {
      div = L.DomUtil.create("div", "bs-panel " + className);
      L.DomEvent.disableClickPropagation(div);
      L.DomEvent.disableScrollPropagation(div);
      return div;
    };
    control.addTo(map);
    return div;
  }
  var panelDiv = cornerPanel("topright", "bs-controls");
  var notice;

  function operatorLabel(op) {
    return op.label || (op.name + " (" + op.key + ")");
  }

  function renderPanel() {
    var open = document.getElementById("bs-filters");
    var isOpen = open ? open.open : !PHONE;
    // The served page's own title is in the chosen language; a title given by its operator stays as given.
    var title = LIVE && data.titles ? data.titles[lang === "en" ? 1 : 0] : data.title;
    document.title = title;
    var html = "<h1>" + esc(title) + "</h1>" +
      '<details id="bs-filters"' + (isOpen ? " open" : "") + "><summary>" + esc(say("filters")) + "</summary>" +
      '<div class="bs-sub">' + esc(data.subtitle) + "</div>";
    if (LIVE) {
      html += '<div class="bs-lang" role="group" aria-label="' + esc(say("language")) + '">' +
        [["id", "Bahasa Indonesia"], ["en", "English"]].map(function (l) {
          return '<button type="button" class="bs-lang-button' + (l[0] === lang ? " bs-on" : "") +
            '" data-lang="' + l[0] + '" aria-pressed="' + (l[0] === lang) + '">' + esc(l[1]) + "</button>";
        }).join("") + "</div>";
    }
    html += '<label for="bs-operator">Operator</label><select id="bs-operator"></select>';
    if (overview.technologies.length) {
      html += '<fieldset class="bs-layers bs-techs"><legend>' + esc(say("technology")) + "</legend>";
      [""].concat(overview.technologies).forEach(function (tech) {
        html += '<label class="bs-check bs-radio"><input type="radio" name="bs-tech" value="' + esc(tech) + '"' +
          (tech === state.tech ? " checked" : "") + "> " + (tech ? esc(tech) : sayInline("all")) + "</label>";
      });
      html += "</fieldset>";
    }
    if (LIVE) {
      var min = overview.days ? overview.days[0] : "", max = overview.days ? overview.days[1] : "";
      html += '<fieldset class="bs-layers bs-days"><legend>' + esc(say("days")) + "</legend>" +
        '<label class="bs-inline">' + esc(say("from")) + ' <input type="date" id="bs-from" value="' +
        esc(state.from) + '" min="' + esc(min) + '" max="' + esc(max) + '"></label>' +
        '<label class="bs-inline">' + esc(say("to")) + ' <input type="date" id="bs-to" value="' + esc(state.to) +
        '" min="' + esc(min) + '" max="' + esc(max) + '"></label></fieldset>';
      if (overview.units.length) {
        html += '<fieldset class="bs-layers bs-units"><legend>' + esc(say("units")) + "</legend>";
        overview.units.forEach(function (unit) {
          html += '<label class="bs-check"><input type="checkbox" class="bs-unit" value="' + esc(unit) + '"' +
            (!state.units.length || state.units.indexOf(unit) >= 0 ? " checked" : "") + "> " + esc(unit) + "</label>";
        });
        html += "</fieldset>";
      }
    }
    html += '<fieldset class="bs-layers"><legend>' + esc(say("layers")) + "</legend>";
    LAYERS.forEach(function (layer) {
      html += '<label class="bs-check"><input type="checkbox" id="bs-layer-' + layer + '"' +
        (layerOn[layer] ? " checked" : "") + "> " + sayInline(layer) + "</label>";
    });
    html += '</fieldset></details><div class="bs-notice" id="bs-notice"></div>';
    panelDiv.innerHTML = html;
    notice = panelDiv.querySelector("#bs-notice");
    notice.textContent = noticeText;
    var select = panelDiv.querySelector("#bs-operator");
    overview.operators.forEach(function (op) {
      var option = document.createElement("option");
      option.value = op.key;
      option.textContent = operatorLabel(op);
      select.appendChild(option);
    });
    select.value = state.operator;
    select.addEventListener("change", function () { state.operator = select.value; changed(); });
    Array.prototype.forEach.call(panelDiv.querySelectorAll('input[name="bs-tech"]'), function (radio) {
      radio.addEventListener("change", function () { if (radio.checked) { state.tech = radio.value; changed(); } });
    });
    LAYERS.forEach(function (layer) {
      var box = panelDiv.querySelector("#bs-layer-" + layer);
      box.addEventListener("change", function () { layerOn[layer] = box.checked; changed(true); });
    });
    if (LIVE) {
      ["from", "to"].forEach(function (name) {
        var input = panelDiv.querySelector("#bs-" + name);
        input.addEventListener("change", function () { state[name] = input.value; changed(); });
      });
      Array.prototype.forEach.call(panelDiv.querySelectorAll(".bs-unit"), function (box) {
        box.addEventListener("change", function () {
          var ticked = Array.prototype.filter.call(panelDiv.querySelectorAll(".bs-unit"), function (b) {
            return b.checked;
          }).map(function (b) { return b.value; });
          // Every unit ticked asks for all of them (also units heard of later); none, for nothing.
          state.units = ticked.length === overview.units.length ? [] : ticked;
          state.noUnit = ticked.length === 0;
          changed();
        });
      });
      Array.prototype.forEach.call(panelDiv.querySelectorAll(".bs-lang-button"), function (button) {
        button.addEventListener("click", function () { setLanguage(button.getAttribute("data-lang")); });
      });
    }
  }

  function setNotice(text) {
    noticeText = text;
    if (notice) { notice.textContent = text; }
  }

  // -- legend; folded on a phone --
  var legendDiv = cornerPanel("bottomright", "bs-legend");
  var legendNote = data.legend_note;

  function renderLegend() {
    var box = document.getElementById("bs-legend-box");
    var isOpen = box ? box.open : !PHONE;
    var html = '<details id="bs-legend-box"' + (isOpen ? " open" : "") +
      "><summary><strong>" + esc(say("legend")) + "</strong></summary>";
    LEGEND.forEach(function (row) {
      html += '<div class="bs-row"><span class="bs-swatch" style="background:' + COLORS[row[0]] + '"></span>' +
        "<span>" + sayHtml(row[0]) + "</span></div>";
    });
    html += '<div class="bs-row"><span class="bs-line" style="border-color:' + TRACK + '"></span>' +
      "<span>" + sayHtml("track") + "</span></div>";
    html += '<div class="bs-row"><span class="bs-line bs-dashed" style="border-color:' + SEGMENT + '"></span>' +
      "<span>" + sayHtml("segment") + "</span></div>";
    html += '<div class="bs-row"><span class="bs-dot" style="background:' + TAG + '"></span>' +
      "<span>" + sayHtml("tag") + "</span></div>";
    html += '<div class="bs-sub">' + esc(legendNote || "") + "</div></details>";
    legendDiv.innerHTML = html;
  }

  // -- the fleet (live): units, last seen, backlog, readings missing --
  var fleetDiv = null;
  function renderFleet() {
    if (!fleetDiv) { return; }
    var box = document.getElementById("bs-fleet-box");
    var isOpen = box ? box.open : !PHONE;
    var html = '<details id="bs-fleet-box"' + (isOpen ? " open" : "") + "><summary><strong>" + esc(say("fleet")) +
      "</strong></summary>";
    if (fleetUnits === null) {
      html += '<div class="bs-sub">' + esc(say("loading")) + "</div>";
    } else if (!fleetUnits.length) {
      html += '<div class="bs-sub">' + esc(say("noUnits")) + "</div>";
    } else {
      html += '<table class="bs-fleet"><tr><th>' + esc(say("units")) + "</th><th>" + esc(say("state")) + "</th><th>" +
        esc(say("lastSeen")) + "</th><th>" + esc(say("stored")) + "</th><th>" + esc(say("backlog")) + "</th><th>" +
        esc(say("missing")) + "</th></tr>";
      fleetUnits.forEach(function (u) {
        var holes = u.holes.map(function (h) {
          return "seq " + h.first + (h.last !== h.first ? "-" + h.last : "") + " (" + h.count + "): " + h.reason;
        }).join("\n");
        html += '<tr class="bs-fleet-row" data-unit="' + esc(u.device) + '"><td>' + esc(u.device) + "</td><td>" +
          esc(u.state || "-") + "</td><td>" + timeHtml(u.last_seen) + "</td><td>" + esc(u.stored) + "</td><td>" +
          esc(u.pending === null ? "-" : u.pending) + '</td><td title="' + esc(holes) + '">' + esc(u.missing) +
          "</td></tr>";
        if (u.alive_by_sms) { html += smsRow(u.alive_by_sms); }
      });
      html += "</table>";
    }
    var refused = Object.keys(fleetRefused || {}).sort().map(function (reason) {
      return reason + " " + fleetRefused[reason];
    });
    if (refused.length) {
      html += '<div class="bs-sub bs-sms-refused">' + esc(say("refusedSms")) + ": " + esc(refused.join(", ")) + "</div>";
    }
    fleetDiv.innerHTML = html + "</details>";
  }
  // A unit whose heartbeat by SMS is newer than its last status and reading: what it said.
  function smsRow(a) {
    var backlog = say("backlog") + " " + a.backlog + (a.oldest ? " (" + say("oldest") + " " + timeHtml(a.oldest) + ")" : "");
    var signal = [a.rat, a.operator_name || a.operator, a.level_dbm === null ? null : a.level_dbm + " dBm"]
      .filter(function (part) { return part !== null && part !== undefined; }).join(" ");
    return '<tr class="bs-fleet-sms"><td></td><td colspan="5" title="' + esc(a.text) + '">' + esc(say("aliveBySms")) +
      " " + timeHtml(a.time) + ", " + backlog + ", " + esc(say("lastSignal")) + " " + esc(signal || "-") + ", " +
      esc(say("dataDown")) + ": " + esc(T["down_" + a.reason] ? say("down_" + a.reason) : a.reason) + "</td></tr>";
  }
  if (LIVE) {
    fleetDiv = cornerPanel("bottomleft", "bs-fleet-panel");
  }

  function setLanguage(which) {
    lang = which;
    document.documentElement.setAttribute("lang", which);
    document.body.setAttribute("data-lang", which);
    renderPanel();
    renderLegend();
    renderFleet();
  }

  // -- background tiles: only when online; dropped at the first failure --
  if (data.tiles && navigator.onLine !== false) {
    var tiles = L.tileLayer(data.tiles.url, { maxZoom: 19, attribution: data.tiles.attribution });
    var dropped = false;
    tiles.on("tileerror", function () {
      if (dropped) { return; }
      dropped = true;
      map.removeLayer(tiles);
      setNotice(say("baseOffline"));
    });
    tiles.addTo(map);
  } else {
    noticeText = say("noBase");
  }

  // -- layers: filled from the embedded data (offline) or from the API's answers (live) --
  var groups = {};
  LAYERS.forEach(function (layer) { groups[layer] = L.layerGroup(); });

  function drawCells(cells) {
    groups.cells.clearLayers();
    cells.forEach(function (c) {
      var polygon = L.polygon(c.ring, {
        color: COLORS[c["class"]], weight: 1, fillColor: COLORS[c["class"]], fillOpacity: 0.45,
        className: "bs-cell bs-" + c["class"]
      });
      polygon.bindPopup('<div class="bs-popup"><div class="bs-class" style="color:' + COLORS[c["class"]] + '">' +
        esc(c.title) + "</div>" + table(c.popup) + "</div>", { maxWidth: 360 });
      polygon.addTo(groups.cells);
    });
  }
  function drawTracks(tracks) {
    groups.tracks.clearLayers();
    tracks.forEach(function (t) {
      var line = L.polyline(t.line, { color: TRACK, weight: 2, opacity: 0.8, className: "bs-track" });
      line.bindPopup('<div class="bs-popup">' + table(t.popup) + "</div>");
      line.addTo(groups.tracks);
    });
  }
  function drawSegments(segments) {
    groups.segments.clearLayers();
    segments.forEach(function (s) {
      var line = L.polyline(s.line, { color: SEGMENT, weight: 4, dashArray: "6 5", className: "bs-segment" });
      line.bindPopup('<div class="bs-popup">' + table(s.popup) + "</div>");
      line.addTo(groups.segments);
    });
  }
  function drawTags(tags) {
    groups.tags.clearLayers();
    tags.forEach(function (t) {
      var dot = L.circleMarker([t.lat, t.lon], { radius: 6, color: "#fff", weight: 2, fillColor: TAG, fillOpacity: 1,
        className: "bs-tag" });
      dot.bindPopup('<div class="bs-popup">' + table(t.popup) + "</div>");
      if (t.label) {
        dot.bindTooltip(esc(t.label), { permanent: true, direction: "right", offset: [8, 0], className: "bs-tag-label" });
      }
      dot.addTo(groups.tags);
    });
  }
  // Names of towns and villages: labels drawn by the page itself, readable without tiles.
  function drawPlaces(places) {
    groups.places.clearLayers();
    places.forEach(function (p) {
      L.marker([p.lat, p.lon], {
        interactive: false, keyboard: false,
        icon: L.divIcon({ className: "bs-place", iconSize: null, iconAnchor: [4, 4],
          html: '<span class="bs-place-dot"></span><span class="bs-place-name">' + esc(p.name) + "</span>" })
      }).addTo(groups.places);
    });
  }

  function shown(group, on) {
    if (on && !map.hasLayer(group)) { group.addTo(map); }
    if (!on && map.hasLayer(group)) { map.removeLayer(group); }
  }
  // Drawing order, bottom to top: cells, tracks, stretches without service, tags.
  function arrange() {
    LAYERS.forEach(function (layer) { shown(groups[layer], layerOn[layer]); });
    ["tracks", "segments", "tags"].forEach(function (layer) {
      if (map.hasLayer(groups[layer])) { groups[layer].eachLayer(function (l) { l.bringToFront(); }); }
    });
    document.body.setAttribute("data-operator", state.operator);
    document.body.setAttribute("data-tech", state.tech);
  }

  // A technology keeps the cells where it was heard, and the blank ones (no technology reaches them).
  function offlineCells() {
    return data.cells.filter(function (c) {
      return c.op === state.operator && (!state.tech || c["class"] === "blank" || (c.rats || []).indexOf(state.tech) >= 0);
    });
  }

  // -- offline: everything is in the page --
  function offlineRedraw() {
    drawCells(offlineCells());
    drawSegments(data.segments.filter(function (s) { return s.op === state.operator; }));
    arrange();
  }

  // -- live: ask the API; an answer to an older question is dropped --
  var asking = 0, timer = null;
  function apiUrl(name, params) {
    var url = new URL(LIVE.api + name, window.location.origin + window.location.pathname);
    Object.keys(params).forEach(function (k) {
      if (params[k] !== "" && params[k] !== null && params[k] !== undefined) { url.searchParams.set(k, params[k]); }
    });
    return url.toString();
  }
  function ask(name, params) {
    return fetch(apiUrl(name, params), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) { throw new Error(body.error || response.statusText); }
          return body;
        });
      });
  }
  function viewParams() {
    var b = map.getBounds().pad(0.15);
    var clip = function (v, lo, hi) { return Math.max(lo, Math.min(hi, v)); };
    return {
      bbox: [clip(b.getSouth(), -90, 90), clip(b.getWest(), -180, 180), clip(b.getNorth(), -90, 90),
        clip(b.getEast(), -180, 180)].map(function (v) { return v.toFixed(5); }).join(","),
      zoom: map.getZoom(), from: state.from, to: state.to, units: state.units.join(",")
    };
  }
  function liveRedraw() {
    var mine = ++asking;
    var view = viewParams();
    var jobs = [];
    document.body.setAttribute("data-ready", "0");
    if (state.noUnit) {
      [drawCells, drawTracks, drawSegments, drawTags].forEach(function (draw) { draw([]); });
      setNotice(say("noUnit"));
      arrange();
      document.body.setAttribute("data-ready", "1");
      return Promise.resolve();
    }
    var cellParams = Object.assign({}, view, { operator: state.operator, tech: state.tech });
    jobs.push(layerOn.cells ? ask("cells", cellParams).then(function (answer) {
      if (mine !== asking) { return; }
      state.operator = answer.operator || "";
      legendNote = answer.legend_note;
      drawCells(answer.cells);
      document.body.setAttribute("data-resolution", answer.resolution);
      return answer.left_out ? answer.left_out + " " + say("cellsLeft") : "";
    }) : Promise.resolve(drawCells([])));
    jobs.push(layerOn.tracks ? ask("tracks", view).then(function (answer) {
      if (mine !== asking) { return; }
      drawTracks(answer.tracks);
      return answer.left_out ? answer.left_out + " " + say("shortLeft") : "";
    }) : Promise.resolve(drawTracks([])));
    jobs.push(layerOn.segments ? ask("segments", Object.assign({}, view, { operator: state.operator }))
      .then(function (answer) {
        if (mine !== asking) { return; }
        drawSegments(answer.segments);
        return answer.left_out ? answer.left_out + " " + say("stretchesLeft") : "";
      }) : Promise.resolve(drawSegments([])));
    jobs.push(layerOn.tags ? ask("tags", view).then(function (answer) {
      if (mine === asking) { drawTags(answer.tags); }
    }) : Promise.resolve(drawTags([])));
    jobs.push(layerOn.places ? ask("places", { bbox: view.bbox, zoom: view.zoom }).then(function (answer) {
      if (mine === asking) { drawPlaces(answer.places); }
    }) : Promise.resolve(drawPlaces([])));
    return Promise.all(jobs).then(function (notes) {
      if (mine !== asking) { return; }
      setNotice(notes.filter(function (n) { return n; }).join("; "));
      renderLegend();
      arrange();
      document.body.setAttribute("data-ready", "1");
    }, function (error) {
      if (mine !== asking) { return; }
      setNotice(say("failed") + ": " + error.message);
      document.body.setAttribute("data-ready", "1");
    });
  }
  function askFleet() {
    return ask("fleet", {}).then(function (answer) {
      fleetUnits = answer.units;
      fleetRefused = answer.refused_sms || {};
      renderFleet();
    }, function (error) { setNotice(say("failed") + ": " + error.message); });
  }

  // What a change of filters or layers asks for: offline, a redraw; live, new answers soon.
  function changed(layersOnly) {
    if (!LIVE) {
      if (layersOnly) { arrange(); } else { offlineRedraw(); }
      return;
    }
    clearTimeout(timer);
    timer = setTimeout(liveRedraw, 120);
  }

  renderPanel();
  renderLegend();

  if (!LIVE) {
    var bounds = L.latLngBounds([]);
    data.cells.forEach(function (c) { c.ring.forEach(function (p) { bounds.extend(p); }); });
    data.tracks.forEach(function (t) { t.line.forEach(function (p) { bounds.extend(p); }); });
    data.tags.forEach(function (t) { bounds.extend([t.lat, t.lon]); });
    if (!overview.operators.some(function (op) { return op.key === state.operator; })) {
      state.operator = data.default_operator || "";
      renderPanel();
    }
    drawTracks(data.tracks);
    drawTags(data.tags);
    drawPlaces(data.places || []);
    // What the page's size bound left out, said in one line.
    var leftOut = [[data.tracks_left_out, "shortLeft"], [data.segments_left_out, "stretchesLeft"],
                   [data.tags_left_out, "tagsLeft"]].filter(function (n) { return n[0]; });
    if (leftOut.length) {
      setNotice(leftOut.map(function (n) { return n[0] + " " + say(n[1]); }).join("; "));
    }
    if (bounds.isValid()) {
      // Keep the drawing clear of the panels on the right when the window is wide enough.
      var right = Math.max(panelDiv.offsetWidth, legendDiv.offsetWidth);
      var room = map.getSize().x > 2.5 * right ? right + 30 : 30;
      map.fitBounds(bounds, { paddingTopLeft: [30, 30], paddingBottomRight: [room, 30], maxZoom: 15 });
    } else {
      map.setView(data.center, 9);
      setNotice(say("noData"));
    }
    offlineRedraw();
    document.body.setAttribute("data-ready", "1");
  } else {
    document.body.setAttribute("data-lang", lang);
    document.documentElement.setAttribute("lang", lang);
    renderFleet();
    map.setView(data.center, 9);
    ask("overview", {}).then(function (answer) {
      overview = answer;
      if (!answer.operators.some(function (op) { return op.key === state.operator; })) {
        state.operator = answer.default_operator || "";
      }
      renderPanel();
      if (!answer.bounds) { setNotice(say("noData")); }
      map.on("moveend", function () { changed(); });
      if (answer.bounds) {
        var right = Math.max(panelDiv.offsetWidth, legendDiv.offsetWidth);
        var room = map.getSize().x > 2.5 * right ? right + 30 : 30;
        map.fitBounds(L.latLngBounds(answer.bounds).pad(0.05), { paddingTopLeft: [30, 30], paddingBottomRight: [room, 30], maxZoom: 14 });
      }
      return Promise.all([askFleet(), liveRedraw()]);
    }, function (error) {
      setNotice(say("failed") + ": " + error.message);
      document.body.setAttribute("data-ready", "1");
    });
    // New readings arrive while the page stays open: ask again now and then, but never under
    // an open popup (redrawing would close it while someone reads it).
    var popupOpen = false;
    map.on("popupopen", function () { popupOpen = true; });
    map.on("popupclose", function () { popupOpen = false; });
    setInterval(function () {
      askFleet();
      if (!popupOpen && !document.hidden) { liveRedraw(); }
    }, Math.max(30, LIVE.refresh_s || 30) * 1000);
  }
})();
