// The blank-spot map: draws the data that `blankspot map` embedded in #bs-data with Leaflet.
// Everything needed is in the page; background tiles are the only thing fetched, and the
// map draws cells, tracks and tags without them.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("bs-data").textContent);
  var COLORS = { blank: "#d7191c", weak: "#fdae61", covered: "#1a9641", unknown: "#9e9e9e" };
  var TRACK = "#2b6cb0", SEGMENT = "#7f0000", TAG = "#6a1b9a";
  var LEGEND = [
    ["blank", "Blank spot: tidak ada sinyal", "Blank spot: no service"],
    ["weak", "Sinyal lemah atau putus-putus", "Weak or intermittent signal"],
    ["covered", "Tercakup", "Covered"],
    ["unknown", "Data belum cukup", "Not enough readings"]
  ];

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
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
  var LAYERS = [
    ["tracks", "Lintasan unit", "Unit tracks"],
    ["segments", "Ruas tanpa layanan", "Stretches without service"],
    ["tags", "Titik yang ditandai", "Tagged spots"],
    ["places", "Nama tempat", "Place names"]
  ];
  // map.html#operator=510-01&hide=tracks,segments: a link can open a chosen view.
  var wanted = {};
  window.location.hash.replace(/^#/, "").split("&").forEach(function (pair) {
    var at = pair.indexOf("=");
    if (at > 0) { wanted[decodeURIComponent(pair.slice(0, at))] = decodeURIComponent(pair.slice(at + 1)); }
  });
  var hidden = (wanted.hide || "").split(",");
  var layerOn = {};
  LAYERS.forEach(function (layer) { layerOn[layer[0]] = hidden.indexOf(layer[0]) < 0; });

  // -- title, filters, layers, notices --
  var panel = L.control({ position: "topright" });
  var select, notice;
  panel.onAdd = function () {
    var div = L.DomUtil.create("div", "bs-panel bs-controls");
    var html = "<h1>" + esc(data.title) + "</h1>" +
      '<details id="bs-filters"' + (PHONE ? "" : " open") + "><summary>Filter dan lapisan / Filters and layers</summary>" +
      '<div class="bs-sub">' + esc(data.subtitle) + "</div>" +
      '<label for="bs-operator">Operator</label><select id="bs-operator"></select>' +
      '<fieldset class="bs-layers"><legend>Lapisan / Layers</legend>';
    LAYERS.forEach(function (layer) {
      html += '<label class="bs-check"><input type="checkbox" id="bs-layer-' + layer[0] + '"' +
        (layerOn[layer[0]] ? " checked" : "") + "> " + esc(layer[1]) + ' <span class="en">' + esc(layer[2]) +
        "</span></label>";
    });
    html += "</fieldset></details>";
    div.innerHTML = html;
    select = div.querySelector("#bs-operator");
    data.operators.forEach(function (op) {
      var option = document.createElement("option");
      option.value = op.key;
      option.textContent = op.label;
      select.appendChild(option);
    });
    select.value = data.default_operator || "";
    notice = L.DomUtil.create("div", "bs-notice", div);
    notice.id = "bs-notice";
    L.DomEvent.disableClickPropagation(div);
    L.DomEvent.disableScrollPropagation(div);
    return div;
  };
  panel.addTo(map);

  // -- legend, in Indonesian and English; folded on a phone --
  var legend = L.control({ position: "bottomright" });
  legend.onAdd = function () {
    var div = L.DomUtil.create("div", "bs-panel bs-legend");
    var html = '<details id="bs-legend-box"' + (PHONE ? "" : " open") +
      "><summary><strong>Keterangan / Legend</strong></summary>";
    LEGEND.forEach(function (row) {
      html += '<div class="bs-row"><span class="bs-swatch" style="background:' + COLORS[row[0]] + '"></span>' +
        "<span>" + esc(row[1]) + '<br><span class="en">' + esc(row[2]) + "</span></span></div>";
    });
    html += '<div class="bs-row"><span class="bs-line" style="border-color:' + TRACK + '"></span>' +
      '<span>Lintasan unit<br><span class="en">Unit track</span></span></div>';
    html += '<div class="bs-row"><span class="bs-line bs-dashed" style="border-color:' + SEGMENT + '"></span>' +
      '<span>Ruas tanpa layanan<br><span class="en">Stretch without service</span></span></div>';
    html += '<div class="bs-row"><span class="bs-dot" style="background:' + TAG + '"></span>' +
      '<span>Titik yang ditandai<br><span class="en">Tagged spot</span></span></div>';
    html += '<div class="bs-sub">' + esc(data.legend_note) + "</div></details>";
    div.innerHTML = html;
    L.DomEvent.disableClickPropagation(div);
    L.DomEvent.disableScrollPropagation(div);
    return div;
  };
  legend.addTo(map);

  // -- background tiles: only when online; dropped at the first failure --
  if (data.tiles && navigator.onLine !== false) {
    var tiles = L.tileLayer(data.tiles.url, { maxZoom: 19, attribution: data.tiles.attribution });
    var dropped = false;
    tiles.on("tileerror", function () {
      if (dropped) { return; }
      dropped = true;
      map.removeLayer(tiles);
      notice.textContent = "Peta dasar tidak tersedia (luring) / Base map unavailable (offline)";
    });
    tiles.addTo(map);
  } else if (notice) {
    notice.textContent = "Tanpa peta dasar / No base map";
  }

  // -- layers --
  var bounds = L.latLngBounds([]);
  var tracks = L.layerGroup();
  data.tracks.forEach(function (t) {
    var line = L.polyline(t.line, { color: TRACK, weight: 2, opacity: 0.8, className: "bs-track" });
    line.bindPopup('<div class="bs-popup">' + table(t.popup) + "</div>");
    line.addTo(tracks);
    bounds.extend(line.getBounds());
  });

  var cellsByOperator = {}, segmentsByOperator = {};
  data.operators.forEach(function (op) {
    cellsByOperator[op.key] = L.layerGroup();
    segmentsByOperator[op.key] = L.layerGroup();
  });
  data.cells.forEach(function (c) {
    var polygon = L.polygon(c.ring, {
      color: COLORS[c["class"]], weight: 1, fillColor: COLORS[c["class"]], fillOpacity: 0.45,
      className: "bs-cell bs-" + c["class"]
    });
    polygon.bindPopup('<div class="bs-popup"><div class="bs-class" style="color:' + COLORS[c["class"]] + '">' +
      esc(c.title) + "</div>" + table(c.popup) + "</div>", { maxWidth: 360 });
    polygon.addTo(cellsByOperator[c.op]);
    bounds.extend(polygon.getBounds());
  });
  data.segments.forEach(function (s) {
    var line = L.polyline(s.line, { color: SEGMENT, weight: 4, dashArray: "6 5", className: "bs-segment" });
    line.bindPopup('<div class="bs-popup">' + table(s.popup) + "</div>");
    line.addTo(segmentsByOperator[s.op]);
  });

  var tags = L.layerGroup();
  data.tags.forEach(function (t) {
    var dot = L.circleMarker([t.lat, t.lon], { radius: 6, color: "#fff", weight: 2, fillColor: TAG, fillOpacity: 1,
      className: "bs-tag" });
    dot.bindPopup('<div class="bs-popup">' + table(t.popup) + "</div>");
    if (t.label) {
      dot.bindTooltip(esc(t.label), { permanent: true, direction: "right", offset: [8, 0], className: "bs-tag-label" });
    }
    dot.addTo(tags);
    bounds.extend([t.lat, t.lon]);
  });

  // Names of towns and villages: labels drawn by the page itself, readable without tiles.
  var places = L.layerGroup();
  (data.places || []).forEach(function (p) {
    L.marker([p.lat, p.lon], {
      interactive: false, keyboard: false,
      icon: L.divIcon({ className: "bs-place", iconSize: null, iconAnchor: [4, 4],
        html: '<span class="bs-place-dot"></span><span class="bs-place-name">' + esc(p.name) + "</span>" })
    }).addTo(places);
  });

  function shown(group, on) {
    if (on && !map.hasLayer(group)) { group.addTo(map); }
    if (!on && map.hasLayer(group)) { map.removeLayer(group); }
  }

  // Draws what the operator choice and the layer switches ask for.
  function redraw() {
    var key = select.value;
    Object.keys(cellsByOperator).forEach(function (k) {
      shown(cellsByOperator[k], k === key);
      shown(segmentsByOperator[k], k === key && layerOn.segments);
    });
    shown(tracks, layerOn.tracks);
    shown(tags, layerOn.tags);
    shown(places, layerOn.places);
    // Drawing order, bottom to top: cells, tracks, stretches without service, tags.
    [tracks, segmentsByOperator[key], tags].forEach(function (group) {
      if (group && map.hasLayer(group)) { group.eachLayer(function (l) { l.bringToFront(); }); }
    });
    document.body.setAttribute("data-operator", key);
  }
  select.addEventListener("change", redraw);
  LAYERS.forEach(function (layer) {
    var box = document.getElementById("bs-layer-" + layer[0]);
    box.addEventListener("change", function () { layerOn[layer[0]] = box.checked; redraw(); });
  });
  if (wanted.operator && cellsByOperator[wanted.operator]) {
    select.value = wanted.operator;
  }

  if (data.tracks_left_out) {
    notice.textContent = data.tracks_left_out + " lintasan pendek tidak digambar / short track pieces not drawn";
  }
  if (bounds.isValid()) {
    // Keep the drawing clear of the panels on the right when the window is wide enough.
    var right = Math.max(panel.getContainer().offsetWidth, legend.getContainer().offsetWidth);
    var room = map.getSize().x > 2.5 * right ? right + 30 : 30;
    map.fitBounds(bounds, { paddingTopLeft: [30, 30], paddingBottomRight: [room, 30], maxZoom: 15 });
  } else {
    map.setView(data.center, 9);
    notice.textContent = "Belum ada data / No readings yet";
  }
  redraw();
  document.body.setAttribute("data-ready", "1");
})();
