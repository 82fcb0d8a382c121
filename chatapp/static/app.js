// chatapp's own browser code: the composer's keys, staying pinned to the newest text, and
// resuming streams exactly. No build step; htmx and its SSE extension do the rest.
(function () {
  "use strict";

  // -- This tab's name: the server tells the other tabs of a conversation about our sends ---
  var tab = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Math.random()).slice(2);
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-Chat-Tab"] = tab;
  });

  // -- Resume: a new EventSource carries the last id it saw --------------------------------
  // The browser's own reconnect sends Last-Event-ID. When the SSE extension replaces a CLOSED
  // source with a new one, that header is lost, so the id travels as a query parameter.
  // This runs before the extension loads, which then keeps our factory.
  var lastIds = new Map();
  htmx.createEventSource = function (url) {
    var last = lastIds.get(url);
    var target = url + (url.indexOf("?") < 0 ? "?" : "&") + "tab=" + encodeURIComponent(tab);
    if (last) target += "&last_event_id=" + encodeURIComponent(last);
    var source = new EventSource(target, { withCredentials: true });
    var remember = function (event) {
      if (event.lastEventId) lastIds.set(url, event.lastEventId);
    };
    ["frame", "exchange", "restart", "title"].forEach(function (name) {
      source.addEventListener(name, remember);
    });
    // An answer's stream has ended: a later stream at this URL (after Retry) starts afresh.
    source.addEventListener("done", function () { lastIds.delete(url); });
    return source;
  };

  // -- No message twice: news of an exchange this page already shows adds nothing ----------
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var fragment = event.detail.fragment;
    if (!fragment || !fragment.querySelectorAll) return;
    fragment.querySelectorAll("article[id]").forEach(function (article) {
      var shown = document.getElementById(article.id);
      if (shown && shown !== event.detail.target) article.remove();
    });
  });

  // -- An answer's last frame keeps the content the page streamed ---------------------------
  // The finished message arrives without its content: the streamed content, already in its
  // finished form, is moved into it, so a selection or a scroll position inside it survives.
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var fragment = event.detail.fragment;
    if (!fragment || !fragment.querySelectorAll) return;
    fragment.querySelectorAll("[data-content][data-keep]").forEach(function (slot) {
      var shown = document.getElementById(slot.id);
      if (shown) slot.replaceWith(shown);
    });
  });

  // -- Copy: a code block, or a whole answer -------------------------------------------------
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain http on an office host name: the older way still works there.
    var box = document.createElement("textarea");
    box.value = text;
    box.setAttribute("readonly", "");
    box.style.position = "fixed";
    box.style.opacity = "0";
    document.body.appendChild(box);
    box.select();
    var copied = document.execCommand("copy");
    box.remove();
    return copied ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  // A block's text with each citation marker written as a footnote reference. innerText needs
  // a rendered element, so the copy with the references is laid out off screen for a moment.
  function proseOf(block) {
    if (!block.querySelector(".cite")) return block.innerText;
    var copy = block.cloneNode(true);
    copy.querySelectorAll(".cite").forEach(function (marker) {
      marker.replaceWith(document.createTextNode("[^" + marker.textContent.trim() + "]"));
    });
    var stage = document.createElement("div");
    stage.style.position = "fixed";
    stage.style.left = "-10000px";
    stage.style.width = block.offsetWidth + "px";
    stage.appendChild(copy);
    document.body.appendChild(stage);
    var text = copy.innerText;
    stage.remove();
    return text;
  }

  function footnotesOf(content) {
    var entries = content.querySelectorAll(".sources__list > li");
    if (!entries.length) return "";
    return "\n\n" + Array.prototype.map.call(entries, function (entry, i) {
      var link = entry.querySelector("a.source__link");
      var name = link || entry.querySelector(".source__name");
      var said = "[^" + (i + 1) + "]: " + (name ? name.textContent.trim() : "");
      return link ? said + ", <" + link.href + ">" : said;
    }).join("\n");
  }

  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element && event.target.closest(".code__copy, .message__copy");
    if (!button) return;
    var text;
    if (button.classList.contains("code__copy")) {
      text = button.closest(".code").querySelector("pre").innerText;
    } else {
      // The answer's prose: its blocks as the reader sees them, without its tool calls; its
      // citations as markdown footnotes ([^1] after the text, the sources under it).
      var content = button.closest("article").querySelector("[data-content]");
      if (!content) return;
      text = Array.prototype.filter.call(content.children, function (block) {
        return !block.classList.contains("tool") && !block.classList.contains("sources");
      }).map(proseOf).join("\n\n") + footnotesOf(content);
    }
    copyText(text).then(function () {
      button.textContent = "Copied";
    }, function () {
      button.textContent = "Copy failed";
    }).then(function () {
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    });
  });

  // -- Failures the server did not explain: say so in the notice, and keep what was typed ------
  function notice(text) {
    var slot = document.getElementById("notice");
    if (slot) slot.textContent = text;
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status >= 400 && !xhr.getResponseHeader("HX-Retarget")) {
      // Not from chatapp (a proxy's error page, say): never swap it into the conversation.
      event.detail.shouldSwap = false;
      notice("The server answered with an error (" + xhr.status + "). Try again in a moment.");
    }
  });

  document.addEventListener("htmx:sendError", function () {
    notice("Could not reach chatapp. Check your connection and try again; nothing was lost.");
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.status > 0 && xhr.status < 400) notice("");
  });

  // -- Composer: Enter sends, Shift+Enter is a new line; cleared once the send is taken ----
  document.addEventListener("keydown", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLTextAreaElement) || box.id !== "message-input") return;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    box.form.requestSubmit();
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (!(form instanceof HTMLFormElement) || form.id !== "composer") return;
    if (event.detail.xhr && event.detail.xhr.status === 200) {
      form.querySelector("textarea[name=content]").value = "";
      pinned = true;
      scrollToEnd();
    }
    var box = form.querySelector("textarea[name=content]");
    // hx-disabled-elt re-enables after the request; put the cursor back for the next message.
    setTimeout(function () { box.focus(); }, 0);
  });

  // -- Stay pinned to the bottom while text streams, unless the reader scrolled up ---------
  var pinned = true;
  function scroller() { return document.getElementById("scroller"); }
  function scrollToEnd() {
    var el = scroller();
    if (el) el.scrollTop = el.scrollHeight;
  }

  document.addEventListener("scroll", function (event) {
    var el = scroller();
    if (event.target !== el) return;
    pinned = el.scrollHeight - el.scrollTop - el.clientHeight < 48;
  }, true);

  document.addEventListener("DOMContentLoaded", function () {
    var messages = document.getElementById("messages");
    if (!messages) return;
    scrollToEnd();
    new MutationObserver(function () {
      if (pinned) scrollToEnd();
    }).observe(messages, { childList: true, subtree: true, characterData: true });
  });
})();
