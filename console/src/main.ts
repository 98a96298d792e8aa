// The console's shell: login with a token, the header, the four views behind hash
// routes (#/live, #/person/ID, #/zones, #/leave), global keys, and the live feed.

import "./style.css";
import { api, setToken, token } from "./api";
import { fill, h } from "./dom";
import { currentLang, setLang, t, term } from "./i18n";
import { LeaveView } from "./leave";
import { LiveMap } from "./livemap";
import { PersonFile } from "./person";
import { AlertQueue } from "./queue";
import { unlockSound } from "./sound";
import { applyFeed, loadLive, loadPeople, loadZones, store } from "./store";
import type { Session } from "./types";
import { onSubmit, showError } from "./ui";
import { openFeed } from "./feed";
import { ZonesView } from "./zones";

const RESYNC_MS = 30_000;
const root = document.getElementById("app") as HTMLElement;

function logout(): void {
  setToken(null);
  location.hash = "";
  location.reload();
}

function login(problem?: string): void {
  const input = h("input", {
    type: "password",
    name: "token",
    autocomplete: "off",
    required: true,
    autofocus: true,
  });
  const message = h("p", { class: "error", role: "alert" }, problem ?? "");
  fill(
    root,
    h(
      "form",
      {
        class: "login card",
        onsubmit: onSubmit(async () => {
          unlockSound();
          setToken(input.value.trim());
          await start();
        }),
      },
      h("h1", {}, t("app.title")),
      h("h2", {}, t("login.title")),
      h("label", {}, t("login.token"), " ", input),
      h("p", { class: "muted" }, t("login.hint")),
      message,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary" }, t("login.submit")),
        langButton(),
      ),
    ),
  );
  input.focus();
}

function langButton(): HTMLElement {
  return h(
    "button",
    {
      type: "button",
      class: "lang",
      onclick: () => {
        setLang(currentLang() === "zh" ? "en" : "zh");
        location.reload();
      },
    },
    t("lang.toggle"),
  );
}

async function start(): Promise<void> {
  try {
    store.session = await api<Session>("/session");
  } catch (error) {
    setToken(null);
    login(error instanceof TypeError ? t("error.network") : t("login.bad"));
    return;
  }
  try {
    await Promise.all([loadPeople(), loadZones(), loadLive()]);
  } catch (error) {
    showError(error);
  }
  shell(store.session);
}

function shell(session: Session): void {
  const views = {
    live: h("div", { class: "view live" }),
    person: h("div", { class: "view" }),
    zones: h("div", { class: "view" }),
    leave: h("div", { class: "view" }),
  };
  const person = new PersonFile();
  const zones = new ZonesView();
  const go = (hash: string): void => {
    location.hash = hash;
  };
  const leave = new LeaveView((id) => go(`#/person/${encodeURIComponent(id)}`));
  const live = new LiveMap((id) => go(`#/person/${encodeURIComponent(id)}`));
  const queue = new AlertQueue({
    openPerson: (id) => go(`#/person/${encodeURIComponent(id)}`),
    showOnMap: (id) => {
      go("#/live");
      live.focus(id);
    },
    locate: (alert) => {
      go(`#/person/${encodeURIComponent(alert.supervisee)}`);
      // Now rather than on hashchange: the file is open, its map showing, before the answers.
      route();
      void person.locate(alert.supervisee, alert.id);
    },
  });
  fill(views.live, live.el, queue.el);
  fill(views.person, person.el);
  fill(views.zones, zones.el);
  fill(views.leave, leave.el);
  const status = h("span", { class: "feed down", title: t("feed.down") }, "●");
  const nav = (hash: string, label: string, key: string): HTMLElement =>
    h("a", { href: hash, "data-view": hash.split("/")[1], title: `${label} (${key})` }, label);
  const help = helpOverlay();
  fill(
    root,
    h(
      "header",
      { class: "top" },
      h("h1", {}, t("app.center")),
      h(
        "nav",
        {},
        nav("#/live", t("nav.live"), "1"),
        nav("#/person", t("nav.person"), "2"),
        nav("#/zones", t("nav.zones"), "3"),
        nav("#/leave", t("nav.leave"), "4"),
      ),
      queue.banner,
      h("span", { class: "spacer" }),
      status,
      h(
        "span",
        { class: "who" },
        `${term("role", session.role)} · ${session.subject}`,
        session.role === "auditor" ? ` · ${t("readonly")}` : "",
      ),
      langButton(),
      h("button", { type: "button", onclick: logout }, t("logout")),
    ),
    h("main", {}, views.live, views.person, views.zones, views.leave),
    help,
  );

  const route = (): void => {
    const [, view = "live", id] = location.hash.split("/");
    const name = view in views ? (view as keyof typeof views) : "live";
    for (const [key, el] of Object.entries(views)) el.hidden = key !== name;
    for (const a of root.querySelectorAll<HTMLElement>("nav a"))
      a.classList.toggle("active", a.dataset.view === name);
    if (name === "live") live.show();
    if (name === "zones") zones.show();
    if (name === "leave") leave.show();
    if (name === "person") {
      person.show();
      if (id) void person.open(decodeURIComponent(id));
    }
  };
  window.addEventListener("hashchange", route);
  route();

  document.addEventListener("keydown", (event) => {
    const typing =
      event.target instanceof HTMLElement && event.target.closest("input, textarea, select");
    if (event.altKey || event.metaKey) return;
    if (!help.hidden && (event.key === "Escape" || event.key === "?")) {
      help.hidden = true;
    } else if (queue.key(event, Boolean(typing), !views.live.hidden)) {
      // handled by the queue
    } else if (typing || event.ctrlKey) {
      return;
    } else if (event.key === "?") {
      help.hidden = false;
    } else if (["1", "2", "3", "4"].includes(event.key)) {
      go(["#/live", "#/person", "#/zones", "#/leave"][Number(event.key) - 1]);
    } else {
      return;
    }
    event.preventDefault();
  });

  const feed = openFeed(token() ?? "", {
    message: applyFeed,
    connected: () => {
      status.className = "feed up";
      status.title = t("feed.up");
      void loadLive().catch(showError);
    },
    lost: () => {
      status.className = "feed down";
      status.title = t("feed.down");
    },
    unauthorized: logout,
  });
  window.addEventListener("fencewatch:logout", () => {
    feed();
    logout();
  });
  window.setInterval(() => void loadLive().catch(() => undefined), RESYNC_MS);
}

function helpOverlay(): HTMLElement {
  const rows: [string, Parameters<typeof t>[0]][] = [
    ["j / k", "keys.jk"],
    ["a", "keys.a"],
    ["r", "keys.r"],
    ["o / Enter", "keys.o"],
    ["m", "keys.m"],
    ["l", "keys.l"],
    ["1–4", "keys.views"],
    ["?", "keys.help"],
    ["Esc", "keys.esc"],
  ];
  return h(
    "div",
    {
      class: "overlay help",
      hidden: true,
      onclick: (event: Event) => {
        (event.currentTarget as HTMLElement).hidden = true;
      },
    },
    h(
      "div",
      { class: "dialog" },
      h("h3", {}, t("keys.title")),
      h(
        "table",
        {},
        rows.map(([key, what]) =>
          h("tr", {}, h("td", {}, h("kbd", {}, key)), h("td", {}, t(what))),
        ),
      ),
    ),
  );
}

// Sound may only start after a user gesture; a reloaded page has had none yet.
for (const event of ["pointerdown", "keydown"]) {
  document.addEventListener(event, unlockSound, { once: true });
}
setLang(currentLang());
if (token()) void start();
else login();
