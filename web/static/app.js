// Progressive enhancement, no framework: the chat form answers in place with fetch (the server renders the new
// turn, escaped, with the same template as the page) and the conversation is kept in sessionStorage, so Back from
// an article and a reload bring it back; delete buttons ask before deleting; cards get a "Copy citation" button.
// Without JavaScript the forms post normally and the server renders the whole page.
(function () {
  "use strict";

  var STORE = "newsqa-conversation";
  // A server that stops answering (paused, overloaded, its machine asleep) left the page waiting for ever with its
  // button disabled: a request that hears nothing for this long is given up, and the page says so.
  var QUIET_LIMIT_MS = 90000;

  // An AbortController that fires once nothing has been heard for QUIET_LIMIT_MS; ``poke`` when something is.
  function watchdog() {
    var controller = window.AbortController ? new AbortController() : null;
    var timer = null;
    var dog = {
      signal: controller ? controller.signal : undefined,
      poke: function () {
        if (!controller) return;
        clearTimeout(timer);
        timer = setTimeout(function () { controller.abort(); }, QUIET_LIMIT_MS);
      },
      done: function () { clearTimeout(timer); }
    };
    dog.poke();
    return dog;
  }

  // fetch, then the body as text, within QUIET_LIMIT_MS: resolves to [response, text].
  function fetchText(url, options) {
    var dog = watchdog();
    options.signal = dog.signal;
    return fetch(url, options)
      .then(function (response) { return response.text().then(function (text) { return [response, text]; }); })
      .then(function (got) { dog.done(); return got; }, function (error) { dog.done(); throw error; });
  }

  function unanswered(error) {
    if (error && error.name === "AbortError") {
      return "The server sent nothing for " + QUIET_LIMIT_MS / 1000 + " seconds: it may be busy or stopped. " +
        "Try again.";
    }
    return "The server did not answer (" + error.message + ").";
  }

  function messageOf(text, response) {
    var type = response.headers.get("content-type") || "";
    if (type.indexOf("application/json") === 0) {
      try { return JSON.parse(text).detail || response.statusText; } catch (e) { return response.statusText; }
    }
    var doc = new DOMParser().parseFromString(text, "text/html");
    var notice = doc.querySelector(".notice.error") || doc.body;
    return (notice.textContent || response.statusText).trim();
  }

  function storage() {
    try { return window.sessionStorage; } catch (e) { return null; }
  }

  // Keep focused elements clear of the input bar that sticks to the bottom of the window.
  function keepClearOfBar(bar) {
    function update() {
      document.documentElement.style.setProperty("--bar-height", Math.ceil(bar.getBoundingClientRect().height) + "px");
    }
    update();
    if (window.ResizeObserver) new ResizeObserver(update).observe(bar);
    document.addEventListener("focusin", function (event) {
      var el = event.target;
      if (bar.contains(el) || !el.getBoundingClientRect) return;
      var rect = el.getBoundingClientRect();
      var barTop = bar.getBoundingClientRect().top;
      if (rect.bottom > barTop - 4) window.scrollBy(0, rect.bottom - barTop + 12);
      else if (rect.top < 0) window.scrollBy(0, rect.top - 12);
    });
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      ok ? resolve() : reject(new Error("the browser refused"));
    });
  }

  function citationOf(button) {
    var d = button.dataset;
    var where = [d.title, d.source, d.date].filter(Boolean).join(", ");
    return "“" + d.quote + "” — " + where + ". " + new URL(d.href, window.location.href).href;
  }

  function showCopyButtons(root) {
    root.querySelectorAll("button.copy").forEach(function (button) { button.hidden = false; });
  }

  function enableCopy(root, say) {
    showCopyButtons(root);
    root.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest("button.copy");
      if (!button) return;
      copyText(citationOf(button)).then(
        function () { say("Citation copied."); },
        function (error) { say("Could not copy the citation (" + error.message + ")."); });
    });
  }

  function enhanceChat(form) {
    var conversation = document.getElementById("conversation");
    var errorBox = document.getElementById("ask-error");
    var status = document.getElementById("ask-status");
    var announce = document.getElementById("ask-announce");
    var input = form.elements.namedItem("question");
    var button = document.getElementById("ask-button");
    var label = form.querySelector("label[for=question]");
    var hint = document.getElementById("ask-hint");
    var restart = document.getElementById("new-conversation");
    var maxChars = parseInt(input.getAttribute("data-max-chars"), 10) || 2000;
    var hintText = hint.textContent;
    var store = storage();

    function say(message) {
      errorBox.hidden = true;
      status.textContent = message;
    }

    function showError(message) {
      errorBox.textContent = message;
      errorBox.hidden = false;
      status.textContent = "";
      announce.textContent = "";
    }

    // Each page keeps its own conversation (the chat page, and each answer's permalink page): following the
    // permalink of an earlier turn replaced the conversation it came from, which Back then could not bring back.
    var key = STORE + ":" + window.location.pathname + window.location.search;

    function save() {
      if (!store) return;
      try {
        if (conversation.querySelector("article.turn")) store.setItem(key, conversation.innerHTML);
        else store.removeItem(key);
      } catch (e) { /* full or disabled: the conversation just isn't kept */ }
    }

    function turnsIn(html) {
      var holder = document.createElement("template");
      holder.innerHTML = html;
      return holder.content.querySelectorAll("article.turn").length;
    }

    function hasTurns(yes) {
      restart.hidden = !yes;
      label.textContent = yes ? "Ask a follow-up or a new question" : "Your question";
    }

    function working(yes) {
      button.disabled = yes;
      button.textContent = yes ? "Working…" : "Ask";
      form.setAttribute("aria-busy", yes ? "true" : "false");
      conversation.setAttribute("aria-busy", yes ? "true" : "false");
    }

    function length() { return input.value.trim().length; }

    function tooLong() {
      return "Your question is " + length().toLocaleString("en") + " characters long; the limit is " +
        maxChars.toLocaleString("en") + ". Shorten it and ask again.";
    }

    // The turn the server rendered (GET /ask?q=…) is shown, unless this page's kept conversation goes on from it
    // (follow-ups asked here, then a reload: they were lost); a page without one shows what it kept.
    var kept = store && store.getItem(key);
    if (kept && turnsIn(kept) > conversation.querySelectorAll("article.turn").length) conversation.innerHTML = kept;
    else if (conversation.querySelector("article.turn")) save();
    hasTurns(!!conversation.querySelector("article.turn"));
    enableCopy(conversation, say);

    input.addEventListener("input", function () {
      var n = length();
      hint.textContent = n > maxChars * 0.8 ? n.toLocaleString("en") + " of " + maxChars.toLocaleString("en") +
        " characters" + (n > maxChars ? ": too long" : "") : hintText;
      hint.classList.toggle("over", n > maxChars);
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (form.requestSubmit) form.requestSubmit(); else form.dispatchEvent(new Event("submit", { cancelable: true }));
      }
    });

    restart.addEventListener("click", function (event) {
      event.preventDefault();
      conversation.innerHTML = "";
      save();
      hasTurns(false);
      input.value = "";
      errorBox.hidden = true;
      say("Started a new conversation.");
      window.scrollTo(0, 0);
      input.focus();
    });

    // The server-rendered turn (escaped by the template) joins the conversation.
    function showTurn(html) {
      conversation.insertAdjacentHTML("beforeend", html);
      var turn = conversation.lastElementChild;
      showCopyButtons(turn);
      input.value = "";
      hint.textContent = hintText;
      hasTurns(true);
      status.textContent = "";
      save();
      // Screen readers hear the answer; the cards stay one Tab away.
      announce.textContent = (turn.querySelector(".answer") || turn).textContent.trim();
      turn.scrollIntoView({ block: "start" });
    }

    // With a local model (QA_LLM_URL) the answer streams from /ask/stream as server-sent events: its draft is shown
    // as it is written (as text, never as HTML), then replaced by the checked answer the server renders.
    var stream = form.getAttribute("data-stream");

    function draftTurn(question) {
      var turn = document.createElement("article");
      turn.className = "draft-turn";
      turn.setAttribute("aria-busy", "true");
      var heading = document.createElement("h2");
      heading.className = "question";
      heading.textContent = question;
      var text = document.createElement("p");
      text.className = "answer draft";
      var note = document.createElement("p");
      note.className = "mode";
      note.textContent = "Draft by the local model, being checked against the passages…";
      turn.appendChild(heading);
      turn.appendChild(text);
      turn.appendChild(note);
      conversation.appendChild(turn);
      return { turn: turn, text: text };
    }

    function streamAnswer(body, question) {
      var dog = watchdog();  // poked by each piece the model writes: a slow model is not cut off, a silent one is
      return fetch(stream + "?partial=1", { method: "POST", body: body, headers: { Accept: "text/event-stream" },
                                            signal: dog.signal })
        .then(function (response) {
          if (!response.ok || !response.body) {
            return response.text().then(function (text) { showError(messageOf(text, response)); });
          }
          var reader = response.body.getReader();
          var decoder = new TextDecoder();
          var buffer = "";
          var draft = null;
          var html = null;
          function handle(block) {
            var event = "message";
            var data = "";
            block.split("\n").forEach(function (line) {
              if (line.indexOf("event:") === 0) event = line.slice(6).trim();
              else if (line.indexOf("data:") === 0) data += line.slice(5).trim();
            });
            if (!data) return;
            var value = JSON.parse(data);
            if (event === "draft") {
              if (!draft) {
                draft = draftTurn(question);
                status.textContent = "The local model is writing…";
              }
              draft.text.textContent += value.text;
            } else if (event === "turn") {
              html = value.html;
            } else if (event === "answer") {
              if (draft) conversation.removeChild(draft.turn);
              draft = null;
              if (html) showTurn(html);
            }
          }
          function pump() {
            return reader.read().then(function (chunk) {
              dog.poke();
              if (chunk.done) {
                if (buffer.trim()) handle(buffer);
                if (draft) {
                  conversation.removeChild(draft.turn);
                  showError("The answer was cut off; ask again.");
                }
                return;
              }
              buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
              var cut;
              while ((cut = buffer.indexOf("\n\n")) >= 0) {
                handle(buffer.slice(0, cut));
                buffer = buffer.slice(cut + 2);
              }
              return pump();
            });
          }
          return pump();
        })
        .then(function () { dog.done(); }, function (error) { dog.done(); throw error; });
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (button.disabled) return;
      if (!length()) {
        showError("Type a question first.");
        input.focus();
        return;
      }
      if (length() > maxChars) {
        showError(tooLong());
        input.focus();
        return;
      }
      // FormData includes the hidden history fields of earlier turns (they name this form with form="ask").
      var body = new URLSearchParams(new FormData(form));
      working(true);
      errorBox.hidden = true;
      status.textContent = "Searching the articles…";
      var asking = stream ? streamAnswer(body, input.value.trim()) :
        fetchText("/ask?partial=1", { method: "POST", body: body, headers: { Accept: "text/html" } })
          .then(function (got) {
            if (!got[0].ok) showError(messageOf(got[1], got[0]));
            else showTurn(got[1]);
          });
      asking
        .catch(function (error) { showError(unanswered(error)); })
        .then(function () {
          working(false);
          input.focus({ preventScroll: true });
        });
    });
  }

  var chat = document.getElementById("ask");
  if (chat) {
    keepClearOfBar(chat);
    enhanceChat(chat);
  }

  // The articles page's add and rebuild forms run as background jobs (?background=1): a progress bar and
  // "Embedding 120 of 557 passages…" beside the form while the job runs, then the server's own message and the
  // list as they are now. Without JavaScript the forms post and the server redirects (POST-redirect-GET).
  function enhanceJob(form) {
    var kind = form.getAttribute("data-job");
    var button = form.querySelector("button[type=submit]");
    var label = button.textContent;
    var box = document.createElement("div");
    box.className = "job";
    box.hidden = true;
    box.innerHTML = '<progress id="' + kind + '-progress" aria-labelledby="' + kind + '-detail"></progress> ' +
      '<span id="' + kind + '-detail" role="status"></span>';
    form.insertAdjacentElement("afterend", box);
    var bar = box.querySelector("progress");
    var detail = box.querySelector("span");

    function clearNotices() {
      document.querySelectorAll("main .notice").forEach(function (n) { n.parentNode.removeChild(n); });
    }

    // Focus moves to what happened (it fell to the page when the button it was on was disabled and re-enabled):
    // keyboard users continue from the message, and screen readers read it.
    function showNotice(node) {
      clearNotices();
      box.insertAdjacentElement("afterend", node);
      node.setAttribute("tabindex", "-1");
      node.focus();
    }

    function fail(message) {
      var p = document.createElement("p");
      p.className = "notice error";
      p.setAttribute("role", "alert");
      p.textContent = message;
      box.hidden = true;
      showNotice(p);
    }

    function show(job) {
      if (job.total) {
        bar.max = job.total;
        bar.value = job.done;
      } else {
        bar.removeAttribute("value");  // indeterminate until the passages are counted
      }
      detail.textContent = job.detail + "…";
    }

    function finish(job) {
      var r = job.result;
      var query = kind === "add"
        ? { added: r.doc_id, status: r.status, seconds: r.seconds.toFixed(1) }
        : { rebuilt: r.documents, chunks: r.chunks, embedded: r.embedded, seconds: r.seconds.toFixed(1) };
      var url = "/documents?" + new URLSearchParams(query).toString();
      bar.max = 1;
      bar.value = 1;
      detail.textContent = "Done.";
      return fetchText(url, { headers: { Accept: "text/html" } }).then(function (got) {
        var text = got[1];
        var doc = new DOMParser().parseFromString(text, "text/html");
        var list = document.querySelector("section[aria-labelledby=list-heading]");
        var fresh = doc.querySelector("section[aria-labelledby=list-heading]");
        if (list && fresh) {
          list.innerHTML = fresh.innerHTML;
          list.querySelectorAll("form[data-confirm]").forEach(confirmFirst);
        }
        var notice = doc.querySelector(".notice.ok");
        if (notice) showNotice(document.importNode(notice, true));
        if (kind === "add") form.reset();
        history.replaceState(null, "", url);  // a reload shows the message and repeats nothing
      });
    }

    function poll(location) {
      return fetchText(location, { headers: { Accept: "application/json" } }).then(function (got) {
        var response = got[0], text = got[1];
        if (!response.ok) throw new Error(messageOf(text, response));
        var job = JSON.parse(text).job;
        if (job.state === "done") return finish(job);
        if (job.state === "failed") return fail(job.detail);
        show(job);
        return new Promise(function (resolve) { setTimeout(resolve, 300); }).then(function () {
          return poll(location);
        });
      });
    }

    function working(yes) {
      button.disabled = yes;
      button.textContent = yes ? "Working…" : label;
      form.setAttribute("aria-busy", yes ? "true" : "false");
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (button.disabled) return;
      working(true);
      clearNotices();
      box.hidden = false;
      show({ total: 0, done: 0, detail: "Sending" });
      fetchText(form.getAttribute("action") + "?background=1",
                { method: "POST", body: new FormData(form), headers: { Accept: "application/json" } })
        .then(function (got) {
          var response = got[0], text = got[1];
          if (response.status !== 202) return fail(messageOf(text, response));
          return poll(response.headers.get("location") || "/jobs/" + JSON.parse(text).job.id);
        })
        .catch(function (error) { fail(unanswered(error)); })
        .then(function () { working(false); });
    });
  }

  document.querySelectorAll("form[data-job]").forEach(enhanceJob);

  // Asked here, so the server need not ask again (without JavaScript it shows a page that asks).
  function confirmFirst(form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
        return;
      }
      if (!form.querySelector("input[name=confirmed]")) {
        var confirmed = document.createElement("input");
        confirmed.type = "hidden";
        confirmed.name = "confirmed";
        confirmed.value = "1";
        form.appendChild(confirmed);
      }
    });
  }

  document.querySelectorAll("form[data-confirm]").forEach(confirmFirst);
})();
