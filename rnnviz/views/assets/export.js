// The exported page's hover (rnnviz.export). The first time the pointer enters a block, give each run its
// start index (in code points); when it enters a run longer than one character, replace the run by one <i>
// per character (same class, so nothing moves) and look again at the point. Numbers are decoded from
// base64 lazily. The data block (#rnnviz-data) is written by rnnviz.export.export_html. In a token store
// (D.tok: each token's [start, end) in the window's text) a character's row is the token it lies in, found by
// bisection; a character between tokens has no row and no tooltip.
(function () {
"use strict";
var D = JSON.parse(document.getElementById("rnnviz-data").textContent);
var tip = document.getElementById("rnnviz-tip");
function u8(s) {
  var b = atob(s), a = new Uint8Array(b.length);
  for (var i = 0; i < b.length; i++) a[i] = b.charCodeAt(i);
  return a;
}
function u16(s) {
  var a = u8(s), o = new Uint16Array(a.length >> 1);
  for (var i = 0; i < o.length; i++) o[i] = a[2 * i] | a[2 * i + 1] << 8;
  return o;
}
function h2f(h) {  // IEEE half -> number
  var s = h & 32768 ? -1 : 1, e = h >> 10 & 31, m = h & 1023;
  if (e === 0) return s * m * Math.pow(2, -24);
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * Math.pow(2, e - 15);
}
function f16(s) { return Float32Array.from(u16(s), h2f); }
function i32(s) {
  var a = u8(s), o = new Int32Array(a.length >> 2);
  for (var i = 0; i < o.length; i++) o[i] = a[4 * i] | a[4 * i + 1] << 8 | a[4 * i + 2] << 16 | a[4 * i + 3] << 24;
  return o;
}
var r16 = Math.f16round || function (x) {  // nearest half (ties aside): enough to find the shortest digits
  if (!isFinite(x) || x === 0) return x;
  var a = Math.abs(x), q = Math.pow(2, Math.max(Math.floor(Math.log2(a)), -14) - 10), r = Math.round(a / q) * q;
  return x < 0 ? -r : r;
};
function exact(x) {  // the shortest decimal that reads back as the same float16: the stored value
  if (!isFinite(x)) return String(x);
  for (var p = 1; p < 8; p++) { var s = +x.toPrecision(p); if (r16(s) === x) return String(s); }
  return String(x);
}
function vis(c) {  // how a tooltip names a character: D.vis holds rnnviz.display.shown's symbols
  return Object.prototype.hasOwnProperty.call(D.vis, c) ? D.vis[c] : c;
}
function visl(t) { return t == null ? String(t) : Array.from(t).map(vis).join(""); }  // a token: each character
function row(i) {  // the row of character i of the window, or -1 between tokens
  if (!D.tok) return i;
  if (!D.ts) { D.ts = i32(D.tok.s); D.te = i32(D.tok.e); }
  var lo = 0, hi = D.ts.length;  // the first token starting after i
  while (lo < hi) { var m = (lo + hi) >> 1; if (D.ts[m] <= i) lo = m + 1; else hi = m; }
  return lo > 0 && i < D.te[lo - 1] ? lo - 1 : -1;
}
function label(el, r) {  // what the row is: the character, or the token's characters
  if (!D.tok) return el.textContent;
  if (!D.cs) D.cs = Array.from(el.parentNode.parentNode.textContent);
  return D.cs.slice(D.ts[r], D.te[r]).join("");
}
function cplen(t) {  // length in code points (the store's unit), not UTF-16
  var n = t.length;
  for (var i = 0; i < t.length; i++) { var c = t.charCodeAt(i); if (c >= 56320 && c < 57344) n--; }
  return n;
}
function isChar(el) { return el && el.tagName === "I" && el.parentNode.classList.contains("p"); }
function index(p) {  // each run's start position, once per chunk
  if (p._ok) return;
  for (var s = +p.dataset.s, c = p.children, i = 0; i < c.length; i++) { c[i]._s = s; s += cplen(c[i].textContent); }
  p._ok = 1;
}
function split(el) {  // one run -> one <i> per character, same class: the layout does not move
  var cs = Array.from(el.textContent), f = document.createDocumentFragment();
  for (var k = 0; k < cs.length; k++) {
    var e = document.createElement("i");
    e.className = el.className; e.textContent = cs[k]; e._s = el._s + k; f.appendChild(e);
  }
  el.replaceWith(f);
}
function show(el, x, y) {
  var u = D.units[+el.parentNode.parentNode.dataset.b], i = row(el._s), L = [];
  if (i < 0) { tip.hidden = true; return; }
  if (!u.f) u.f = f16(u.v);
  L.push(u.name + " = " + exact(u.f[i]));
  var line = "#" + (D.start + i) + " '" + visl(label(el, i)) + "'";
  if (D.loss) {
    if (!D.lf) D.lf = f16(D.loss);
    line += "  loss " + (isNaN(D.lf[i]) ? "n/a" : D.lf[i].toPrecision(3) + " nats");
  }
  L.push(line);
  if (D.ids) {
    if (!D.idf) { D.idf = D.idw === 1 ? u8(D.ids) : u16(D.ids); D.pf = u8(D.p); }
    for (var ps = [], j = 0; j < D.k; j++) {
      var pc = D.pf[i * D.k + j] / 2.55;
      ps.push(visl(D.vocab[D.idf[i * D.k + j]]) + " " + (pc < 1 ? "<1" : pc.toFixed(0)) + "%");
    }
    L.push("next: " + ps.join("  "));
  }
  tip.textContent = L.join("\n");
  tip.hidden = false;
  move(x, y);
}
function move(x, y) {  // beside the pointer, kept inside the window
  var w = tip.offsetWidth, h = tip.offsetHeight, X = x + 14, Y = y + 16;
  if (X + w > innerWidth - 4) X = Math.max(4, x - w - 10);
  if (Y + h > innerHeight - 4) Y = Math.max(4, y - h - 12);
  tip.style.left = X + "px"; tip.style.top = Y + "px";
}
document.addEventListener("mouseover", function (ev) {
  var el = ev.target;
  if (el.classList && (el.classList.contains("p") || el.classList.contains("x"))) return;  // between lines
  if (!isChar(el)) { tip.hidden = true; return; }
  index(el.parentNode);
  if (cplen(el.textContent) > 1) {
    split(el);
    el = document.elementFromPoint(ev.clientX, ev.clientY);
    if (!isChar(el)) { tip.hidden = true; return; }
  }
  show(el, ev.clientX, ev.clientY);
});
document.addEventListener("mousemove", function (ev) { if (!tip.hidden) move(ev.clientX, ev.clientY); });
document.documentElement.addEventListener("mouseleave", function () { tip.hidden = true; });
})();
