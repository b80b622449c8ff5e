// The rating page. Every value from the server (prompt, rater name, messages) is written with
// textContent or as an attribute, never as HTML.
"use strict";
(function () {
  var token = new URLSearchParams(location.search).get("token") || "";
  var STORAGE = "tsbench-human-rater";
  var $ = function (id) { return document.getElementById(id); };
  var questions = Array.prototype.slice.call(document.querySelectorAll(".question"));
  var rater = null, current = null, answers = {}, focus = 0, busy = false;

  function withToken(url) {
    return token ? url + (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(token) : url;
  }

  function api(method, path, body) {
    var url = path + (path.indexOf("?") < 0 ? "?" : "&") + "rater=" + encodeURIComponent(rater || "");
    var headers = {"Content-Type": "application/json"};
    if (token) { headers["X-Tsbench-Token"] = token; }
    return fetch(url, {method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body)})
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (!response.ok) {
            var detail = typeof data.detail === "string" ? data.detail : (data.error || response.statusText);
            throw new Error(detail + " (HTTP " + response.status + ")");
          }
          return data;
        });
      });
  }

  function status(text, error) {
    $("status").textContent = text || "";
    $("status").className = error ? "error" : "";
  }

  function view(name) {
    ["login", "rating", "finished"].forEach(function (id) { $(id).hidden = id !== name; });
    $("whoami").hidden = name === "login";
  }

  function progress(data) {
    $("progress").max = Math.max(1, data.total);
    $("progress").value = data.done;
    $("progress-text").textContent = data.done + " / " + data.total + " pairs";
  }

  function render() {
    questions.forEach(function (li, i) {
      li.classList.toggle("focused", i === focus);
      li.querySelectorAll("button").forEach(function (b) {
        b.setAttribute("aria-pressed", String(answers[li.dataset.question] === b.dataset.choice));
      });
    });
    $("submit").disabled = busy || !complete();
  }

  function complete() {
    return questions.every(function (li) { return answers[li.dataset.question]; });
  }

  function firstOpen() {
    var open = questions.findIndex(function (li) { return !answers[li.dataset.question]; });
    return open < 0 ? questions.length - 1 : open;
  }

  function show(data) {
    progress(data);
    if (data.state === "finished") {
      current = null;
      view("finished");
      $("finished-text").textContent = "You rated or skipped " + data.done + " of " + data.total + " pairs.";
      return;
    }
    current = data;
    answers = Object.assign({}, data.answers || {});
    focus = firstOpen();
    view("rating");
    $("revising").hidden = data.state !== "previous";
    $("prompt").textContent = data.prompt;
    $("left").src = withToken(data.left);
    $("right").src = withToken(data.right);
    render();
  }

  function next() {
    return api("GET", "/api/next").then(show);
  }

  function answer(choice) {
    if (!current || busy) { return; }
    answers[questions[focus].dataset.question] = choice;
    focus = firstOpen();
    render();
  }

  function guarded(promise, done) {
    busy = true;
    render();
    return promise.then(function (data) { busy = false; done(data); })
      .catch(function (err) { busy = false; render(); status(err.message, true); });
  }

  function submit() {
    if (!current || busy || !complete()) { return; }
    var revising = current.state === "previous";
    guarded(api("POST", "/api/vote", {presentation: current.presentation, answers: answers}), function (data) {
      status(revising ? "Earlier answers replaced (" + (data.changed.length || "none") + " changed)." : "Saved.");
      next().catch(function (err) { status(err.message, true); });
    });
  }

  function skip() {
    if (!current || busy) { return; }
    if (current.state === "previous") { next().catch(function (err) { status(err.message, true); }); return; }
    guarded(api("POST", "/api/skip", {presentation: current.presentation}), function () {
      status("Skipped.");
      next().catch(function (err) { status(err.message, true); });
    });
  }

  function back() {
    if (busy) { return; }
    var before = current && current.state === "previous" ? "?before=" + current.presentation : "";
    guarded(api("GET", "/api/previous" + before), function (data) {
      if (data.state === "none") { status("No earlier pair to change."); render(); return; }
      status("");
      show(data);
    });
  }

  function login(name) {
    rater = name;
    return api("POST", "/api/rater", {name: name}).then(function (data) {
      rater = data.name;
      localStorage.setItem(STORAGE, rater);
      $("rater-name").textContent = rater;
      return next();
    });
  }

  questions.forEach(function (li, i) {
    li.querySelectorAll("button").forEach(function (b) {
      b.addEventListener("click", function () { focus = i; answer(b.dataset.choice); });
    });
  });
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", skip);
  $("back").addEventListener("click", back);
  $("switch-rater").addEventListener("click", function () {
    localStorage.removeItem(STORAGE);
    rater = null;
    current = null;
    view("login");
    $("name").focus();
  });
  $("login-form").addEventListener("submit", function (event) {
    event.preventDefault();
    login($("name").value.trim()).catch(function (err) { status(err.message, true); });
  });
  document.addEventListener("keydown", function (event) {
    if (!current || event.target.tagName === "INPUT" || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var keys = {"1": "left", "ArrowLeft": "left", "2": "tie", "ArrowDown": "tie", "3": "right", "ArrowRight": "right"};
    if (keys[event.key]) { answer(keys[event.key]); }
    else if (event.key === "ArrowUp") { focus = Math.max(0, focus - 1); render(); }
    else if (event.key === "Enter") { submit(); }
    else if (event.key === "s" || event.key === "S") { skip(); }
    else if (event.key === "u" || event.key === "U") { back(); }
    else { return; }
    event.preventDefault();
  });

  var saved = localStorage.getItem(STORAGE);
  if (saved) {
    login(saved).catch(function (err) { view("login"); status(err.message, true); });
  } else {
    view("login");
    $("name").focus();
  }
})();
