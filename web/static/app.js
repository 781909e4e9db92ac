// Progressive enhancement, no framework: the chat form answers in place with fetch (the server renders the new
// turn, escaped, with the same template as the page); delete buttons ask before deleting. Without JavaScript
// both forms post normally and the server renders the whole page.
(function () {
  "use strict";

  function messageOf(text, response) {
    var type = response.headers.get("content-type") || "";
    if (type.indexOf("application/json") === 0) {
      try { return JSON.parse(text).detail || response.statusText; } catch (e) { return response.statusText; }
    }
    var doc = new DOMParser().parseFromString(text, "text/html");
    var notice = doc.querySelector(".notice.error") || doc.body;
    return (notice.textContent || response.statusText).trim();
  }

  function enhanceChat(form) {
    var conversation = document.getElementById("conversation");
    var errorBox = document.getElementById("ask-error");
    var status = document.getElementById("ask-status");
    var announce = document.getElementById("ask-announce");
    var input = form.elements.namedItem("question");
    var button = form.querySelector("button[type=submit]");
    var label = form.querySelector("label[for=question]");

    function showError(message) {
      errorBox.textContent = message;
      errorBox.hidden = false;
      status.textContent = "";
      announce.textContent = "";
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!input.value.trim()) {
        showError("Type a question first.");
        input.focus();
        return;
      }
      // FormData includes the hidden history fields of earlier turns (they name this form with form="ask").
      var body = new URLSearchParams(new FormData(form));
      button.disabled = true;
      status.textContent = "Searching the articles…";
      announce.textContent = "Searching the articles…";
      fetch("/ask?partial=1", { method: "POST", body: body, headers: { Accept: "text/html" } })
        .then(function (response) {
          return response.text().then(function (text) {
            if (!response.ok) {
              showError(messageOf(text, response));
              return;
            }
            errorBox.hidden = true;
            conversation.insertAdjacentHTML("beforeend", text);
            var turn = conversation.lastElementChild;
            input.value = "";
            label.textContent = "Ask a follow-up or a new question";
            status.textContent = "";
            // Screen readers hear the answer; the cards stay one Tab away.
            announce.textContent = (turn.querySelector(".answer") || turn).textContent.trim();
            turn.scrollIntoView({ block: "start" });
          });
        })
        .catch(function (error) { showError("The server did not answer (" + error.message + ")."); })
        .then(function () {
          button.disabled = false;
          input.focus({ preventScroll: true });
        });
    });
  }

  var chat = document.getElementById("ask");
  if (chat) enhanceChat(chat);

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
})();
