// chatapp's own browser code: the composer's keys, staying pinned to the newest text,
// resuming streams exactly, the drawer and menu of narrow screens, and keyboard shortcuts.
// No build step; htmx and its SSE extension do the rest.
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
      var files = document.getElementById("attachments");
      if (files) files.innerHTML = "";
      pinned = true;
      scrollToEnd();
    }
    var box = form.querySelector("textarea[name=content]");
    // hx-disabled-elt re-enables after the request; put the cursor back for the next message.
    setTimeout(function () { box.focus(); }, 0);
  });

  // -- Attachments: uploaded as soon as they are chosen, dropped or pasted ------------------
  // Each file goes up on its own request (with progress), with the model it is for, and comes
  // back as a chip whose hidden input sends it with the question. The file input is emptied,
  // so the form does not carry the files again; without this script the form posts them.
  var uploading = 0;
  var sendWhenUploaded = false;

  function composer() { return document.getElementById("composer"); }

  function csrfToken() {
    var headers = document.body.getAttribute("hx-headers");
    try { return JSON.parse(headers)["X-CSRFToken"]; } catch (error) { return ""; }
  }

  function chosenModel(form) {
    var select = form.querySelector("select[name=model]");
    return select ? select.value : "";
  }

  function sizeText(size) {
    if (size < 1024) return size + " bytes";
    if (size < 1024 * 1024) return Math.round(size / 1024) + " KB";
    return (size / 1024 / 1024).toFixed(1) + " MB";
  }

  function upload(file) {
    var form = composer();
    var list = document.getElementById("attachments");
    if (!form || !list) return;
    var chip = document.createElement("li");
    chip.className = "chip chip--uploading";
    var name = document.createElement("span");
    name.className = "chip__name";
    name.textContent = file.name || "pasted image";
    var progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    progress.setAttribute("aria-label", "Uploading " + name.textContent);
    var size = document.createElement("span");
    size.className = "chip__size";
    size.textContent = sizeText(file.size);
    chip.append(name, size, progress);
    list.appendChild(chip);

    var data = new FormData();
    data.append("file", file, file.name || "pasted-image.png");
    data.append("model", chosenModel(form));
    var conversation = form.querySelector("input[name=conversation_id]");
    if (conversation) data.append("conversation_id", conversation.value);
    var request = new XMLHttpRequest();
    request.open("POST", "/attachments");
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.setRequestHeader("HX-Request", "true");
    request.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) progress.value = Math.round(event.loaded * 100 / event.total);
    });
    uploading += 1;
    request.addEventListener("loadend", function () {
      uploading -= 1;
      if (request.status === 200) {
        chip.outerHTML = request.responseText;
        composerError("");
      } else {
        chip.remove();
        var text = request.status === 422
          ? new DOMParser().parseFromString(request.responseText, "text/html").body.textContent
          : (request.status === 413
              ? "That file is larger than this server takes."
              : "Could not upload " + name.textContent + "; try again.");
        composerError(text.trim());
      }
      if (uploading === 0 && sendWhenUploaded) {
        sendWhenUploaded = false;
        form.requestSubmit();
      }
    });
    request.send(data);
  }

  function composerError(text) {
    var slot = document.getElementById("composer-error");
    if (slot) slot.textContent = text;
  }

  function uploadAll(files) {
    Array.prototype.forEach.call(files, upload);
  }

  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file" || !input.closest("#composer")) return;
    uploadAll(input.files);
    input.value = "";
  });

  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element && event.target.closest(".chip__remove");
    if (!button) return;
    var chip = button.closest(".chip");
    var request = new XMLHttpRequest();
    request.open("POST", button.dataset.remove);
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.send();
    chip.remove();
    var box = document.getElementById("message-input");
    if (box) box.focus();
  });

  document.addEventListener("paste", function (event) {
    if (!(event.target instanceof Element) || !event.target.closest("#composer")) return;
    var files = event.clipboardData && event.clipboardData.files;
    if (files && files.length) {
      event.preventDefault();
      uploadAll(files);
    }
  });

  function carriesFiles(event) {
    return event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types, "Files") >= 0;
  }
  document.addEventListener("dragover", function (event) {
    if (!carriesFiles(event) || !composer()) return;
    event.preventDefault();
    document.body.classList.add("dropping");
  });
  document.addEventListener("dragleave", function (event) {
    if (event.relatedTarget === null) document.body.classList.remove("dropping");
  });
  document.addEventListener("drop", function (event) {
    document.body.classList.remove("dropping");
    if (!carriesFiles(event) || !composer()) return;
    event.preventDefault();
    uploadAll(event.dataTransfer.files);
  });

  // Send waits for the uploads under way, then goes by itself.
  document.addEventListener("htmx:confirm", function (event) {
    if (event.detail.elt !== composer() || uploading === 0) return;
    event.preventDefault();
    sendWhenUploaded = true;
    composerError("Uploading files… the message goes as soon as they are up.");
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

  // -- The page fits what can be seen, so the composer stays above an on-screen keyboard ------
  // A keyboard that covers the page (iOS; Chrome by default) shrinks only the visual
  // viewport, which 100dvh does not follow: the page takes that height (app.css).
  var viewport = window.visualViewport;
  if (viewport) {
    var fitViewport = function () {
      if (viewport.scale > 1.01) return; // pinch-zoomed: not a keyboard, keep the page as it is
      var root = document.documentElement;
      root.style.setProperty("--viewport-height", Math.round(viewport.height) + "px");
      root.setAttribute("data-viewport-height", "");
      if (pinned) scrollToEnd();
    };
    viewport.addEventListener("resize", fitViewport);
    fitViewport();
  }

  // -- Narrow screens: the conversations drawer and the header's actions menu ---------------
  // Each opens from a button with aria-expanded; data-open on its holder is what app.css
  // shows. The drawer's holder is the layout, which outlives the sidebar's out-of-band swaps.
  // Wide screens hide the buttons and show both whatever the state.
  function holderOf(button) {
    return button.id === "drawer-button" ? document.getElementById("layout") : button.parentElement;
  }

  function setOpen(button, open, focusBack) {
    var holder = holderOf(button);
    if (!holder) return;
    button.setAttribute("aria-expanded", open ? "true" : "false");
    holder.toggleAttribute("data-open", open);
    if (button.id === "drawer-button") {
      // The open drawer is a modal panel: the page under it takes no focus or clicks.
      var main = button.closest("main");
      if (main) main.inert = open;
      if (open) {
        // Into the drawer, on its first link: a keyboard user goes on from there.
        var first = document.querySelector("#sidebar a, #sidebar button");
        if (first) first.focus();
      }
    }
    if (!open && focusBack) button.focus();
  }

  function openButtons() {
    return document.querySelectorAll("#drawer-button[aria-expanded=true], .chat__more-button[aria-expanded=true]");
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    var button = target.closest("#drawer-button, .chat__more-button");
    if (button) {
      setOpen(button, button.getAttribute("aria-expanded") !== "true", false);
      return;
    }
    // Choosing something in an open drawer or menu closes it; so does a tap outside it (on
    // the drawer's dimmed page: the layout itself).
    openButtons().forEach(function (open) {
      var holder = holderOf(open);
      var panel = document.getElementById(open.getAttribute("aria-controls"));
      var chose = panel && panel.contains(target) && target.closest("a, button");
      var outside = open.id === "drawer-button" ? target === holder : holder && !holder.contains(target);
      if (chose || outside) setOpen(open, false, false);
    });
  });

  // Back to this page from the browser's cache, or a window grown wide enough to hide the
  // buttons: show everything closed.
  window.addEventListener("pageshow", function () {
    openButtons().forEach(function (open) { setOpen(open, false, false); });
  });
  window.addEventListener("resize", function () {
    openButtons().forEach(function (open) {
      if (!open.getClientRects().length) setOpen(open, false, false);
    });
  });

  // -- Keyboard shortcuts, listed in the dialog that `?` opens -----------------------------
  function typing(element) {
    if (!(element instanceof Element)) return false;
    if (element.isContentEditable) return true;
    if (element instanceof HTMLTextAreaElement || element instanceof HTMLSelectElement) return true;
    return element instanceof HTMLInputElement &&
      !/^(button|checkbox|radio|submit|reset|file|image|range|color)$/.test(element.type);
  }

  function showShortcuts() {
    var dialog = document.getElementById("shortcuts");
    if (dialog && !dialog.open) dialog.showModal();
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (target && target.closest(".sidebar__shortcuts")) showShortcuts();
  });

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing) return;
    if (document.querySelector("dialog[open]")) return; // the dialog has the keys (Esc closes it)
    var key = event.key;
    var command = event.ctrlKey || event.metaKey;

    // The O key: by the letter it types, or by its place where the layout types no Latin letter.
    var letterO = /^o$/i.test(key) || (!/^[a-z]$/i.test(key) && event.code === "KeyO");
    if (command && event.shiftKey && !event.altKey && letterO) {
      // New chat, from anywhere (as in other chat apps).
      var newChat = document.querySelector(".sidebar__new");
      if (!newChat) return;
      event.preventDefault();
      window.location.assign(newChat.href);
      return;
    }
    if (command || event.altKey) return;

    if (key === "Escape") {
      // The innermost thing first: an open menu or drawer, then the answer being written.
      var open = openButtons();
      if (open.length) {
        event.preventDefault();
        open.forEach(function (button) { setOpen(button, false, true); });
        return;
      }
      var target = event.target;
      if (target instanceof HTMLInputElement && target.type === "search" && target.value) return;
      var stops = document.querySelectorAll('#messages article[data-status="streaming"] .message__stop');
      if (!stops.length) return;
      event.preventDefault();
      stops.forEach(function (stop) { stop.click(); });
      return;
    }
    if (typing(event.target)) return;
    if (key === "?") {
      event.preventDefault();
      showShortcuts();
    } else if (key === "/") {
      var box = document.getElementById("message-input");
      if (!box) return;
      event.preventDefault();
      openButtons().forEach(function (button) { setOpen(button, false, false); });
      box.focus();
    }
  });
})();
