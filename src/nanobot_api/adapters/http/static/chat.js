// The chat page. It is a client of the public API and nothing else: GET /v1/models,
// the Conversations API (list, create, items, delete) and streamed chat completions
// whose session_id is the conversation's id. No build step, no library, no network
// beyond this server. Text from the server only ever reaches the page as text nodes.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = "nanobot.apiKey"; // sessionStorage: this tab only, never the URL
  const OPEN = "nanobot.conversation";
  const state = { model: null, conversation: null, files: [], controller: null };

  class ApiError extends Error {
    constructor(status, message, type) {
      super(message);
      this.status = status;
      this.type = type || "";
    }
  }

  // ---- talking to the API ----------------------------------------------------------

  function withKey(headers) {
    const key = sessionStorage.getItem(KEY);
    return key ? { ...headers, Authorization: `Bearer ${key}` } : { ...headers };
  }

  async function api(path, options = {}, refused = false) {
    const response = await fetch(path, { ...options, headers: withKey(options.headers) });
    if (response.status === 401) {
      await askForKey(refused || Boolean(sessionStorage.getItem(KEY)));
      return api(path, options, true);
    }
    if (!response.ok) throw await failureOf(response);
    return response;
  }

  async function failureOf(response) {
    let message = response.statusText || "request failed";
    let type = "";
    try {
      const body = await response.json();
      message = body.error?.message || message;
      type = body.error?.type || "";
    } catch {
      // Not JSON (a proxy's page): the status says enough.
    }
    return new ApiError(response.status, message, type);
  }

  function askForKey(refused) {
    const dialog = $("key-dialog");
    $("key-title").textContent = refused
      ? "That key was refused: enter the server's API key"
      : "This server needs an API key";
    return new Promise((resolve) => {
      $("key-form").onsubmit = () => {
        sessionStorage.setItem(KEY, $("key").value.trim());
        $("key").value = "";
        resolve();
      };
      if (!dialog.open) dialog.showModal();
      $("key").focus();
    });
  }

  async function json(path, options) {
    return (await api(path, options)).json();
  }

  function post(body) {
    return { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  }

  // ---- Markdown, as DOM nodes ------------------------------------------------------

  const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\n]+\*)|\[([^\]\n]+)\]\((https?:\/\/[^)\s]+)\)/g;

  function inline(parent, text) {
    let last = 0;
    for (const match of text.matchAll(INLINE)) {
      parent.append(text.slice(last, match.index));
      const [whole, code, bold, italic, label, href] = match;
      let node;
      if (code) node = el("code", code.slice(1, -1));
      else if (bold) node = el("strong", bold.slice(2, -2));
      else if (italic) node = el("em", italic.slice(1, -1));
      else {
        node = el("a", label);
        node.href = href;
        node.rel = "noopener noreferrer";
        node.target = "_blank";
      }
      parent.append(node);
      last = match.index + whole.length;
    }
    parent.append(text.slice(last));
  }

  function markdown(target, text) {
    const blocks = [];
    const lines = text.split("\n");
    let paragraph = [];
    let list = null;
    const flush = () => {
      if (paragraph.length) {
        const p = el("p");
        paragraph.forEach((line, i) => {
          if (i) p.append(el("br"));
          inline(p, line);
        });
        blocks.push(p);
      }
      paragraph = [];
      list = null;
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = line.match(/^```\s*([\w+-]*)/);
      if (fence) {
        flush();
        const body = [];
        while (++i < lines.length && !lines[i].startsWith("```")) body.push(lines[i]);
        const code = el("code", body.join("\n"));
        if (fence[1]) code.className = `language-${fence[1]}`;
        const pre = el("pre");
        pre.append(code);
        blocks.push(pre);
        continue;
      }
      const item = line.match(/^\s*(?:([-*+])|(\d+)[.)])\s+(.*)$/);
      if (item) {
        const kind = item[1] ? "ul" : "ol";
        if (paragraph.length || !list || list.tagName.toLowerCase() !== kind) {
          flush();
          list = el(kind);
          blocks.push(list);
        }
        const li = el("li");
        inline(li, item[3]);
        list.append(li);
        continue;
      }
      const heading = line.match(/^(#{1,6})\s+(.*)$/);
      if (heading) {
        flush();
        const h = el(heading[1].length <= 2 ? "h3" : "h4");
        inline(h, heading[2]);
        blocks.push(h);
      } else if (!line.trim()) flush();
      else {
        list = null;
        paragraph.push(line);
      }
    }
    flush();
    target.replaceChildren(...blocks);
  }

  // ---- the page ----------------------------------------------------------------------

  function el(tag, text) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function addMessage(role, text) {
    const box = el("div");
    box.className = `message ${role}`;
    const who = { user: "You", assistant: "nanobot", error: "Error" }[role];
    box.append(el("span", who));
    box.firstChild.className = "who";
    const body = el("div");
    body.className = "body";
    box.append(body);
    if (role === "assistant") markdown(body, text);
    else body.textContent = text;
    if (role === "error") box.setAttribute("role", "alert");
    $("log").append(box);
    box.scrollIntoView({ block: "end" });
    return body;
  }

  function showError(error) {
    const where = error instanceof ApiError ? `${error.status}${error.type ? ` ${error.type}` : ""}: ` : "";
    addMessage("error", `${where}${error.message}`);
  }

  function status(text) {
    $("status").textContent = text;
  }

  async function loadConversations() {
    const list = $("conversations");
    const page = await json("/v1/conversations?limit=100");
    list.replaceChildren();
    for (const conversation of page.data) {
      const title = conversation.metadata?.title || conversation.id;
      const li = el("li");
      li.dataset.id = conversation.id;
      if (conversation.id === state.conversation) li.className = "current";
      const open = el("button", title);
      open.type = "button";
      open.className = "open";
      open.title = title;
      if (conversation.id === state.conversation) open.setAttribute("aria-current", "true");
      open.onclick = () => openConversation(conversation.id).catch(showError);
      const remove = el("button", "×");
      remove.type = "button";
      remove.className = "delete";
      remove.setAttribute("aria-label", `Delete conversation ${title}`);
      remove.onclick = () => deleteConversation(conversation.id).catch(showError);
      li.append(open, remove);
      list.append(li);
    }
  }

  async function openConversation(id) {
    if (state.controller) return;
    state.conversation = id;
    sessionStorage.setItem(OPEN, id);
    $("log").replaceChildren();
    let after = "";
    for (let pages = 0; pages < 50; pages++) {
      const query = `order=asc&limit=100${after ? `&after=${encodeURIComponent(after)}` : ""}`;
      const page = await json(`/v1/conversations/${encodeURIComponent(id)}/items?${query}`);
      for (const item of page.data) {
        if (item.type !== "message") continue;
        const text = (item.content || []).map((part) => part.text || "").join("");
        addMessage(item.role === "user" ? "user" : "assistant", text);
      }
      if (!page.has_more || !page.last_id) break;
      after = page.last_id;
    }
    await loadConversations();
    $("prompt").focus();
  }

  async function deleteConversation(id) {
    await api(`/v1/conversations/${encodeURIComponent(id)}`, { method: "DELETE" });
    if (id === state.conversation) newConversation();
    await loadConversations();
  }

  function newConversation() {
    state.conversation = null;
    sessionStorage.removeItem(OPEN);
    $("log").replaceChildren();
    document.querySelectorAll("#conversations li.current").forEach((li) => li.classList.remove("current"));
    $("prompt").focus();
  }

  // ---- files -------------------------------------------------------------------------

  function attach(files) {
    state.files.push(...files);
    showAttached();
  }

  function showAttached() {
    const box = $("attached");
    box.replaceChildren();
    state.files.forEach((file, index) => {
      const item = el("span", `${file.name} `);
      const remove = el("button", "×");
      remove.type = "button";
      remove.setAttribute("aria-label", `Remove ${file.name}`);
      remove.onclick = () => {
        state.files.splice(index, 1);
        showAttached();
      };
      item.append(remove, " ");
      box.append(item);
    });
  }

  function dataUrl(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(new Error(`Could not read ${file.name}`));
      reader.readAsDataURL(file);
    });
  }

  // Images as image_url parts, everything else as file parts: the server decides the
  // type from the bytes and answers a refused file with an error, shown as one.
  async function contentOf(text, files) {
    if (!files.length) return text;
    const parts = text ? [{ type: "text", text }] : [];
    for (const file of files) {
      const url = await dataUrl(file);
      if (file.type.startsWith("image/")) parts.push({ type: "image_url", image_url: { url } });
      else parts.push({ type: "file", file: { filename: file.name, file_data: url } });
    }
    return parts;
  }

  // ---- a turn ------------------------------------------------------------------------

  async function send() {
    const text = $("prompt").value.trim();
    if (state.controller || (!text && !state.files.length)) return;
    const files = state.files.splice(0);
    showAttached();
    $("prompt").value = "";
    const names = files.map((file) => `[${file.name}]`).join(" ");
    addMessage("user", [text, names].filter(Boolean).join("\n"));
    busy(true);
    let answer = null;
    let written = "";
    try {
      if (!state.conversation) {
        const title = (text || files[0].name).slice(0, 60);
        const created = await json("/v1/conversations", post({ metadata: { title } }));
        state.conversation = created.id;
        sessionStorage.setItem(OPEN, created.id);
      }
      const body = {
        messages: [{ role: "user", content: await contentOf(text, files) }],
        session_id: state.conversation,
        stream: true,
      };
      if (state.model) body.model = state.model;
      const response = await api("/v1/chat/completions", { ...post(body), signal: state.controller.signal });
      answer = addMessage("assistant", "");
      for await (const delta of deltas(response)) {
        written += delta;
        markdown(answer, written);
        answer.parentElement.scrollIntoView({ block: "end" });
      }
      status("");
    } catch (error) {
      if (error.name === "AbortError") {
        status("Stopped.");
        if (answer && !written) answer.parentElement.remove();
      } else {
        if (answer && !written) answer.parentElement.remove();
        showError(error);
        status("");
      }
    } finally {
      busy(false);
      loadConversations().catch(showError);
    }
  }

  // The deltas of a streamed chat completion; an error event mid-stream is thrown.
  async function* deltas(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue; // comments are keep-alives
          const data = line.slice(5).trim();
          if (data === "[DONE]") return;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new ApiError(chunk.error.code || 500, chunk.error.message, chunk.error.type);
          const delta = chunk.choices?.[0]?.delta?.content;
          if (delta) yield delta;
        }
      }
    }
  }

  function busy(on) {
    state.controller = on ? new AbortController() : null;
    $("send").disabled = on;
    $("stop").hidden = !on;
    $("log").setAttribute("aria-busy", String(on));
    status(on ? "nanobot is answering..." : $("status").textContent);
  }

  // ---- wiring ------------------------------------------------------------------------

  function wire() {
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      send();
    });
    $("prompt").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        send();
      }
    });
    $("stop").addEventListener("click", () => state.controller?.abort());
    $("new-chat").addEventListener("click", newConversation);
    $("files").addEventListener("change", (event) => {
      attach([...event.target.files]);
      event.target.value = "";
    });
    const main = document.querySelector("main");
    main.addEventListener("dragover", (event) => {
      event.preventDefault();
      main.classList.add("dropping");
    });
    main.addEventListener("dragleave", () => main.classList.remove("dropping"));
    main.addEventListener("drop", (event) => {
      event.preventDefault();
      main.classList.remove("dropping");
      attach([...event.dataTransfer.files]);
    });
  }

  async function start() {
    wire();
    try {
      const models = await json("/v1/models");
      state.model = models.data[0]?.id || null;
      $("model").textContent = state.model || "";
      const open = sessionStorage.getItem(OPEN);
      await loadConversations();
      if (open && document.querySelector(`#conversations li[data-id="${CSS.escape(open)}"]`)) {
        await openConversation(open);
      }
    } catch (error) {
      showError(error);
    }
    document.body.dataset.ready = "true"; // for the browser tests: start-up is over
    $("prompt").focus();
  }

  start();
})();
