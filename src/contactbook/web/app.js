/* Contact Book search page.
 *
 * Plain JavaScript, no build step. Served with a Content-Security-Policy that allows
 * only same-origin scripts and styles, so nothing here uses inline handlers or style
 * attributes, and every piece of data goes into the page as text. The one exception is
 * the server's highlight strings, which arrive HTML-escaped with matches wrapped in
 * <mark>; even those are rebuilt node by node, keeping <mark> and nothing else.
 *
 * Routes live in the hash, so they work when a link is opened directly and need no
 * server support:  #/?q=ada  (a search)   #/?q=ada&tag=vip&tag=emea  (a search among the
 * contacts with every one of those tags; without q, the list of those contacts)
 * #/contacts/42  (one contact).
 *
 * A contact's tags are chips: clicking one adds it to the tag filters, which show under
 * the search box as chips of their own, each removable.
 *
 * Results are a plain list whose names are links, not an ARIA listbox: each result
 * also holds a mailto link, and listbox options must not contain interactive content.
 * The arrow keys move real focus between the result names instead.
 */
"use strict";

(() => {
  const PAGE_SIZE = 20;
  const DEBOUNCE_MS = 150;
  const TOKEN_KEY = "contactbook.token";

  const $ = (id) => document.getElementById(id);
  const el = {
    searchView: $("search-view"),
    detailView: $("detail-view"),
    tokenView: $("token-view"),
    form: $("search-form"),
    input: $("q"),
    spinner: $("spinner"),
    status: $("status"),
    state: $("state"),
    results: $("results"),
    more: $("more"),
    detail: $("detail"),
    back: $("back"),
    tokenForm: $("token-form"),
    tokenInput: $("token-input"),
    tokenError: $("token-error"),
    forgetToken: $("forget-token"),
    template: $("result-template"),
    filters: $("filters"),
    filterList: $("filter-list"),
  };

  const numberFormat = new Intl.NumberFormat();

  /* ------------------------------------------------------------------ API */

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null; // storage disabled: behave as if no token was given
    }
  }

  /** GET a JSON answer; throws ApiError (status 0 when the server could not be reached). */
  async function getJson(path, signal) {
    const headers = { Accept: "application/json" };
    const bearer = token();
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    let response;
    try {
      response = await fetch(path, { headers, signal, cache: "no-store" });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(
        0,
        "Contact Book can't be reached. Check your connection, or whether the server is running.",
      );
    }
    if (!response.ok) {
      throw new ApiError(response.status, await errorMessage(response));
    }
    return { body: await response.json(), headers: response.headers };
  }

  async function errorMessage(response) {
    let detail = null;
    try {
      detail = (await response.json()).detail;
    } catch {
      /* not JSON: fall through to a generic message */
    }
    if (response.status === 422 && detail) return readableDetail(detail);
    if (response.status === 401 || response.status === 403) {
      return "This access token was not accepted.";
    }
    if (response.status === 404) return typeof detail === "string" ? detail : "Not found.";
    if (response.status >= 500) {
      const problem = `The server ran into a problem (error ${response.status}).`;
      return `${problem} Trying again usually helps.`;
    }
    return typeof detail === "string" ? detail : `The request failed (error ${response.status}).`;
  }

  /** 401: no token was sent; 403: the token sent is not one of the API tokens. */
  function isAuthError(error) {
    if (!(error instanceof ApiError)) return false;
    return error.status === 401 || (error.status === 403 && Boolean(token()));
  }

  /** FastAPI's validation errors are a list of {loc, msg}; say the message, not the structure. */
  function readableDetail(detail) {
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((item) => (item && item.msg ? item.msg : String(item))).join(". ");
    }
    return "The search text could not be used.";
  }

  /* ------------------------------------------------------------ rendering */

  /** Rebuild a server highlight ("Ada &lt;b&gt; <mark>Love</mark>lace") keeping only <mark>. */
  function highlighted(html, fallback) {
    const fragment = document.createDocumentFragment();
    if (typeof html !== "string" || html === "") {
      fragment.append(fallback || "");
      return fragment;
    }
    // DOMParser documents are inert: no scripts run and nothing is fetched.
    const doc = new DOMParser().parseFromString(`<body>${html}</body>`, "text/html");
    const copy = (source, target) => {
      for (const node of source.childNodes) {
        if (node.nodeType === Node.TEXT_NODE) {
          target.append(node.data);
        } else if (node.nodeType === Node.ELEMENT_NODE && node.localName === "mark") {
          const mark = document.createElement("mark");
          copy(node, mark);
          target.append(mark);
        } else if (node.nodeType === Node.ELEMENT_NODE) {
          copy(node, target); // any other tag: keep its text, drop the tag
        }
      }
    };
    copy(doc.body, fragment);
    return fragment;
  }

  function fullName(contact) {
    return [contact.first_name, contact.last_name].filter(Boolean).join(" ").trim();
  }

  function displayName(contact) {
    return fullName(contact) || contact.email || `Contact ${contact.id}`;
  }

  function initials(contact) {
    const parts = [contact.first_name, contact.last_name]
      .map((part) => (part || "").trim())
      .filter(Boolean);
    const source = parts.length ? parts : [(contact.email || "?").trim()];
    return source
      .slice(0, 2)
      .map((part) => Array.from(part)[0] || "")
      .join("")
      .toUpperCase();
  }

  /** A stable colour per contact, from classes in style.css (CSP forbids style attributes). */
  function hueClass(contact) {
    const key = String(contact.id);
    let hash = 0;
    for (const ch of key) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return `hue-${hash % 8}`;
  }

  /** A tel: link for a number ("+1 (415) 555-0142" dials +14155550142); text if no digits. */
  function phoneLink(phone, className) {
    const digits = phone.replace(/[^0-9]/g, "");
    if (!digits) {
      const span = document.createElement("span");
      if (className) span.className = className;
      span.textContent = phone;
      return span;
    }
    const link = document.createElement("a");
    if (className) link.className = className;
    link.href = `tel:${phone.trim().startsWith("+") ? "+" : ""}${digits}`;
    link.textContent = phone;
    return link;
  }

  /** "Title at Company", "Title" or "Company", highlighted where the server marked it. */
  function roleLine(contact, hl) {
    const fragment = document.createDocumentFragment();
    if (contact.title) fragment.append(highlighted(hl.title, contact.title));
    if (contact.title && contact.company) fragment.append(" at ");
    if (contact.company) fragment.append(highlighted(hl.company, contact.company));
    return fragment;
  }

  /** A tag as a chip: a button that filters the search by it. */
  function tagChip(tag) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.dataset.tag = tag;
    chip.title = `Show only contacts tagged “${tag}”`;
    chip.textContent = tag;
    return chip;
  }

  function highlightOf(contact) {
    return contact.highlight && typeof contact.highlight === "object" ? contact.highlight : {};
  }

  function renderResult(contact) {
    const item = el.template.content.firstElementChild.cloneNode(true);
    const hl = highlightOf(contact);
    const avatar = item.querySelector(".avatar");
    avatar.textContent = initials(contact);
    avatar.classList.add(hueClass(contact));

    const name = item.querySelector(".result-name");
    name.href = `#/contacts/${encodeURIComponent(contact.id)}`;
    name.dataset.id = String(contact.id);
    name.append(highlighted(hl.name, displayName(contact)));

    const email = item.querySelector(".result-email");
    if (contact.email) {
      email.href = `mailto:${contact.email}`;
      email.append(highlighted(hl.email, contact.email));
    } else {
      email.remove();
    }

    const role = item.querySelector(".result-role");
    if (contact.title || contact.company) role.append(roleLine(contact, hl));
    else role.remove();

    const phone = item.querySelector(".result-phone");
    if (contact.phone) phone.replaceWith(phoneLink(contact.phone, "result-phone"));
    else phone.remove();
    const reach = item.querySelector(".result-reach");
    if (!reach.children.length) reach.remove();

    const bio = item.querySelector(".result-bio");
    if (contact.description) {
      bio.append(highlighted(hl.description, contact.description));
    } else {
      bio.remove();
    }

    const tags = item.querySelector(".result-tags");
    const list = Array.isArray(contact.tags) ? contact.tags : [];
    if (list.length) {
      tags.setAttribute("aria-label", "Tags (choose one to filter by it)");
      for (const tag of list) {
        const li = document.createElement("li");
        li.append(tagChip(tag));
        tags.append(li);
      }
    } else {
      tags.remove();
    }
    return item;
  }

  /** Announce `text`; `visible: false` when a state box on screen already says it. */
  function setStatus(text, { visible = true } = {}) {
    el.status.classList.toggle("visually-hidden", !visible);
    // Re-setting the same text is not announced again; that is what we want.
    if (el.status.textContent !== text) el.status.textContent = text;
  }

  /** Remove every state message, including an error left next to the "More" button. */
  function clearState() {
    el.state.replaceChildren();
    for (const stray of document.querySelectorAll(".more-row .state-box")) stray.remove();
  }

  function stateBlock(kind, title, lines = [], actions = []) {
    clearState();
    const box = document.createElement("div");
    box.className = `state-box state-${kind}`;
    const heading = document.createElement("p");
    heading.className = "state-title";
    heading.textContent = title;
    box.append(heading);
    for (const line of lines) {
      const p = document.createElement("p");
      p.className = "state-text";
      p.append(line);
      box.append(p);
    }
    if (actions.length) {
      const row = document.createElement("div");
      row.className = "state-actions";
      row.append(...actions);
      box.append(row);
    }
    el.state.replaceChildren(box);
    return box;
  }

  function button(label, onClick, extraClass = "") {
    const b = document.createElement("button");
    b.type = "button";
    b.className = `button ${extraClass}`.trim();
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function relativeTime(date) {
    const seconds = (date.getTime() - Date.now()) / 1000;
    const units = [
      ["year", 365 * 24 * 3600],
      ["month", 30 * 24 * 3600],
      ["week", 7 * 24 * 3600],
      ["day", 24 * 3600],
      ["hour", 3600],
      ["minute", 60],
    ];
    const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
    for (const [unit, size] of units) {
      if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
    }
    return "just now";
  }

  function timeElement(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return document.createTextNode(String(iso));
    const time = document.createElement("time");
    time.dateTime = iso;
    time.title = date.toLocaleString();
    time.textContent = relativeTime(date);
    return time;
  }

  /* --------------------------------------------------------------- search */

  const search = {
    text: "", // the text whose results are on screen (or being fetched)
    tags: [], // the tag filters of those results
    results: [],
    fetched: 0, // rows the server has sent for this text: the next page's offset
    total: 0, // X-Total-Count, corrected by what the pages showed (see below)
    endReached: true, // the last page came back short: everything has been fetched
    seq: 0, // bumped for every request; an answer for an older number is dropped
    controller: null,
    timer: 0,
    loadingMore: false,
    openWhenReady: false, // Enter was pressed before the answer for the typed text came
    lastFailed: null, // () => retry the request that failed
  };
  const contactCache = new Map();
  let stats = null;
  let activeTags = []; // the tag filters shown under the box (and in the address)

  function sameTags(a, b) {
    return a.length === b.length && a.every((tag, i) => tag === b[i]);
  }

  function hasTag(tags, tag) {
    return tags.some((t) => t.toLowerCase() === tag.toLowerCase());
  }

  function cancelPending() {
    clearTimeout(search.timer);
    if (search.controller) search.controller.abort();
    search.controller = null;
    search.seq += 1;
    setLoading(false);
  }

  function setLoading(on) {
    el.spinner.classList.toggle("on", on);
    el.results.setAttribute("aria-busy", on ? "true" : "false");
    el.results.classList.toggle("stale", on);
  }

  function scheduleSearch() {
    clearTimeout(search.timer);
    search.openWhenReady = false;
    const text = el.input.value.trim();
    rememberQueryInUrl(el.input.value);
    if (!text && !activeTags.length) {
      cancelPending();
      search.text = "";
      search.tags = [];
      showIdle();
      return;
    }
    search.timer = setTimeout(() => runSearch(text), DEBOUNCE_MS);
  }

  /** Search for `text` among the contacts with every active tag; without text, list them. */
  async function runSearch(text, { offset = 0 } = {}) {
    if (search.controller) search.controller.abort();
    const controller = new AbortController();
    search.controller = controller;
    const seq = ++search.seq;
    const append = offset > 0;
    const tags = append ? search.tags : [...activeTags];
    search.text = text;
    search.tags = tags;
    setLoading(true);
    if (!append && !search.results.length) showLoading();

    const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(offset) });
    if (text) params.set("text", text);
    for (const tag of tags) params.append("tag", tag);
    const path = text ? "/api/v1/search" : "/api/v1/contacts";
    try {
      const { body, headers } = await getJson(`${path}?${params}`, controller.signal);
      if (seq !== search.seq) return; // a newer search started meanwhile
      const page = Array.isArray(body) ? body : [];
      const headerTotal = Number.parseInt(headers.get("X-Total-Count") || "", 10);
      for (const contact of page) contactCache.set(String(contact.id), contact);
      if (append) {
        // Rows shift when contacts change between pages; never show one twice.
        const shown = new Set(search.results.map((contact) => String(contact.id)));
        search.results = search.results.concat(page.filter((c) => !shown.has(String(c.id))));
        search.fetched = offset + page.length;
      } else {
        search.results = page;
        search.fetched = page.length;
      }
      // X-Total-Count is exact for small results but an estimate for big ones. A page
      // shorter than asked for is the end (the count is then known); a full page always
      // lets people ask for more, even when the estimate says there is no more.
      search.endReached = page.length < PAGE_SIZE;
      search.total = search.endReached
        ? search.fetched
        : Math.max(Number.isFinite(headerTotal) ? headerTotal : 0, search.fetched);
      const appendedFrom = append ? el.results.children.length : null;
      setLoading(false);
      showResults({ appendedFrom });
      if (search.openWhenReady && !append) {
        search.openWhenReady = false;
        if (page.length) location.hash = `#/contacts/${encodeURIComponent(page[0].id)}`;
      }
    } catch (error) {
      if (error.name === "AbortError" || seq !== search.seq) return;
      setLoading(false);
      search.lastFailed = () => runSearch(text, { offset });
      if (!append) search.results = [];
      handleError(error, { keepResults: append });
    } finally {
      if (search.controller === controller) search.controller = null;
      search.loadingMore = false;
      el.more.disabled = false;
    }
  }

  function showLoading() {
    el.results.hidden = true;
    el.more.hidden = true;
    stateBlock("loading", "Searching…");
  }

  function showResults({ appendedFrom = null } = {}) {
    const { results, total, text } = search;
    if (!results.length) {
      el.results.replaceChildren();
      el.results.hidden = true;
      el.more.hidden = true;
      showNoResults(text);
      return;
    }
    clearState();
    if (appendedFrom === null) {
      const active = document.activeElement;
      const focusedId = el.results.contains(active) ? active.dataset.id : null;
      el.results.replaceChildren(...results.map(renderResult));
      if (focusedId) {
        // A late answer replaced the list under a keyboard user: stay on that contact.
        const again = el.results.querySelector(`[data-id="${CSS.escape(focusedId)}"]`);
        (again || el.input).focus();
      }
    } else {
      el.results.append(...results.slice(appendedFrom).map(renderResult));
    }
    el.results.hidden = false;
    const shown = results.length;
    const remaining = Math.max(0, total - search.fetched);
    el.more.hidden = search.endReached;
    el.more.textContent = remaining
      ? `More results (${numberFormat.format(remaining)} left)`
      : "More results";
    const noun = total === 1 ? "contact" : "contacts";
    const count = numberFormat.format(total) + (search.endReached || remaining ? "" : "+");
    setStatus(
      search.endReached && shown >= total
        ? `${count} ${noun} found`
        : `${count} ${noun} found, showing ${numberFormat.format(shown)}`,
    );
    if (appendedFrom !== null) {
      // Keep keyboard users where the new results begin.
      const target = el.results.children[appendedFrom] || el.results.lastElementChild;
      target.querySelector(".result-name").focus();
    }
  }

  function showNoResults(text) {
    setStatus("No contacts found", { visible: false });
    const words = text.split(/\s+/).filter(Boolean);
    const actions = [];
    if (search.tags.length) {
      actions.push(
        button(search.tags.length === 1 ? "Search without the tag" : "Search without the tags", () => {
          setTags([]);
          el.input.focus();
        }),
      );
    }
    if (words.length > 1) {
      const shorter = words.slice(0, -1).join(" ");
      actions.push(
        button(`Search for “${shorter}”`, () => {
          el.input.value = shorter;
          el.input.focus();
          scheduleSearch();
        }),
      );
    }
    const line = document.createDocumentFragment();
    if (text) {
      const quoted = document.createElement("strong");
      quoted.textContent = `“${text}”`;
      line.append("Nothing matches ", quoted);
    } else {
      line.append("No contact has");
    }
    if (search.tags.length) {
      const tags = document.createElement("strong");
      tags.textContent = search.tags.map((tag) => `“${tag}”`).join(", ");
      line.append(text ? " among the contacts tagged " : " the tags ", tags);
    }
    line.append(".");
    stateBlock(
      "empty",
      "No contacts found",
      [
        line,
        words.length > 1
          ? "Try fewer words, or check the spelling."
          : text
            ? "Check the spelling, or try part of a name or an email address."
            : "Try fewer tags.",
      ],
      actions,
    );
  }

  function showIdle() {
    el.results.replaceChildren();
    el.results.hidden = true;
    el.more.hidden = true;
    search.results = [];
    search.fetched = 0;
    search.total = 0;
    search.endReached = true;
    const lines = [];
    if (stats) {
      const count = document.createElement("strong");
      count.textContent = numberFormat.format(stats.contacts);
      const countLine = document.createDocumentFragment();
      const noun = stats.contacts === 1 ? " contact to search." : " contacts to search.";
      countLine.append(count, noun);
      lines.push(countLine);
      const syncLine = document.createDocumentFragment();
      if (stats.last_sync) {
        syncLine.append("Last synced with Nimble ", timeElement(stats.last_sync), ".");
      } else {
        syncLine.append("Not synced with Nimble yet.");
      }
      lines.push(syncLine);
    }
    setStatus("");
    const box = stateBlock("idle", "Type a name, an email, or a few words from a bio.", lines);
    box.id = "idle";
  }

  async function loadStats() {
    try {
      const { body } = await getJson("/api/v1/stats");
      stats = body && typeof body.contacts === "number" ? body : null;
    } catch (error) {
      if (isAuthError(error)) {
        handleError(error);
        return;
      }
      stats = null; // the idle state simply says less
    }
    if (currentRoute().view === "search" && !el.input.value.trim() && !activeTags.length) {
      showIdle();
    }
  }

  function handleError(error, { keepResults = false } = {}) {
    if (isAuthError(error)) {
      askForToken(Boolean(token()));
      return;
    }
    if (!keepResults) {
      el.results.hidden = true;
      el.more.hidden = true;
    }
    const message = error instanceof ApiError ? error.message : "Something went wrong.";
    const retryable = !(error instanceof ApiError) || error.status === 0 || error.status >= 500;
    const unusable = error instanceof ApiError && error.status === 422;
    const title = unusable ? "That search can't be run" : "Search failed";
    if (!keepResults) setStatus(""); // the box below is a role=alert: it is announced itself
    const actions = retryable ? [button("Retry", () => retry(), "primary")] : [];
    const box = stateBlock("error", title, [message], actions);
    box.setAttribute("role", "alert");
    if (keepResults) el.more.before(box); // next to the button that failed, not above the list
  }

  function retry() {
    const again = search.lastFailed;
    search.lastFailed = null;
    if (again) again();
    else scheduleSearch();
    el.input.focus();
  }

  function loadMore() {
    if (search.loadingMore || !(search.text || search.tags.length)) return;
    search.loadingMore = true;
    el.more.disabled = true;
    runSearch(search.text, { offset: search.fetched });
  }

  /* ----------------------------------------------------------------- token */

  let afterToken = null;

  function askForToken(rejected) {
    cancelPending();
    afterToken = () => route();
    el.searchView.hidden = true;
    el.detailView.hidden = true;
    el.tokenView.hidden = false;
    el.tokenError.textContent = rejected
      ? "That token was not accepted. Check it and try again."
      : "";
    el.tokenInput.value = "";
    el.tokenInput.focus();
  }

  function saveToken(event) {
    event.preventDefault();
    const value = el.tokenInput.value.trim();
    if (!value) return;
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch {
      el.tokenError.textContent = "This browser refuses to keep the token (storage is disabled).";
      return;
    }
    el.tokenView.hidden = true;
    el.forgetToken.hidden = false;
    const next = afterToken;
    afterToken = null;
    loadStats();
    if (next) next();
  }

  function forgetToken() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      /* nothing stored */
    }
    el.forgetToken.hidden = true;
    stats = null;
    contactCache.clear();
    search.results = [];
    location.hash = "#/";
    loadStats();
  }

  /* ---------------------------------------------------------------- detail */

  let detailController = null;

  async function showDetail(id) {
    el.searchView.hidden = true;
    el.tokenView.hidden = true;
    el.detailView.hidden = false;
    el.back.href = queryHash(search.text, search.tags);
    if (detailController) detailController.abort();
    const cached = contactCache.get(id);
    if (cached) {
      renderDetail(cached);
    } else {
      el.detail.replaceChildren(stateLine("Loading contact…"));
    }
    const controller = new AbortController();
    detailController = controller;
    try {
      const path = `/api/v1/contacts/${encodeURIComponent(id)}`;
      const { body } = await getJson(path, controller.signal);
      if (detailController !== controller) return;
      contactCache.set(id, { ...cached, ...body, highlight: cached && cached.highlight });
      if (!cached || !sameContact(cached, body)) renderDetail(body, { focus: !cached });
    } catch (error) {
      if (error.name === "AbortError" || detailController !== controller) return;
      if (isAuthError(error)) {
        handleError(error);
        return;
      }
      if (cached) return; // the copy from the results is good enough
      const title = error.status === 404 ? "No such contact" : "This contact could not be loaded";
      const message =
        error.status === 404
          ? "It may have been removed, or the link is incomplete."
          : error.message;
      const box = document.createElement("div");
      box.className = "state-box state-error";
      const h = document.createElement("h1");
      h.className = "state-title";
      h.id = "detail-name";
      h.tabIndex = -1;
      h.textContent = title;
      const p = document.createElement("p");
      p.className = "state-text";
      p.textContent = message;
      box.append(h, p);
      if (error.status !== 404) {
        const actions = document.createElement("div");
        actions.className = "state-actions";
        actions.append(button("Retry", () => showDetail(id), "primary"));
        box.append(actions);
      }
      el.detail.replaceChildren(box);
      h.focus();
    }
  }

  function stateLine(text) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = text;
    return p;
  }

  const CONTACT_FIELDS = [
    "id",
    "nimble_id",
    "first_name",
    "last_name",
    "email",
    "description",
    "title",
    "company",
    "location",
  ];
  const CONTACT_LISTS = ["phones", "tags"];

  function sameContact(a, b) {
    return (
      CONTACT_FIELDS.every((key) => (a[key] ?? null) === (b[key] ?? null)) &&
      CONTACT_LISTS.every((key) => JSON.stringify(a[key] || []) === JSON.stringify(b[key] || []))
    );
  }

  function renderDetail(contact, { focus = true } = {}) {
    // Re-rendering (fresher data arrived) must not drop the keyboard user's place.
    const hadFocus = el.detail.contains(document.activeElement);
    const card = document.createElement("article");
    card.className = "contact-card";

    const head = document.createElement("div");
    head.className = "contact-head";
    const avatar = document.createElement("span");
    avatar.className = `avatar avatar-large ${hueClass(contact)}`;
    avatar.setAttribute("aria-hidden", "true");
    avatar.textContent = initials(contact);
    const name = document.createElement("h1");
    name.id = "detail-name";
    name.className = "contact-name";
    name.tabIndex = -1;
    name.textContent = displayName(contact);
    head.append(avatar, name);
    card.append(head);

    const facts = document.createElement("dl");
    facts.className = "facts";
    const fact = (label, value) => {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.append(value);
      facts.append(dt, dd);
    };
    if (contact.title) fact("Title", contact.title);
    if (contact.company) fact("Company", contact.company);
    if (contact.email) {
      const mail = document.createElement("a");
      mail.href = `mailto:${contact.email}`;
      mail.textContent = contact.email;
      fact("Email", mail);
    }
    const phones = Array.isArray(contact.phones) ? contact.phones : [];
    if (phones.length) {
      const list = document.createElement("ul");
      list.className = "phone-list";
      for (const phone of phones) {
        const li = document.createElement("li");
        li.append(phoneLink(phone));
        list.append(li);
      }
      fact(phones.length === 1 ? "Phone" : "Phones", list);
    }
    if (contact.location) fact("Location", contact.location);
    const tags = Array.isArray(contact.tags) ? contact.tags : [];
    if (tags.length) {
      const list = document.createElement("ul");
      list.className = "chips";
      for (const tag of tags) {
        const li = document.createElement("li");
        const chip = document.createElement("a");
        chip.className = "chip";
        chip.href = queryHash("", [tag]);
        chip.title = `Every contact tagged “${tag}”`;
        chip.textContent = tag;
        li.append(chip);
        list.append(li);
      }
      fact("Tags", list);
    }
    if (contact.description) {
      const bio = document.createElement("p");
      bio.className = "bio";
      bio.textContent = contact.description;
      fact("About", bio);
    }
    if (contact.nimble_id) {
      const code = document.createElement("code");
      code.textContent = contact.nimble_id;
      fact("Nimble ID", code);
    }
    card.append(facts);

    const actions = document.createElement("div");
    actions.className = "state-actions";
    const copy = button("Copy link", async () => {
      try {
        await navigator.clipboard.writeText(location.href);
        copy.textContent = "Link copied";
      } catch {
        copy.textContent = "Copy the address bar";
      }
      setTimeout(() => (copy.textContent = "Copy link"), 2000);
    });
    actions.append(copy);
    card.append(actions);

    el.detail.replaceChildren(card);
    document.title = `${displayName(contact)} · Contact Book`;
    if (focus || hadFocus) name.focus();
  }

  /* ---------------------------------------------------------------- routing */

  function queryHash(text, tags = []) {
    const params = new URLSearchParams();
    if (text) params.set("q", text);
    for (const tag of tags) params.append("tag", tag);
    const query = params.toString().replace(/\+/g, "%20");
    return query ? `#/?${query}` : "#/";
  }

  function rememberQueryInUrl(text) {
    const hash = queryHash(text.trim(), activeTags);
    if (location.hash !== hash && !(hash === "#/" && location.hash === "")) {
      history.replaceState(null, "", hash);
    }
  }

  function currentRoute() {
    const hash = location.hash.replace(/^#/, "");
    const match = /^\/contacts\/([^/?#]+)\/?$/.exec(hash);
    if (match) return { view: "detail", id: decodeURIComponent(match[1]) };
    const query = new URLSearchParams(hash.includes("?") ? hash.slice(hash.indexOf("?") + 1) : "");
    const tags = [];
    for (const tag of query.getAll("tag")) {
      if (tag.trim() && !hasTag(tags, tag.trim())) tags.push(tag.trim());
    }
    return { view: "search", text: query.get("q") || "", tags };
  }

  /* ---------------------------------------------------------------- filters */

  function renderFilters() {
    el.filters.hidden = activeTags.length === 0;
    el.filterList.replaceChildren(
      ...activeTags.map((tag) => {
        const li = document.createElement("li");
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "chip chip-filter";
        remove.dataset.tag = tag;
        remove.setAttribute("aria-label", `Remove the tag filter “${tag}”`);
        const label = document.createElement("span");
        label.textContent = tag;
        const cross = document.createElement("span");
        cross.className = "chip-remove";
        cross.setAttribute("aria-hidden", "true");
        cross.textContent = "×";
        remove.append(label, cross);
        li.append(remove);
        return li;
      }),
    );
  }

  /** Apply new tag filters: shown at once, then the search (or the list) runs again. */
  function setTags(tags) {
    activeTags = tags;
    renderFilters();
    cancelPending();
    search.results = [];
    scheduleSearch();
  }

  function addTag(tag) {
    if (!hasTag(activeTags, tag)) setTags([...activeTags, tag]);
    el.input.focus();
  }

  function removeTag(tag) {
    const index = activeTags.indexOf(tag);
    setTags(activeTags.filter((t) => t !== tag));
    // Focus the filter that took its place, or the box when none is left.
    const chips = el.filterList.querySelectorAll(".chip-filter");
    (chips[Math.min(index, chips.length - 1)] || el.input).focus();
  }

  let lastOpenedId = null;
  let previousView = null;
  let openedFromSearch = false; // then "back" is a real history step, not a new entry

  function route() {
    const r = currentRoute();
    if (r.view === "detail") {
      openedFromSearch = previousView === "search";
      previousView = "detail";
      lastOpenedId = r.id;
      showDetail(r.id);
      return;
    }
    previousView = "search";
    if (detailController) detailController.abort();
    document.title = "Contact Book";
    el.detailView.hidden = true;
    el.tokenView.hidden = true;
    el.searchView.hidden = false;

    const text = r.text.trim();
    const tagsChanged = !sameTags(r.tags, activeTags);
    activeTags = r.tags;
    if (tagsChanged) renderFilters();
    const query = text || activeTags.length;
    if (query && text === search.text && sameTags(activeTags, search.tags) && search.results.length) {
      // Back from a contact: the results are still here, put focus where the user left.
      el.input.value = r.text;
      showResults();
      const link =
        lastOpenedId && el.results.querySelector(`[data-id="${CSS.escape(lastOpenedId)}"]`);
      (link || el.input).focus();
      return;
    }
    el.input.value = r.text;
    el.input.focus();
    if (query) {
      cancelPending();
      search.results = [];
      runSearch(text);
    } else {
      cancelPending();
      search.text = "";
      showIdle();
    }
  }

  /* --------------------------------------------------------------- keyboard */

  function resultLinks() {
    return Array.from(el.results.querySelectorAll(".result-name"));
  }

  function onInputKey(event) {
    if (event.key === "ArrowDown") {
      const first = resultLinks()[0];
      if (first) {
        event.preventDefault();
        first.focus();
      }
    } else if (event.key === "Enter") {
      // Enter opens the best match: now if its answer is on screen, else when it comes.
      event.preventDefault();
      const text = el.input.value.trim();
      const first = resultLinks()[0];
      if (!text && !activeTags.length) return;
      const same = text === search.text && sameTags(activeTags, search.tags);
      if (same && first && !search.controller) {
        first.click();
        return;
      }
      const inFlight = same && search.controller;
      clearTimeout(search.timer);
      search.openWhenReady = true;
      if (!inFlight) runSearch(text);
    } else if (event.key === "Escape") {
      event.preventDefault();
      if (el.input.value) {
        el.input.value = "";
        scheduleSearch();
      }
    }
  }

  function onResultsKey(event) {
    const links = resultLinks();
    const index = links.indexOf(document.activeElement);
    if (index === -1) return;
    let target = null;
    if (event.key === "ArrowDown") target = links[index + 1] || (el.more.hidden ? null : el.more);
    else if (event.key === "ArrowUp") target = index === 0 ? el.input : links[index - 1];
    else if (event.key === "Home") target = links[0];
    else if (event.key === "End") target = links[links.length - 1];
    else if (event.key === "Escape") target = el.input;
    else if (isTyping(event)) {
      el.input.focus(); // typing while on a result goes on refining the search
      return;
    }
    if (target) {
      event.preventDefault();
      target.focus();
      if (target === el.input) el.input.select();
    }
  }

  /** A printable key without modifiers (space excluded: it scrolls or presses). */
  function isTyping(event) {
    const modified = event.ctrlKey || event.metaKey || event.altKey;
    return event.key.length === 1 && event.key !== " " && !modified;
  }

  function onMoreKey(event) {
    if (event.key === "ArrowUp") {
      const links = resultLinks();
      if (links.length) {
        event.preventDefault();
        links[links.length - 1].focus();
      }
    }
  }

  function onDocumentKey(event) {
    if (event.defaultPrevented) return;
    if (event.key === "Escape" && !el.detailView.hidden) {
      event.preventDefault();
      goBack();
    } else if (event.key === "/" && !el.searchView.hidden && document.activeElement !== el.input) {
      const tag = document.activeElement && document.activeElement.tagName;
      if (tag !== "INPUT" && tag !== "TEXTAREA") {
        event.preventDefault();
        el.input.focus();
        el.input.select();
      }
    }
  }

  function goBack() {
    if (openedFromSearch) history.back();
    else location.hash = queryHash(search.text, search.tags);
  }

  /* ------------------------------------------------------------------ start */

  function start() {
    el.input.addEventListener("input", scheduleSearch);
    el.input.addEventListener("keydown", onInputKey);
    el.form.addEventListener("submit", (event) => event.preventDefault());
    el.results.addEventListener("keydown", onResultsKey);
    el.results.addEventListener("click", (event) => {
      const chip = event.target.closest(".chip");
      if (chip) {
        addTag(chip.dataset.tag);
        return;
      }
      // The whole card opens the contact, except its own links (mailto, tel).
      if (event.target.closest("a, button")) return;
      const item = event.target.closest(".result");
      if (item && !window.getSelection().toString()) item.querySelector(".result-name").click();
    });
    el.filterList.addEventListener("click", (event) => {
      const chip = event.target.closest(".chip-filter");
      if (chip) removeTag(chip.dataset.tag);
    });
    el.more.addEventListener("click", loadMore);
    el.more.addEventListener("keydown", onMoreKey);
    el.back.addEventListener("click", (event) => {
      event.preventDefault();
      goBack();
    });
    el.tokenForm.addEventListener("submit", saveToken);
    el.forgetToken.addEventListener("click", forgetToken);
    document.addEventListener("keydown", onDocumentKey);
    window.addEventListener("hashchange", route);

    el.forgetToken.hidden = !token();
    route();
    loadStats();
  }

  start();
})();
