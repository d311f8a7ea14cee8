/* rnnviz dashboard: the browser side of the text view. Loaded by Dash from the package's assets folder;
   the clientside callbacks name these functions (ClientsideFunction("rnnviz", ...)). */
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  rnnviz: {
    /* Draw the window's characters as spans. textContent makes every character plain text (no HTML
       parsing); #text has no React children, so React never touches the nodes made here. In a token store
       (d.rows: each character's row, -1 between tokens) a character's tooltip is its token's. The hover
       panel is cleared (its character is gone), the highlighted run gets one outline per line it spans
       (not one per character, which hid the colours) and is scrolled into the middle of the view. */
    draw: function (d) {
      var t = document.getElementById("text"), nu = window.dash_clientside.no_update;
      if (!d || !t) { return [nu, nu]; }
      var frag = document.createDocumentFragment();
      for (var i = 0; i < d.chars.length; i++) {
        var s = document.createElement("span");
        s.textContent = d.chars[i];
        if (d.cls[i]) { s.className = d.cls[i]; }
        var r = d.rows ? d.rows[i] : i;
        if (r >= 0) { s.title = d.tips[r]; }
        frag.appendChild(s);
      }
      t.replaceChildren(frag);
      var hover = document.getElementById("hover");
      if (hover) { hover.textContent = ""; }
      window.dash_clientside.rnnviz.outline(t, d.hl);
      var first = d.hl ? t.children[d.hl[0]] : null;
      /* #text is positioned: a span's offsetTop is already from its top */
      t.scrollTop = first ? first.offsetTop - t.clientHeight / 2 : 0;
      /* Marked drawn at once, with its spans (Dash sets the same value when it applies the output). */
      t.setAttribute("data-drawn", d.start + ":" + d.stop);
      return [d.start + ":" + d.stop, Date.now()];
    },
    /* Mount the trace's graph once, after the first window is drawn (its figure is "loading..." until the
       trace callback answers): Plotly's script is then evaluated after the coloured text, not before. */
    mountTrace: function (drawn, waiting) {
      var nu = window.dash_clientside.no_update;
      if (!drawn || window.rnnvizTraceMounted) { return nu; }
      window.rnnvizTraceMounted = true;
      return {type: "Graph", namespace: "dash_core_components",
              props: {id: "trace", figure: waiting, config: {displaylogo: false}}};
    },
    /* One box per line fragment of the characters [hl[0], hl[1]) of the window. */
    outline: function (t, hl) {
      t.querySelectorAll(".hl-box").forEach(function (b) { b.remove(); });
      if (!hl || hl[1] <= hl[0] || !t.children[hl[0]]) { return; }
      var r = document.createRange();
      r.setStartBefore(t.children[hl[0]]);
      r.setEndAfter(t.children[Math.min(hl[1], t.children.length) - 1]);
      var lines = [], base = t.getBoundingClientRect();
      Array.prototype.forEach.call(r.getClientRects(), function (c) {
        if (c.width < 1 || c.height < 1) { return; }
        var last = lines[lines.length - 1];  // the same line: the boxes overlap vertically
        if (last && c.top < last.bottom - 1 && c.bottom > last.top + 1) {
          last.top = Math.min(last.top, c.top);
          last.left = Math.min(last.left, c.left); last.right = Math.max(last.right, c.right);
          last.bottom = Math.max(last.bottom, c.bottom);
        } else { lines.push({left: c.left, right: c.right, top: c.top, bottom: c.bottom}); }
      });
      lines.forEach(function (l) {
        var b = document.createElement("div");
        b.className = "hl-box";
        b.style.left = (l.left - base.left + t.scrollLeft - t.clientLeft) + "px";
        b.style.top = (l.top - base.top + t.scrollTop - t.clientTop) + "px";
        b.style.width = (l.right - l.left) + "px";
        b.style.height = (l.bottom - l.top) + "px";
        t.appendChild(b);
      });
    },
    /* Report a mouse selection inside the text view (as offsets into the window, which the server turns
       into positions) while "select to find" is ticked, and show the hovered character's details in the panel under the text. */
    listen: function (_) {
      if (window.rnnvizListening) { return window.dash_clientside.no_update; }
      window.rnnvizListening = true;
      function index(t, node, offset, isEnd) {
        if (node === t) { return isEnd ? offset - 1 : offset; }
        while (node && node.parentNode !== t) { node = node.parentNode; }
        if (!node || node.tagName !== "SPAN") { return null; }
        var i = Array.prototype.indexOf.call(t.children, node);
        return (isEnd && offset === 0) ? i - 1 : i;
      }
      document.addEventListener("mouseup", function () {
        var t = document.getElementById("text"), sel = window.getSelection();
        if (!document.querySelector("#sel-mode input:checked")) { return; }  /* a selection to copy text */
        if (!t || !sel || sel.isCollapsed || sel.rangeCount === 0) { return; }
        var r = sel.getRangeAt(0);
        if (!t.contains(r.startContainer) || !t.contains(r.endContainer)) { return; }
        var a = index(t, r.startContainer, r.startOffset, false), b = index(t, r.endContainer, r.endOffset, true);
        if (a === null || b === null || b < a) { return; }
        window.dash_clientside.set_props("selection", {data: {a: a, b: b + 1, t: Date.now()}});
      });
      /* Switching the mode drops the selection made before (a drag that starts on selected text would move it,
         not select anew). */
      document.addEventListener("change", function (ev) {
        if (ev.target.closest && ev.target.closest("#sel-mode")) { window.getSelection().removeAllRanges(); }
      });
      document.addEventListener("mouseover", function (ev) {
        var el = ev.target, t = document.getElementById("text");
        if (t && el && el.parentNode === t && el.tagName === "SPAN" && el.title) {
          document.getElementById("hover").textContent = el.title;
        }
      });
      return true;
    }
  }
});
