// attnkit explorer: reads the JSON in #attnkit-data and draws every view on <canvas>. No request of any kind.
(function () {
  "use strict";
  var t0 = performance.now();
  var D = JSON.parse(document.getElementById("attnkit-data").textContent);
  var LUT = new Float32Array(256);
  for (var c = 1; c < 256; c++) LUT[c] = Math.exp(-D.logRange * (255 - c) / 254);

  // -- decoding ---------------------------------------------------------------------------------
  function bytes(b64) {
    var s = atob(b64), n = s.length, out = new Uint8Array(n);
    for (var i = 0; i < n; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function halfToFloat(h) {
    var s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
    if (e === 31) return f ? NaN : s * Infinity;
    return s * Math.pow(2, e - 15) * (1 + f / 1024);
  }
  function prepared(layer) {  // decoded arrays, once per layer
    if (layer._ready) return layer;
    layer._w = bytes(layer.w);
    if (layer.enc === "topk") {
      var ib = bytes(layer.idx);
      layer._idx = layer.idx_bytes === 2 ? new Uint16Array(ib.buffer) : new Uint32Array(ib.buffer);
    }
    if (layer.lse) layer._lse = new Float32Array(bytes(layer.lse).buffer);
    if (layer.values) layer._v = new Uint16Array(bytes(layer.values).buffer);
    layer._ready = true;
    return layer;
  }
  function row(layer, b, h, i) {  // weights of query i over the S keys: Float32Array(S)
    var L = prepared(layer), S = L.S, out = new Float32Array(S), base, j;
    if (L.enc === "topk") {
      base = ((b * L.H + h) * L.L + i) * L.k;
      for (j = 0; j < L.k; j++) out[L._idx[base + j]] = LUT[L._w[base + j]];
    } else {
      base = ((b * L.H + h) * L.L + i) * S;
      for (j = 0; j < S; j++) out[j] = LUT[L._w[base + j]];
    }
    return out;
  }
  function meanRow(layer, b, i) {
    var acc = new Float32Array(layer.S);
    for (var h = 0; h < layer.H; h++) { var r = row(layer, b, h, i); for (var j = 0; j < r.length; j++) acc[j] += r[j] / layer.H; }
    return acc;
  }
  function headRow(layer, b, h, i) { return h < 0 ? meanRow(layer, b, i) : row(layer, b, h, i); }
  function value(layer, b, h, j, e) { return halfToFloat(layer._v[((b * layer.H + h) * layer.S + j) * layer.Ev + e]); }

  // -- state ------------------------------------------------------------------------------------
  var S = { scale: "linear", item: 0, layer: 0, head: 0, query: 0, hover: null, heads: null, start: 0, salRow: 0, follow: true };
  function lay() { return D.layers[S.layer]; }
  function qTok() { return D.tokens[lay().query][S.item]; }
  function kTok() { return D.tokens[lay().key][S.item]; }
  function headColor(h, H, a) { return "hsla(" + Math.round(360 * h / Math.max(H, 1)) + ",70%,45%," + a + ")"; }
  var VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
                 [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
  var CMAP = new Uint8Array(256 * 3);
  for (var k = 0; k < 256; k++) {
    var x = k / 255 * (VIRIDIS.length - 1), lo = Math.floor(x), hi = Math.min(lo + 1, VIRIDIS.length - 1), f = x - lo;
    for (var ch = 0; ch < 3; ch++) CMAP[k * 3 + ch] = Math.round(VIRIDIS[lo][ch] * (1 - f) + VIRIDIS[hi][ch] * f);
  }
  function shade(x, max) { var f = x / max; return Math.round(255 * (S.scale === "sqrt" ? Math.sqrt(f) : f)); }
  function rgba(c) { return (255 << 24 | CMAP[3 * c + 2] << 16 | CMAP[3 * c + 1] << 8 | CMAP[3 * c]) >>> 0; }  // little-endian RGBA
  function palette(max) {  // one-byte code -> pixel, for weights scaled to max
    var pal = new Uint32Array(256);
    for (var c = 0; c < 256; c++) pal[c] = rgba(Math.min(255, shade(LUT[c], max)));
    return pal;
  }
  function el(id) { return document.getElementById(id); }
  function shown(t) { return t === " " ? "␣" : String(t).replace(/\n/g, "⏎").replace(/\t/g, "⇥"); }
  function label(t) { t = shown(t); return t.length > 16 ? t.slice(0, 15) + "…" : t; }
  function status(text) { el("status").textContent = text; }

  // -- controls ---------------------------------------------------------------------------------
  function option(sel, value, text) { var o = document.createElement("option"); o.value = value; o.textContent = text; sel.appendChild(o); }
  function fillControls() {
    el("kind").textContent = D.kind;
    var it = el("item"); it.innerHTML = "";
    D.items.forEach(function (name, b) { option(it, b, name); });
    it.value = S.item;
    var ls = el("layer"); ls.innerHTML = "";
    D.layers.forEach(function (l, i) { option(ls, i, l.name); });
    ls.value = S.layer;
    fillHeads();
  }
  function fillHeads() {
    var L = lay(), hs = el("head"); hs.innerHTML = "";
    option(hs, -1, "mean of heads");
    L.heads.forEach(function (n, h) { option(hs, h, n); });
    if (S.head >= L.H) S.head = 0;
    hs.value = S.head;
    if (!S.heads || S.heads.length !== L.H) { S.heads = []; for (var h = 0; h < L.H; h++) S.heads.push(true); }
    var chips = el("head-chips"); chips.innerHTML = "";
    L.heads.forEach(function (n, h) {
      var b = document.createElement("button");
      b.className = "head-chip" + (S.heads[h] ? "" : " off") + (h === S.head ? " current" : "");
      b.style.background = headColor(h, L.H, 1); b.textContent = n; b.dataset.head = h;
      b.addEventListener("click", function () {
        S.heads[h] = !S.heads[h]; S.head = h; el("head").value = h; drawAll();
      });
      chips.appendChild(b);
    });
  }
  function clampQuery() { S.query = Math.max(0, Math.min(S.query, qTok().length - 1)); }

  // -- head view --------------------------------------------------------------------------------
  var HV = { rowH: 16, top: 24, colW: 150, gap: 230 };
  function hvVisible() { return Math.max(1, Math.floor((el("hv-canvas").height - HV.top - 4) / HV.rowH)); }
  function hvY(i) { return HV.top + (i - S.start) * HV.rowH + HV.rowH / 2; }
  function drawHeadView() {
    var cv = el("hv-canvas"), g = cv.getContext("2d"), L = lay(), q = qTok(), kk = kTok();
    var n = Math.max(q.length, kk.length), vis = hvVisible();
    var slider = el("hv-start"); slider.max = Math.max(0, n - vis); S.start = Math.min(S.start, +slider.max); slider.value = S.start;
    g.fillStyle = "#fff"; g.fillRect(0, 0, cv.width, cv.height);
    g.font = "12px system-ui, sans-serif"; g.fillStyle = "#667085";
    var lo = S.start, hi = Math.min(n, S.start + vis), xl = HV.colW, xr = HV.colW + HV.gap;
    g.fillText(lay().query + (n > vis ? "  (tokens " + lo + "–" + (hi - 1) + " of " + n + ")" : ""), 4, 14);
    g.textAlign = "left"; g.fillText(lay().key, xr + 6, 14);
    var active = [];
    for (var h = 0; h < L.H; h++) if (S.heads[h]) active.push(h);
    var hv = S.hover;
    for (var a = 0; a < active.length; a++) {
      var hh = active[a];
      for (var i = lo; i < Math.min(hi, q.length); i++) {
        if (hv && hv.side === "q" && hv.i !== i) continue;
        var r = row(L, S.item, hh, i);
        for (var j = lo; j < Math.min(hi, kk.length); j++) {
          if (hv && hv.side === "k" && hv.i !== j) continue;
          var w = r[j];
          if (w < 0.01) continue;
          g.strokeStyle = headColor(hh, L.H, Math.min(1, w * (hv ? 1.2 : 0.9) / Math.sqrt(active.length)));
          g.lineWidth = hv ? 2 : 1.5;
          g.beginPath(); g.moveTo(xl, hvY(i)); g.lineTo(xr, hvY(j)); g.stroke();
        }
      }
    }
    for (var s = 0; s < 2; s++) {
      var toks = s ? kk : q;
      for (var t = lo; t < Math.min(hi, toks.length); t++) {
        var isHover = hv && hv.side === (s ? "k" : "q") && hv.i === t, isQ = !s && t === S.query;
        g.fillStyle = isHover ? "#2a62d6" : isQ ? "#b42318" : "#1d2330";
        g.font = (isHover || isQ ? "bold " : "") + "12px system-ui, sans-serif";
        g.textAlign = s ? "left" : "right";
        g.fillText(label(toks[t]), s ? xr + 6 : xl - 6, hvY(t) + 4);
      }
    }
    g.textAlign = "left";
  }
  function hvHit(ev) {
    var cv = el("hv-canvas"), rect = cv.getBoundingClientRect();
    var x = (ev.clientX - rect.left) * cv.width / rect.width, y = (ev.clientY - rect.top) * cv.height / rect.height;
    var i = Math.floor((y - HV.top) / HV.rowH) + S.start;
    if (y < HV.top || i < S.start || i >= S.start + hvVisible()) return null;
    if (x < HV.colW + 10 && i < qTok().length) return { side: "q", i: i };
    if (x > HV.colW + HV.gap - 10 && i < kTok().length) return { side: "k", i: i };
    return null;
  }
  function tokenPoint(side, i) {  // for tests and scripts: client coordinates of a token in the head view
    var cv = el("hv-canvas"), rect = cv.getBoundingClientRect();
    var x = side === "q" ? HV.colW - 20 : HV.colW + HV.gap + 20;
    return { x: rect.left + x * rect.width / cv.width, y: rect.top + hvY(i) * rect.height / cv.height };
  }

  // -- matrix heatmap ---------------------------------------------------------------------------
  var MX = {}, MXC = {};
  function drawMatrix() {
    var cv = el("mx-canvas"), g = cv.getContext("2d"), L = lay(), q = qTok(), kk = kTok(), nq = q.length, nk = kk.length;
    var left = 110, top = 90, barW = 70, avail = Math.min(cv.width - left - barW, 640 - top - 10);
    var cell = Math.min(36, Math.max(avail / Math.max(nq, nk), 0.05)), w = nk * cell, h = nq * cell;
    var hgt = Math.round(top + Math.max(h, 120) + 12);
    if (cv.height !== hgt) cv.height = hgt;
    MX = { left: left, top: top, cell: cell, nq: nq, nk: nk };
    g.fillStyle = "#fff"; g.fillRect(0, 0, cv.width, cv.height);
    var key = S.item + "|" + S.layer + "|" + S.head + "|" + S.scale, cached = MXC[key];
    if (!cached) {  // one image per (item, layer, head): hovering and clicking only redraw the outline and labels
      var img = g.createImageData(nk, nq), d32 = new Uint32Array(img.data.buffer), max = 1e-12, i, j;
      if (L.enc === "dense" && S.head >= 0) {  // straight from the one-byte codes: the code order is the weight order
        var W = prepared(L)._w, maxc = 0, base;
        for (i = 0; i < nq; i++) { base = ((S.item * L.H + S.head) * L.L + i) * L.S; for (j = 0; j < nk; j++) if (W[base + j] > maxc) maxc = W[base + j]; }
        max = Math.max(LUT[maxc], 1e-12);
        var pal = palette(max);
        for (i = 0; i < nq; i++) { base = ((S.item * L.H + S.head) * L.L + i) * L.S; for (j = 0; j < nk; j++) d32[i * nk + j] = pal[W[base + j]]; }
      } else if (L.enc === "topk" && S.head >= 0) {  // k codes per row, the rest of the row is 0
        var P = prepared(L), K = P.k, maxk = 0, bk, t, col;
        for (i = 0; i < nq; i++) { bk = ((S.item * L.H + S.head) * L.L + i) * K; for (t = 0; t < K; t++) if (P._idx[bk + t] < nk && P._w[bk + t] > maxk) maxk = P._w[bk + t]; }
        max = Math.max(LUT[maxk], 1e-12);
        var palk = palette(max);
        d32.fill(palk[0]);
        for (i = 0; i < nq; i++) {
          bk = ((S.item * L.H + S.head) * L.L + i) * K;
          for (t = 0; t < K; t++) { col = P._idx[bk + t]; if (col < nk) d32[i * nk + col] = palk[P._w[bk + t]]; }
        }
      } else {
        var rows = [];
        for (i = 0; i < nq; i++) { var r = headRow(L, S.item, S.head, i); rows.push(r); for (j = 0; j < nk; j++) if (r[j] > max) max = r[j]; }
        for (i = 0; i < nq; i++) for (j = 0; j < nk; j++) d32[i * nk + j] = rgba(shade(rows[i][j], max));
      }
      var off = document.createElement("canvas"); off.width = nk; off.height = nq; off.getContext("2d").putImageData(img, 0, 0);
      if (Object.keys(MXC).length > 24) MXC = {};
      cached = MXC[key] = { off: off, max: max };
    }
    var off = cached.off, max = cached.max;
    g.imageSmoothingEnabled = cell < 1; g.drawImage(off, left, top, w, h);
    g.strokeStyle = "#b42318"; g.lineWidth = 1.5; g.strokeRect(left - 1, top + S.query * cell, w + 2, Math.max(cell, 1.5));
    g.fillStyle = "#1d2330"; g.font = Math.min(12, Math.max(7, cell - 2)) + "px system-ui, sans-serif";
    var step = Math.max(1, Math.ceil(9 / cell));
    g.textAlign = "right";
    for (i = 0; i < nq; i += step) g.fillText(label(q[i]), left - 4, top + (i + 0.5) * cell + 4);
    for (j = 0; j < nk; j += step) {
      g.save(); g.translate(left + (j + 0.5) * cell + 4, top - 4); g.rotate(-Math.PI / 2); g.textAlign = "left";
      g.fillText(label(kk[j]), 0, 0); g.restore();
    }
    var bx = left + w + 16, bh = Math.max(h, 120);  // colour scale
    for (var y = 0; y < bh; y++) {
      var cc = Math.round(255 * (1 - y / bh));
      g.fillStyle = "rgb(" + CMAP[cc * 3] + "," + CMAP[cc * 3 + 1] + "," + CMAP[cc * 3 + 2] + ")";
      g.fillRect(bx, top + y, 14, 1);
    }
    g.textAlign = "left"; g.fillStyle = "#1d2330"; g.font = "11px system-ui, sans-serif";
    g.fillText(max.toFixed(3), bx + 18, top + 8);
    g.fillText((S.scale === "sqrt" ? max / 4 : max / 2).toFixed(3), bx + 18, top + bh / 2 + 4);
    g.fillText("0", bx + 18, top + bh);
    g.fillText((S.head < 0 ? "mean of heads" : L.heads[S.head]) + " · " + L.name, left, 14);
  }
  function mxHit(ev) {
    var cv = el("mx-canvas"), rect = cv.getBoundingClientRect();
    var x = (ev.clientX - rect.left) * cv.width / rect.width, y = (ev.clientY - rect.top) * cv.height / rect.height;
    var i = Math.floor((y - MX.top) / MX.cell), j = Math.floor((x - MX.left) / MX.cell);
    return (i >= 0 && i < MX.nq && j >= 0 && j < MX.nk) ? { i: i, j: j } : null;
  }

  // -- model view -------------------------------------------------------------------------------
  var MV = { size: 72, pad: 8, left: 118, top: 22 };
  function drawModelView() {
    var cv = el("mv-canvas"), Hmax = 0;
    D.layers.forEach(function (l) { Hmax = Math.max(Hmax, l.H); });
    MV.size = Math.max(28, Math.min(72, Math.floor((cv.width - MV.left) / Hmax) - MV.pad));
    var hgt = MV.top + D.layers.length * (MV.size + MV.pad) + 4;
    if (cv.height !== hgt) cv.height = hgt;
    var g = cv.getContext("2d"), T = MV.size;
    g.fillStyle = "#fff"; g.fillRect(0, 0, cv.width, cv.height);
    g.font = "11px system-ui, sans-serif"; g.fillStyle = "#667085";
    for (var h = 0; h < Hmax; h++) g.fillText("h" + h, MV.left + h * (T + MV.pad) + T / 2 - 6, 14);
    D.layers.forEach(function (L, li) {
      var y0 = MV.top + li * (T + MV.pad), nq = D.tokens[L.query][S.item].length, nk = D.tokens[L.key][S.item].length;
      g.fillStyle = "#1d2330"; g.textAlign = "right"; g.fillText(label(L.name), MV.left - 6, y0 + T / 2 + 4); g.textAlign = "left";
      var tq = Math.min(T, nq), tk = Math.min(T, nk);
      for (var hh = 0; hh < L.H; hh++) {
        var img = g.createImageData(tk, tq), d32 = new Uint32Array(img.data.buffer), stepI = Math.max(1, Math.floor(nq / 256));
        var cols = new Int32Array(nk), p, i, j;
        for (j = 0; j < nk; j++) cols[j] = Math.floor(j * tk / nk);
        if (L.enc === "dense") {  // max of the codes over each block: the code order is the weight order
          var W = prepared(L)._w, acc8 = new Uint8Array(tk * tq), maxc = 0;
          for (i = 0; i < nq; i += stepI) {
            var base = ((S.item * L.H + hh) * L.L + i) * L.S, off8 = Math.floor(i * tq / nq) * tk;
            for (j = 0; j < nk; j++) { var cc = W[base + j]; p = off8 + cols[j]; if (cc > acc8[p]) acc8[p] = cc; }
          }
          for (p = 0; p < acc8.length; p++) if (acc8[p] > maxc) maxc = acc8[p];
          var pal = palette(Math.max(LUT[maxc], 1e-12));
          for (p = 0; p < acc8.length; p++) d32[p] = pal[acc8[p]];
        } else if (L.enc === "topk") {
          var P = prepared(L), K = P.k, acck = new Uint8Array(tk * tq), maxk = 0;
          for (i = 0; i < nq; i++) {
            var bk = ((S.item * L.H + hh) * L.L + i) * K, offk = Math.floor(i * tq / nq) * tk;
            for (var t = 0; t < K; t++) {
              var col = P._idx[bk + t], ck = P._w[bk + t];
              if (col < nk) { p = offk + cols[col]; if (ck > acck[p]) acck[p] = ck; }
            }
          }
          for (p = 0; p < acck.length; p++) if (acck[p] > maxk) maxk = acck[p];
          var palk = palette(Math.max(LUT[maxk], 1e-12));
          for (p = 0; p < acck.length; p++) d32[p] = palk[acck[p]];
        } else {
          var acc = new Float32Array(tk * tq), max = 1e-12;
          for (i = 0; i < nq; i += stepI) {
            var r = row(L, S.item, hh, i), yi = Math.floor(i * tq / nq) * tk;
            for (j = 0; j < nk; j++) { p = yi + cols[j]; if (r[j] > acc[p]) acc[p] = r[j]; }
          }
          for (p = 0; p < acc.length; p++) if (acc[p] > max) max = acc[p];
          for (p = 0; p < acc.length; p++) d32[p] = rgba(shade(acc[p], max));
        }
        var off = document.createElement("canvas"); off.width = tk; off.height = tq; off.getContext("2d").putImageData(img, 0, 0);
        var x0 = MV.left + hh * (T + MV.pad);
        g.imageSmoothingEnabled = false; g.drawImage(off, x0, y0, T, T);
        if (li === S.layer && hh === S.head) { g.strokeStyle = "#b42318"; g.lineWidth = 3; g.strokeRect(x0 - 2, y0 - 2, T + 4, T + 4); }
      }
    });
  }
  function mvHit(ev) {
    var cv = el("mv-canvas"), rect = cv.getBoundingClientRect();
    var x = (ev.clientX - rect.left) * cv.width / rect.width, y = (ev.clientY - rect.top) * cv.height / rect.height;
    var li = Math.floor((y - MV.top) / (MV.size + MV.pad)), h = Math.floor((x - MV.left) / (MV.size + MV.pad));
    return (li >= 0 && li < D.layers.length && h >= 0 && h < D.layers[li].H) ? { layer: li, head: h } : null;
  }

  // -- step by step -----------------------------------------------------------------------------
  function fmt(x, d) { return (Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3)) ? x.toExponential(2) : x.toFixed(d); }
  function esc(t) { return shown(t).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; }); }
  function drawSteps() {
    var L = prepared(lay()), q = qTok(), kk = kTok(), out = [];
    if (S.head < 0) { el("steps").innerHTML = "<p class='note'>Choose one head (the head menu, a head chip or a model-view cell) to see its computation.</p>"; return; }
    var r = row(L, S.item, S.head, S.query), order = [];
    for (var j = 0; j < kk.length; j++) order.push(j);
    order.sort(function (a, b) { return r[b] - r[a]; });
    var nz = order.filter(function (j) { return r[j] > 0; }).length;
    var top = order.slice(0, Math.min(12, Math.max(nz, 1))), wmax = r[order[0]] || 1e-30, lse = L._lse ? L._lse[(S.item * L.H + S.head) * L.L + S.query] : null;
    var total = 0; for (j = 0; j < kk.length; j++) total += r[j];
    out.push("<div class='step'>Step 1. The query</div><div><code>" + esc(q[S.query]) + "</code> (position " + S.query +
             ") of " + esc(L.heads[S.head]) + ", " + esc(L.name) + ", over " + kk.length + " keys</div>");
    out.push("<div class='step'>Step 2. Score each key</div><div class='note'>" + (lse !== null
      ? "scaled score s = ln α + logsumexp(s), from the stored log-sum-exp of the row"
      : "scores relative to the row's largest: s − s<sub>max</sub> = ln(α / α<sub>max</sub>) (softmax ignores a shift)") + "</div>");
    out.push("<div class='step'>Step 3. exp, then divide by the sum: the softmax weights α</div>");
    var dims = Math.min(L.Ev, 4), head = "<tr><th>key</th><th>" + (lse !== null ? "s" : "s − s<sub>max</sub>") +
      "</th><th>exp(s − s<sub>max</sub>)</th><th>α</th>" + (dims ? "<th>α · v[0:" + dims + "]</th>" : "") + "</tr>";
    var body = top.map(function (j) {
      var w = r[j], s = w > 0 ? Math.log(w) + (lse !== null ? lse : -Math.log(wmax)) : -Infinity, wv = "";
      if (dims) { var xs = []; for (var e = 0; e < dims; e++) xs.push(fmt(w * value(L, S.item, S.head, j, e), 3)); wv = "<td>[" + xs.join(", ") + "]</td>"; }
      return "<tr><td>" + esc(kk[j]) + " <span class='note'>#" + j + "</span></td><td>" + (isFinite(s) ? fmt(s, 3) : "−∞") +
        "</td><td>" + fmt(w / wmax, 4) + "</td><td>" + fmt(w, 4) + "</td>" + wv + "</tr>";
    }).join("");
    var rest = 0; order.slice(top.length).forEach(function (j) { rest += r[j]; });
    var more = order.length - top.length, zero = order.length - Math.max(nz, top.length);
    out.push("<table>" + head + body + (more ? "<tr><td class='note'>" + more + (more === 1 ? " other key" : " other keys") +
             (zero ? " (" + zero + (L.enc === "topk" ? " not among the " + L.k + " this report keeps per row)"
                                          : " at α = 0: masked, or below " + LUT[1].toExponential(0) + ")") : "") +
             "</td><td></td><td></td><td>" + fmt(rest, 4) + "</td></tr>" : "") +
             "<tr><th>sum</th><td></td><td>" + fmt(total / wmax, 4) + "</td><td>" + fmt(total, 4) + "</td></tr></table>");
    if (L.Ev) {
      var o = [], n = 0, show = Math.min(L.Ev, 8);
      for (var e = 0; e < L.Ev; e++) { var acc = 0; for (j = 0; j < kk.length; j++) if (r[j]) acc += r[j] * value(L, S.item, S.head, j, e); o.push(acc); n += acc * acc; }
      out.push("<div class='step'>Step 4. Add the weighted values: o = Σ α<sub>s</sub> v<sub>s</sub></div><div>o[0:" + show + "] = [" +
               o.slice(0, show).map(function (x) { return fmt(x, 3); }).join(", ") + (L.Ev > show ? ", …" : "") + "]  ‖o‖ = " +
               fmt(Math.sqrt(n), 3) + " <span class='note'>(" + L.Ev + " dims; weights stored to ~3 %)</span></div>");
    } else {
      out.push("<div class='step'>Step 4. The weighted sum</div><div class='note'>this report holds no value vectors; the output is Σ α<sub>s</sub> v<sub>s</sub> over the weights above</div>");
    }
    out.push("<div class='note'>the query attends most to <code>" + esc(kk[order[0]]) + "</code> (α = " + fmt(r[order[0]], 3) + ")</div>");
    el("steps").innerHTML = out.join("");
  }

  // -- attention beside saliency ----------------------------------------------------------------
  function salRowsFollow(li) {  // saliency row i belongs to query i of this layer
    var P = D.saliency, L = D.layers[li === undefined ? S.layer : li];
    if (!P || L.key !== P.over) return false;
    var named = P.rows[S.item].filter(function (n) { return n !== ""; }).length;
    return named === D.tokens[L.query][S.item].length;
  }
  function drawSaliency() {
    var P = D.saliency, cv = el("sal-canvas"), g = cv.getContext("2d"), ctl = el("sal-controls");
    g.fillStyle = "#fff"; g.fillRect(0, 0, cv.width, cv.height);
    if (!P) { ctl.innerHTML = "<span class='note'>this report holds no saliency</span>"; return; }
    if (S.follow && salRowsFollow()) S.salRow = S.query;
    S.salRow = Math.min(S.salRow, P.R - 1);
    if (!el("sal-row")) {
      ctl.innerHTML = "<label>output <select id='sal-row'></select></label><label><input type='checkbox' id='sal-follow' checked> follow the query</label><span id='sal-agree'></span>";
      el("sal-row").addEventListener("change", function (e) { S.salRow = +e.target.value; S.follow = false; el("sal-follow").checked = false; drawSaliency(); });
      el("sal-follow").addEventListener("change", function (e) { S.follow = e.target.checked; drawSaliency(); });
    }
    var sel = el("sal-row"); sel.innerHTML = "";
    P.rows[S.item].forEach(function (n, r) { option(sel, r, n); });
    sel.value = S.salRow;
    if (!P._d) P._d = new Float32Array(bytes(P.data).buffer);
    var toks = D.tokens[P.over][S.item], n = toks.length, sal = new Float32Array(n);
    for (var j = 0; j < n; j++) sal[j] = P._d[(S.item * P.R + S.salRow) * P.N + j];
    var att = lay().key === P.over ? headRow(lay(), S.item, S.head, S.query).slice(0, n) : null;
    drawBars(g, att, sal, toks);
    var agree = el("sal-agree");
    if (att) {
      var abs = Array.prototype.map.call(sal, Math.abs), ma = 0, ms = 0, sa = 0, ss = 0, sx = 0, aTop = 0, sTop = 0;
      for (j = 0; j < n; j++) { ma += att[j] / n; ms += abs[j] / n; if (att[j] > att[aTop]) aTop = j; if (abs[j] > abs[sTop]) sTop = j; }
      for (j = 0; j < n; j++) { sa += (att[j] - ma) * (att[j] - ma); ss += (abs[j] - ms) * (abs[j] - ms); sx += (att[j] - ma) * (abs[j] - ms); }
      var rho = sa > 0 && ss > 0 ? sx / Math.sqrt(sa * ss) : 0;
      agree.textContent = "Pearson r(α, |saliency|) = " + rho.toFixed(2) + (aTop === sTop ? " · both peak at " : " · peaks: α at ") +
        (aTop === sTop ? "'" + toks[aTop] + "'" : "'" + toks[aTop] + "', saliency at '" + toks[sTop] + "'");
    } else agree.textContent = "this layer's keys are not the saliency's tokens (" + P.over + ")";
  }
  function drawBars(g, att, sal, toks) {
    var cv = g.canvas, left = 70, w = cv.width - left - 10, hBar = 110, y1 = 26, y2 = 172;
    g.font = "11px system-ui, sans-serif"; g.fillStyle = "#667085"; g.textAlign = "left";
    g.fillText("attention α of the query" + (att ? "" : " (not over these tokens)"), left, y1 - 8);
    g.fillText(D.saliency ? D.saliency.label : "saliency", left, y2 - 8);
    if (!sal) return;
    var n = sal.length, bw = w / n, ms = 1e-12, maxA = 1e-12;
    for (var j = 0; j < n; j++) { ms = Math.max(ms, Math.abs(sal[j])); if (att) maxA = Math.max(maxA, att[j]); }
    for (j = 0; j < n; j++) {
      var x = left + j * bw, bwd = Math.max(bw - (bw > 4 ? 1 : 0), 0.6);
      if (att) { var ha = hBar * att[j] / maxA; g.fillStyle = headColor(Math.max(S.head, 0), lay().H, 0.9); g.fillRect(x, y1 + hBar - ha, bwd, ha); }
      var hs = hBar * Math.abs(sal[j]) / ms; g.fillStyle = sal[j] >= 0 ? "#d9480f" : "#1c7ed6"; g.fillRect(x, y2 + hBar - hs, bwd, hs);
    }
    g.strokeStyle = "#d0d5dd"; g.beginPath(); g.moveTo(left, y1 + hBar + 0.5); g.lineTo(left + w, y1 + hBar + 0.5);
    g.moveTo(left, y2 + hBar + 0.5); g.lineTo(left + w, y2 + hBar + 0.5); g.stroke();
    g.fillStyle = "#1d2330"; var step = Math.max(1, Math.ceil(12 / bw));
    for (j = 0; j < n; j += step) {
      g.save(); g.translate(left + (j + 0.5) * bw + 4, y2 + hBar + 4); g.rotate(-Math.PI / 2.5); g.textAlign = "right";
      g.fillText(label(toks[j]), 0, 0); g.restore();
    }
    g.fillStyle = "#667085"; g.textAlign = "left";
    g.fillText("orange: raises the output, blue: lowers it; bars scaled to their largest", left, cv.height - 4);
  }

  // -- wiring -----------------------------------------------------------------------------------
  function fit(id, height) {  // a canvas as wide as its card
    var cv = el(id), w = Math.max(320, cv.parentElement.clientWidth - 26);
    if (cv.width !== w) cv.width = w;
    if (height && cv.height !== height) cv.height = height;
  }
  function drawAll() {
    var ts = performance.now();
    fit("mx-canvas"); fit("sal-canvas"); fit("mv-canvas");
    var n = Math.max(qTok().length, kTok().length), hvH = Math.min(660, HV.top + n * HV.rowH + 8);
    if (el("hv-canvas").height !== hvH) el("hv-canvas").height = hvH;
    el("hv-start").style.display = n > hvVisible() ? "" : "none";
    clampQuery(); fillHeads(); drawHeadView(); drawMatrix(); drawSteps(); drawSaliency(); drawModelView();
    window.attnkit.draws += 1; window.attnkit.lastDrawMs = performance.now() - ts;
    status(qTok().length + (lay().query === lay().key ? "" : " × " + kTok().length) + " tokens · " + D.layers.length +
           " layers · drawn in " + window.attnkit.lastDrawMs.toFixed(0) + " ms");
  }
  window.attnkit = { data: D, state: S, draws: 0, t0: t0, tokenPoint: tokenPoint, select: select, row: row,
                     redraw: function () { drawAll(); },
                     util: { bytes: bytes, halfToFloat: halfToFloat, CMAP: CMAP, el: el, option: option, status: status } };
  if (!D.layers.length) {  // a vision page: explorer_vision.js draws it
    Array.prototype.forEach.call(document.querySelectorAll(".tokens"), function (n) { n.hidden = true; });
    return;
  }
  function select(layer, head) { S.layer = layer; el("layer").value = layer; S.heads = null; fillHeads(); S.head = head; el("head").value = head; drawAll(); }
  el("item").addEventListener("change", function (e) { S.item = +e.target.value; drawAll(); });
  el("layer").addEventListener("change", function (e) { S.layer = +e.target.value; S.heads = null; drawAll(); });
  el("head").addEventListener("change", function (e) { S.head = +e.target.value; drawAll(); });
  el("scale").addEventListener("change", function (e) { S.scale = e.target.value; drawAll(); });
  el("hv-start").addEventListener("input", function (e) { S.start = +e.target.value; drawHeadView(); });
  el("hv-canvas").addEventListener("wheel", function (e) {
    e.preventDefault(); S.start = Math.max(0, Math.min(+el("hv-start").max, S.start + Math.sign(e.deltaY) * 3)); drawHeadView();
  }, { passive: false });
  el("hv-canvas").addEventListener("mousemove", function (e) {
    var hit = hvHit(e), same = (hit && S.hover && hit.side === S.hover.side && hit.i === S.hover.i) || (!hit && !S.hover);
    if (same) return;
    S.hover = hit;
    if (hit && hit.side === "q") { S.query = hit.i; drawHeadView(); drawMatrix(); drawSteps(); drawSaliency(); } else drawHeadView();
  });
  el("hv-canvas").addEventListener("mouseleave", function () { S.hover = null; drawHeadView(); });
  el("mx-canvas").addEventListener("click", function (e) { var hit = mxHit(e); if (hit) { S.query = hit.i; drawAll(); } });
  el("mx-canvas").addEventListener("mousemove", function (e) {
    var hit = mxHit(e);
    if (hit) status("'" + qTok()[hit.i] + "' → '" + kTok()[hit.j] + "': α = " + headRow(lay(), S.item, S.head, hit.i)[hit.j].toFixed(4));
  });
  el("mv-canvas").addEventListener("click", function (e) {
    var hit = mvHit(e);
    if (hit) { select(hit.layer, hit.head); el("matrix-view").scrollIntoView({ block: "nearest" }); }
  });
  if (D.saliency) for (var li = D.layers.length - 1; li >= 0; li--) if (salRowsFollow(li)) { S.layer = li; break; }
  fillControls();
  drawAll();
  window.attnkit.firstDrawMs = performance.now() - t0;  // from the script start
  window.attnkit.firstDrawAt = performance.now();  // from the start of navigation (opening the file)
  requestAnimationFrame(function () { window.attnkit.firstFrameAt = performance.now(); });  // the frame that shows it
})();
