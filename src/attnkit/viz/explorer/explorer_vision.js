// attnkit explorer, vision views: a RAM's glimpse path step by step, a CNN's spatial maps and channel weights.
// Reads window.attnkit.data.images (see attnkit.viz.explore_images); draws on <canvas>; no request of any kind.
(function () {
  "use strict";
  var A = window.attnkit, D = A && A.data, I = D && D.images;
  if (!I) return;
  var U = A.util, el = U.el, bytes = U.bytes, CMAP = U.CMAP;
  var V = { item: 0, step: 1, block: 0, scale: "fixed", all: true, hover: -1 };
  A.vision = V;

  // -- decoding ---------------------------------------------------------------------------------
  function halves(b64) {  // float16 base64 -> Float32Array
    var h = new Uint16Array(bytes(b64).buffer), out = new Float32Array(h.length);
    for (var i = 0; i < h.length; i++) out[i] = U.halfToFloat(h[i]);
    return out;
  }
  var X = bytes(I.x), P = halves(I.probs), K = I.classes.length, G = I.glimpses;
  if (G) { G._p = G.patches ? bytes(G.patches) : null; G._probs = G.probs ? halves(G.probs) : null; }
  I.blocks.forEach(function (b) { b._s = b.spatial ? halves(b.spatial) : null; b._c = b.channel ? halves(b.channel) : null; });
  var spatialBlocks = I.blocks.some(function (b) { return b._s; }), channelBlocks = I.blocks.some(function (b) { return b._c; });

  // -- helpers ----------------------------------------------------------------------------------
  function viridis(f) { var c = Math.max(0, Math.min(255, Math.round(255 * f))); return [CMAP[3 * c], CMAP[3 * c + 1], CMAP[3 * c + 2]]; }
  function stepColor(t, T) { return "hsl(" + Math.round(280 - 250 * t / Math.max(T - 1, 1)) + ",85%,55%)"; }
  function picture(data, base, C, h, w) {  // one (C, h, w) uint8 image -> an offscreen canvas of h x w pixels
    var off = document.createElement("canvas"); off.width = w; off.height = h;
    var g = off.getContext("2d"), img = g.createImageData(w, h), d = img.data, n = h * w;
    for (var i = 0; i < n; i++) {
      var r = data[base + i], gr = C === 3 ? data[base + n + i] : r, bl = C === 3 ? data[base + 2 * n + i] : r;
      d[4 * i] = r; d[4 * i + 1] = gr; d[4 * i + 2] = bl; d[4 * i + 3] = 255;
    }
    g.putImageData(img, 0, 0);
    return off;
  }
  function imageOf(b) { return picture(X, b * I.C * I.H * I.W, I.C, I.H, I.W); }
  function range(arr, base, n) { var lo = Infinity, hi = -Infinity; for (var i = 0; i < n; i++) { var v = arr[base + i]; if (v < lo) lo = v; if (v > hi) hi = v; } return [lo, hi]; }
  function mapRange(blk, b) {  // the colour scale's ends: 0..1, or the map's own range
    if (V.scale === "fixed") return [0, 1];
    var r = range(blk._s, b * blk.h * blk.w, blk.h * blk.w);
    return r[1] - r[0] < 1e-6 ? [r[0] - 0.5e-6, r[0] + 0.5e-6] : r;
  }
  function mapPicture(blk, b, alpha) {  // a block's (h, w) map in viridis
    var off = document.createElement("canvas"); off.width = blk.w; off.height = blk.h;
    var g = off.getContext("2d"), img = g.createImageData(blk.w, blk.h), d = img.data, n = blk.h * blk.w, r = mapRange(blk, b);
    for (var i = 0; i < n; i++) {
      var c = viridis((blk._s[b * n + i] - r[0]) / (r[1] - r[0]));
      d[4 * i] = c[0]; d[4 * i + 1] = c[1]; d[4 * i + 2] = c[2]; d[4 * i + 3] = Math.round(255 * alpha);
    }
    g.putImageData(img, 0, 0);
    return off;
  }
  function argmax(arr, base, n) { var k = 0; for (var i = 1; i < n; i++) if (arr[base + i] > arr[base + k]) k = i; return k; }
  function verdict() {
    var pred = argmax(P, V.item * K, K), p = P[V.item * K + pred], lab = I.labels ? I.labels[V.item] : null;
    var text = (lab !== null ? "true <b>" + esc(I.classes[lab]) + "</b> · " : "") + "predicted <b>" + esc(I.classes[pred]) +
      "</b> (p = " + p.toFixed(3) + ")";
    if (lab !== null) text += lab === pred ? " <span class='right'>✓ right</span>" : " <span class='wrong'>✗ wrong</span>";
    Array.prototype.forEach.call(document.querySelectorAll(".vision .verdict"), function (n) { n.innerHTML = text; });
  }
  function esc(t) { return String(t).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; }); }
  function fit(id, height) { var cv = el(id), w = Math.max(320, cv.parentElement.clientWidth - 26); if (cv.width !== w) cv.width = w; if (height && cv.height !== height) cv.height = height; }
  function colourBar(g, x, y, h, lo, hi) {
    for (var i = 0; i < h; i++) { var c = viridis(1 - i / h); g.fillStyle = "rgb(" + c + ")"; g.fillRect(x, y + i, 14, 1); }
    g.fillStyle = "#1d2330"; g.font = "11px system-ui, sans-serif"; g.textAlign = "left";
    g.fillText(hi.toFixed(3), x + 18, y + 8); g.fillText(((lo + hi) / 2).toFixed(3), x + 18, y + h / 2 + 4); g.fillText(lo.toFixed(3), x + 18, y + h);
  }
  function probBars(g, x0, y0, w, h, probs, base, title) {  // K bars of class probabilities; true class outlined
    var bw = w / K, lab = I.labels ? I.labels[V.item] : -1, top = argmax(probs, base, K);
    g.fillStyle = "#667085"; g.font = "11px system-ui, sans-serif"; g.textAlign = "left"; g.fillText(title, x0, y0 - 6);
    g.strokeStyle = "#d0d5dd"; g.beginPath(); g.moveTo(x0, y0 + h + 0.5); g.lineTo(x0 + w, y0 + h + 0.5); g.stroke();
    for (var k = 0; k < K; k++) {
      var p = probs[base + k], bh = h * p, x = x0 + k * bw + 2;
      g.fillStyle = k === top ? "#2a62d6" : "#98a2b3"; g.fillRect(x, y0 + h - bh, bw - 4, bh);
      if (k === lab) { g.strokeStyle = "#067647"; g.lineWidth = 2; g.strokeRect(x - 1, y0 - 1, bw - 2, h + 2); g.lineWidth = 1; }
      g.fillStyle = k === lab ? "#067647" : "#1d2330"; g.textAlign = "center";
      g.fillText(I.classes[k].slice(0, 6), x + (bw - 4) / 2, y0 + h + 13);
      if (p >= 0.005) {
        var inside = bh > h - 14;  // a full bar carries its number inside, in white
        g.fillStyle = inside ? "#fff" : g.fillStyle; g.fillText(p.toFixed(2), x + (bw - 4) / 2, inside ? y0 + h - bh + 12 : y0 + h - bh - 3);
      }
    }
    g.textAlign = "left";
  }

  // -- glimpse path -----------------------------------------------------------------------------
  var GL = {};
  function drawGlimpses() {
    // pixels per image pixel: the image and a margin of a quarter of the largest patch on each side fit 560 px
    var cv = el("gl-canvas"), side = Math.max(I.H, I.W), big = G.sizes[G.k - 1];
    var s = Math.max(1, Math.floor(Math.min(560, cv.parentElement.clientWidth - 26) / (side + big / 2))), M = Math.max(18, Math.ceil(big * s / 4));
    cv.width = I.W * s + 2 * M; cv.height = I.H * s + 2 * M;
    GL = { s: s, M: M };
    var g = cv.getContext("2d"), T = G.T, b = V.item;
    g.fillStyle = "#fff"; g.fillRect(0, 0, cv.width, cv.height);
    g.imageSmoothingEnabled = false; g.drawImage(imageOf(b), M, M, I.W * s, I.H * s);
    g.strokeStyle = "#d0d5dd"; g.strokeRect(M - 0.5, M - 0.5, I.W * s + 1, I.H * s + 1);
    g.save(); g.beginPath(); g.rect(0, 0, cv.width, cv.height); g.clip();
    var cs = G.centres[b];
    function px(v) { return M + (v + 0.5) * s; }
    g.strokeStyle = "rgba(255,255,255,0.8)"; g.lineWidth = 1.5; g.beginPath();
    for (var t = 0; t < V.step; t++) { if (t === 0) g.moveTo(px(cs[t][0]), px(cs[t][1])); else g.lineTo(px(cs[t][0]), px(cs[t][1])); }
    if (V.all) g.stroke();
    for (t = V.all ? 0 : V.step - 1; t < V.step; t++) {
      var cur = t === V.step - 1, col = stepColor(t, T);
      for (var k = cur ? G.k - 1 : 0; k >= 0; k--) {  // earlier glimpses: the finest patch only
        var sz = G.sizes[k] * s;
        g.strokeStyle = col; g.lineWidth = cur ? (k === 0 ? 3 : 2) : (k === 0 ? 1.5 : 0.8);
        g.setLineDash(k === 0 ? [] : [5, 4]); g.globalAlpha = cur ? 1 : 0.7;
        g.strokeRect(px(cs[t][0]) - sz / 2, px(cs[t][1]) - sz / 2, sz, sz);
      }
      g.setLineDash([]); g.globalAlpha = 1;
      g.fillStyle = col; g.beginPath(); g.arc(px(cs[t][0]), px(cs[t][1]), cur ? 10 : 8, 0, 2 * Math.PI); g.fill();
      g.fillStyle = "#fff"; g.font = "bold " + (cur ? 12 : 11) + "px system-ui, sans-serif"; g.textAlign = "center";
      g.fillText(String(t + 1), px(cs[t][0]), px(cs[t][1]) + 4);
    }
    g.restore(); g.textAlign = "left";
    el("gl-step").max = T; el("gl-step").value = V.step;
    el("gl-step-text").textContent = "glimpse " + V.step + " of " + T;
  }
  function drawGlimpseSteps() {
    var t = V.step - 1, b = V.item, c = G.centres[b][t], T = G.T;
    var lx = (2 * c[0] + 1) / I.W - 1, ly = (2 * c[1] + 1) / I.H - 1;
    el("gl-steps").innerHTML = "<b>Glimpse " + (t + 1) + " of " + T + "</b> at (x, y) = (" + c[0].toFixed(1) + ", " + c[1].toFixed(1) +
      ") px, l<sub>" + (t + 1) + "</sub> = (" + lx.toFixed(3) + ", " + ly.toFixed(3) + ") in [−1, 1]²" +
      (t === 0 ? " <span class='note'>(the first glimpse is at the centre)</span>" : " <span class='note'>(chosen by the location network after glimpse " + t + ")</span>");
    fit("gl-steps-canvas");
    var cv = el("gl-steps-canvas"), g = cv.getContext("2d"), y = 16;
    g.fillStyle = "#fff"; g.fillRect(0, 0, cv.width, cv.height);
    g.font = "11px system-ui, sans-serif"; g.fillStyle = "#667085";
    if (G._p) {
      var p = G.p, box = Math.min(110, Math.floor((cv.width - 10) / G.k) - 14);
      g.fillText("the retina's patches ρ(x, l) at each scale, each averaged down to " + p + "×" + p, 4, y);
      for (var k = 0; k < G.k; k++) {
        var base = (((b * T + t) * G.k + k) * I.C) * p * p, x = 4 + k * (box + 14);
        g.imageSmoothingEnabled = false; g.drawImage(picture(G._p, base, I.C, p, p), x, y + 8, box, box);
        g.strokeStyle = stepColor(t, T); g.lineWidth = k === 0 ? 3 : 1.5; g.setLineDash(k === 0 ? [] : [5, 4]);
        g.strokeRect(x - 1, y + 7, box + 2, box + 2); g.setLineDash([]); g.lineWidth = 1;
        g.fillStyle = "#1d2330"; g.fillText(G.sizes[k] + "×" + G.sizes[k] + " px" + (G.sizes[k] > p ? " → " + p + "×" + p : ""), x, y + box + 22);
      }
      y += box + 44;
    }
    if (G._probs) {
      probBars(g, 30, y + 14, Math.min(cv.width - 40, 60 * K), 110, G._probs, (b * T + t) * K,
               "class probabilities after glimpse " + (t + 1) + (G.note ? " (" + G.note + ")" : ""));
      y += 150;
      var top = argmax(P, b * K, K), w = Math.min(cv.width - 40, 44 * T), bw = w / T;  // p(final prediction) after each glimpse
      g.fillStyle = "#667085"; g.fillText("p(" + I.classes[top] + ") after each glimpse (" + I.classes[top] + ": the final prediction)", 30, y + 8);
      for (var s = 0; s < T; s++) {
        var q = G._probs[(b * T + s) * K + top];
        g.fillStyle = s === t ? stepColor(s, T) : "#d0d5dd"; g.fillRect(30 + s * bw + 2, y + 24 + 50 * (1 - q), bw - 4, 50 * q);
        g.fillStyle = "#1d2330"; g.textAlign = "center"; g.fillText(String(s + 1), 30 + s * bw + bw / 2, y + 88);
        g.fillStyle = "#667085"; g.fillText(q.toFixed(2), 30 + s * bw + bw / 2, y + 21 + 50 * (1 - q)); g.textAlign = "left";
      }
      y += 98;
    } else {
      g.fillStyle = "#667085"; g.fillText("this page holds no per-glimpse probabilities (only the final prediction above)", 4, y + 10);
      y += 20;
    }
    if (cv.height !== Math.ceil(y + 4)) { cv.height = Math.ceil(y + 4); drawGlimpseSteps(); }
  }

  // -- spatial maps -----------------------------------------------------------------------------
  var SP = {};
  function drawSpatial() {
    fit("sp-canvas");
    var cv = el("sp-canvas"), g = cv.getContext("2d"), blk = I.blocks[V.block], b = V.item;
    var panel = Math.max(120, Math.min(300, Math.floor((cv.width - 110) / 3) - 16)), top = 22;
    var thumbs = I.blocks.filter(function (x) { return x._s; }).length, tsz = 84, hgt = top + panel + 40 + (thumbs > 1 ? tsz + 34 : 0);
    if (cv.height !== hgt) cv.height = hgt;
    g.fillStyle = "#fff"; g.fillRect(0, 0, cv.width, cv.height);
    g.font = "12px system-ui, sans-serif"; g.fillStyle = "#1d2330"; g.textAlign = "left";
    if (!blk._s) {
      g.fillText(blk.name + " has no spatial map (its attention weighs channels only: see the channel weights)", 4, 16);
      g.imageSmoothingEnabled = false; g.drawImage(imageOf(b), 4, top, panel, panel);
    } else {
      var r = mapRange(blk, b), img = imageOf(b);
      g.fillText(blk.name + " · a " + blk.h + "×" + blk.w + " map over the " + I.H + "×" + I.W + " image (each cell " +
                 (I.H / blk.h).toFixed(I.H % blk.h ? 1 : 0) + " px)", 4, 14);
      var xs = [4, 4 + panel + 16, 4 + 2 * (panel + 16)], lab = ["image", "spatial map", "map over the image"];
      g.imageSmoothingEnabled = false;
      g.drawImage(img, xs[0], top, panel, panel);
      g.drawImage(mapPicture(blk, b, 1), xs[1], top, panel, panel);
      g.drawImage(img, xs[2], top, panel, panel); g.drawImage(mapPicture(blk, b, 0.6), xs[2], top, panel, panel);
      g.fillStyle = "#667085"; g.font = "11px system-ui, sans-serif";
      for (var i = 0; i < 3; i++) g.fillText(lab[i], xs[i], top + panel + 14);
      colourBar(g, xs[2] + panel + 16, top, panel, r[0], r[1]);
      var mr = range(blk._s, b * blk.h * blk.w, blk.h * blk.w);
      g.fillText("map range " + mr[0].toFixed(3) + " – " + mr[1].toFixed(3) + (V.scale === "fixed" ? " (colours on 0–1)" : " (colours stretched)"), xs[1], top + panel + 28);
      SP = { top: top, panel: panel, x: xs[1], blk: blk };
    }
    SP.thumbs = [];
    if (thumbs > 1) {  // every block's map of this image, small: click one to open it
      var ty = top + panel + 40, tx = 4;
      g.fillStyle = "#667085"; g.font = "11px system-ui, sans-serif"; g.fillText("every block (click to open)", tx, ty);
      I.blocks.forEach(function (bk, j) {
        if (!bk._s) return;
        g.imageSmoothingEnabled = false; g.drawImage(imageOf(b), tx, ty + 6, tsz, tsz); g.drawImage(mapPicture(bk, b, 0.6), tx, ty + 6, tsz, tsz);
        if (j === V.block) { g.strokeStyle = "#b42318"; g.lineWidth = 3; g.strokeRect(tx - 2, ty + 4, tsz + 4, tsz + 4); g.lineWidth = 1; }
        SP.thumbs.push({ x: tx, y: ty + 6, size: tsz, block: j });
        tx += tsz + 12;
      });
    }
  }
  function spHit(ev) {
    var cv = el("sp-canvas"), rect = cv.getBoundingClientRect();
    var x = (ev.clientX - rect.left) * cv.width / rect.width, y = (ev.clientY - rect.top) * cv.height / rect.height;
    for (var i = 0; i < (SP.thumbs || []).length; i++) { var t = SP.thumbs[i]; if (x >= t.x && x < t.x + t.size && y >= t.y && y < t.y + t.size) return { block: t.block }; }
    if (SP.blk && SP.blk._s && x >= SP.x && x < SP.x + SP.panel && y >= SP.top && y < SP.top + SP.panel) {
      return { i: Math.floor((y - SP.top) / SP.panel * SP.blk.h), j: Math.floor((x - SP.x) / SP.panel * SP.blk.w) };
    }
    return null;
  }

  // -- channel weights --------------------------------------------------------------------------
  var CH = {};
  function drawChannels() {
    fit("ch-canvas");
    var cv = el("ch-canvas"), g = cv.getContext("2d"), blk = I.blocks[V.block], b = V.item;
    g.fillStyle = "#fff"; g.fillRect(0, 0, cv.width, cv.height);
    g.font = "12px system-ui, sans-serif"; g.fillStyle = "#1d2330"; g.textAlign = "left";
    if (!blk._c) { g.fillText(blk.name + " has no channel weights (spatial attention alone: see the spatial map)", 4, 16); CH = {}; return; }
    var top = 26, h = cv.height - top - 40, pic = Math.min(h, 180), C = blk.C, left = pic + 52;  // the image, then the bars
    var w = cv.width - left - 10, bw = w / C, mean = new Float32Array(C);
    g.imageSmoothingEnabled = false; g.drawImage(imageOf(b), 4, top, pic, pic);
    for (var c = 0; c < C; c++) { for (var j = 0; j < I.B; j++) mean[c] += blk._c[j * C + c] / I.B; }
    var r = V.scale === "fixed" ? [0, 1] : range(blk._c, b * C, C);
    var mr = range(mean, 0, C); if (V.scale !== "fixed") r = [Math.min(r[0], mr[0]), Math.max(r[1], mr[1])];
    if (r[1] - r[0] < 1e-6) r = [r[0] - 0.5e-3, r[1] + 0.5e-3];
    function yOf(v) { return top + h * (1 - (v - r[0]) / (r[1] - r[0])); }
    g.fillText(blk.name + " · " + C + " channels" + (V.scale === "fixed" ? "" : " (axis stretched to the weights' range)"), 4, 14);
    g.strokeStyle = "#d0d5dd"; g.font = "11px system-ui, sans-serif"; g.fillStyle = "#667085"; g.textAlign = "right";
    [0, 0.5, 1].forEach(function (f) { var v = r[0] + f * (r[1] - r[0]), yy = yOf(v); g.fillText(v.toFixed(2), left - 4, yy + 4); g.beginPath(); g.moveTo(left, yy + 0.5); g.lineTo(left + w, yy + 0.5); g.stroke(); });
    for (c = 0; c < C; c++) {
      var v = blk._c[b * C + c], x = left + c * bw, y0 = yOf(Math.max(v, r[0]));
      var col = viridis((v - r[0]) / (r[1] - r[0]));
      g.fillStyle = c === V.hover ? "#b42318" : "rgb(" + col + ")"; g.fillRect(x, y0, Math.max(bw - (bw > 4 ? 1 : 0), 0.8), top + h - y0);
      g.fillStyle = "#475467"; g.fillRect(x, yOf(mean[c]) - 1, Math.max(bw - 1, 1), 2);
    }
    g.fillStyle = "#667085"; g.textAlign = "center";
    var step = Math.max(1, Math.ceil(24 / bw));
    for (c = 0; c < C; c += step) g.fillText(String(c), left + (c + 0.5) * bw, top + h + 14);
    g.textAlign = "left"; g.fillText("channel", left, top + h + 30);
    CH = { left: left, top: top, h: h, bw: bw, C: C, mean: mean };
  }
  function chHit(ev) {
    var cv = el("ch-canvas"), rect = cv.getBoundingClientRect();
    var x = (ev.clientX - rect.left) * cv.width / rect.width, c = Math.floor((x - CH.left) / CH.bw);
    return CH.C && c >= 0 && c < CH.C ? c : -1;
  }

  // -- wiring -----------------------------------------------------------------------------------
  function drawAll() {
    var ts = performance.now();
    verdict();
    if (G) { drawGlimpses(); drawGlimpseSteps(); }
    if (spatialBlocks) drawSpatial();
    if (channelBlocks) drawChannels();
    A.draws += 1; A.lastDrawMs = performance.now() - ts;
    U.status(I.H + "×" + I.W + " image · " + (G ? G.T + " glimpses" : I.blocks.length + " attention blocks") +
             " · drawn in " + A.lastDrawMs.toFixed(0) + " ms");
  }
  function setStep(t) { V.step = Math.max(1, Math.min(G.T, t)); drawGlimpses(); drawGlimpseSteps(); A.draws += 1; }
  function setBlock(j) { V.block = j; el("block").value = j; drawAll(); }
  A.vision.redraw = drawAll; A.vision.setStep = function (t) { setStep(t); }; A.vision.setBlock = setBlock;
  A.vision.channelPoint = function (c) {  // for tests and scripts: client coordinates of channel c's bar
    var cv = el("ch-canvas"), rect = cv.getBoundingClientRect();
    return { x: rect.left + (CH.left + (c + 0.5) * CH.bw) * rect.width / cv.width, y: rect.top + (CH.top + CH.h - 2) * rect.height / cv.height };
  };
  A.vision.thumbPoint = function (j) {
    var cv = el("sp-canvas"), rect = cv.getBoundingClientRect(), t = (SP.thumbs || []).filter(function (x) { return x.block === j; })[0];
    return t ? { x: rect.left + (t.x + t.size / 2) * rect.width / cv.width, y: rect.top + (t.y + t.size / 2) * rect.height / cv.height } : null;
  };

  if (!D.layers.length) {
    el("kind").textContent = D.kind;
    var it = el("item"); it.innerHTML = "";
    D.items.forEach(function (name, b) { U.option(it, b, name); });
  }
  if (I.blocks.length) {
    Array.prototype.forEach.call(document.querySelectorAll("header .blocks"), function (n) { n.hidden = false; });
    I.blocks.forEach(function (bk, j) { U.option(el("block"), j, bk.name); });
  }
  el("glimpse-view").hidden = el("glimpse-steps-view").hidden = !G;
  el("spatial-view").hidden = !spatialBlocks;
  el("channel-view").hidden = !channelBlocks;
  if (G) V.step = G.T;
  el("item").addEventListener("change", function (e) { V.item = +e.target.value; drawAll(); });
  el("block").addEventListener("change", function (e) { setBlock(+e.target.value); });
  el("vscale").addEventListener("change", function (e) { V.scale = e.target.value; drawAll(); });
  el("gl-step").addEventListener("input", function (e) { setStep(+e.target.value); });
  el("gl-prev").addEventListener("click", function () { setStep(V.step - 1); });
  el("gl-next").addEventListener("click", function () { setStep(V.step + 1); });
  el("gl-all").addEventListener("change", function (e) { V.all = e.target.checked; drawGlimpses(); });
  el("sp-canvas").addEventListener("click", function (e) { var hit = spHit(e); if (hit && hit.block !== undefined) setBlock(hit.block); });
  el("sp-canvas").addEventListener("mousemove", function (e) {
    var hit = spHit(e);
    if (hit && hit.i !== undefined) U.status(SP.blk.name + " · cell (" + hit.i + ", " + hit.j + "): weight " + SP.blk._s[(V.item * SP.blk.h + hit.i) * SP.blk.w + hit.j].toFixed(4));
  });
  el("ch-canvas").addEventListener("mousemove", function (e) {
    var c = chHit(e);
    if (c === V.hover) return;
    V.hover = c; drawChannels();
    if (c >= 0) U.status(I.blocks[V.block].name + " · channel " + c + ": weight " + I.blocks[V.block]._c[V.item * CH.C + c].toFixed(4) + " (mean over the page's images " + CH.mean[c].toFixed(4) + ")");
  });
  el("ch-canvas").addEventListener("mouseleave", function () { V.hover = -1; drawChannels(); });
  document.addEventListener("keydown", function (e) {
    if (!G || /^(SELECT|INPUT|BUTTON|TEXTAREA)$/.test(e.target.tagName)) return;  // a focused control has its own keys
    if (e.key === "ArrowLeft") setStep(V.step - 1); else if (e.key === "ArrowRight") setStep(V.step + 1);
  });
  drawAll();
  A.firstDrawMs = performance.now() - A.t0;
  A.firstDrawAt = performance.now();
  requestAnimationFrame(function () { A.firstFrameAt = performance.now(); });
})();
