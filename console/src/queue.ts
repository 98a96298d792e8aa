// The alert queue: what is still to be worked, most severe first, oldest first within a
// severity. A new alert is impossible to miss: a tone, a pulsing banner until every alert
// is acknowledged, and a reminder tone while a serious one waits. 紧急 outranks 高 in every
// way an operator notices: always on top, red where 高 is orange, a siren instead of two
// beeps, and reminded three times as often. Keyboard-driven.
// A breach resolved while the person is still outside stays below them as 仍在越界 until
// the service sees them back; resolving one needs a confirmation naming the person.

import { ApiError, api } from "./api";
import { fill, h } from "./dom";
import { evidenceButton } from "./evidence";
import { formatAge, formatTime, t, term } from "./i18n";
import { beep } from "./sound";
import { SEVERITY_RANK, inBreach, on, personName, putAlert, stillInBreach, store } from "./store";
import { heldBadge } from "./suspensions";
import type { Alert, AlertEvent } from "./types";
import { onSubmit, showError } from "./ui";

export const DISPOSITIONS = [
  "true_violation",
  "false_alarm",
  "approved_absence",
  "equipment_fault",
] as const;
// Why a false alarm was one; required while the breach still goes on.
const REASONS = ["verified_in_place", "position_drift", "zone_error"] as const;
// An open 紧急 alert is reminded every tick, an open 高 one every third.
const REMIND_MS = 20_000;
const HIGH_EVERY = 3;
const ASK_TOLD_MS = 5_000;

export interface QueueActions {
  openPerson(supervisee: string): void;
  showOnMap(supervisee: string): void;
  locate(alert: Alert): void;
}

export class AlertQueue {
  readonly el = h("section", { class: "queue", "aria-label": t("queue.title") });
  /** The banner lives in the header so it shows on every view. */
  readonly banner = h("button", { type: "button", class: "banner", hidden: true });
  private readonly list = h("ol", { class: "alerts" });
  private selected: number | null = null;
  private readonly fresh = new Set<number>();
  private dialog: HTMLElement | null = null;
  private reminders = 0;
  private readonly told = new Map<number, { escalation: number; who: string }>();
  private readonly askedAt = new Map<number, number>();
  /** Redraws the open dialog's warning and choices (the alert may change meanwhile). */
  private refreshDialog: (() => void) | null = null;

  constructor(private readonly actions: QueueActions) {
    fill(
      this.el,
      h(
        "header",
        {},
        h("h2", {}, t("queue.title")),
        h("span", { class: "muted" }, t("queue.help")),
      ),
      this.list,
    );
    on("alerts", () => {
      this.render();
      this.refreshDialog?.();
    });
    on("people", () => this.render());
    on("raised", (alert) => this.raised(alert as Alert));
    window.setInterval(() => this.tick(), 5_000);
    window.setInterval(() => this.remind(), REMIND_MS);
  }

  sorted(): Alert[] {
    return [...store.alerts.values()].sort(
      (a, b) =>
        Number(stillInBreach(a)) - Number(stillInBreach(b)) ||
        (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) ||
        a.raised_at.localeCompare(b.raised_at),
    );
  }

  /** Keys for the queue (and its dialog); true when the key was used. */
  key(event: KeyboardEvent, typing: boolean, visible: boolean): boolean {
    if (this.dialog) return this.dialogKey(event);
    if (typing || !visible || event.ctrlKey) return false;
    const alerts = this.sorted();
    const index = alerts.findIndex((a) => a.id === this.selected);
    const current = alerts[index];
    switch (event.key) {
      case "j":
        this.select(alerts[Math.min(index + 1, alerts.length - 1)]?.id ?? null);
        return true;
      case "k":
        this.select(alerts[Math.max(index - 1, 0)]?.id ?? null);
        return true;
      case "a":
        if (current) void this.acknowledge(current);
        return true;
      case "r":
        if (current && current.status !== "resolved") this.openResolve(current);
        return true;
      case "o":
      case "Enter":
        if (current) this.actions.openPerson(current.supervisee);
        return true;
      case "m":
        if (current) this.actions.showOnMap(current.supervisee);
        return true;
      case "l":
        if (current && store.session?.can.work_alerts) this.actions.locate(current);
        return true;
      default:
        return false;
    }
  }

  private raised(alert: Alert): void {
    this.fresh.add(alert.id);
    // A held alert (暂停告警) is shown, not sounded: nobody is to act on it yet.
    if (!alert.held) beep(alert.severity);
    this.selected ??= alert.id;
    this.render();
  }

  private remind(): void {
    this.reminders += 1;
    const first = this.sorted().find((a) => a.status === "open" && !a.held);
    if (first?.severity === "critical") beep("critical");
    else if (first?.severity === "high" && this.reminders % HIGH_EVERY === 0) beep("high");
  }

  private select(id: number | null): void {
    this.selected = id;
    if (id !== null) this.fresh.delete(id);
    this.render();
    this.list.querySelector(".selected")?.scrollIntoView({ block: "nearest" });
  }

  private render(): void {
    const alerts = this.sorted();
    if (this.selected !== null && !store.alerts.has(this.selected)) {
      this.selected = alerts[0]?.id ?? null;
    }
    fill(
      this.list,
      alerts.length
        ? alerts.map((a) => this.row(a))
        : h("li", { class: "empty" }, t("queue.empty")),
    );
    // A held alert (暂停告警) waits for its window to end, not for the operator.
    const open = alerts.filter((a) => a.status === "open" && !a.held);
    const critical = open.filter((a) => a.severity === "critical").length;
    this.banner.hidden = open.length === 0;
    this.banner.classList.toggle("critical", critical > 0);
    fill(
      this.banner,
      "⚠ ",
      critical ? h("strong", {}, `${t("queue.critical", { n: critical })} · `) : null,
      t("queue.newCount", { n: open.length }),
    );
    this.banner.onclick = () => this.select(open[0]?.id ?? null);
    document.title = open.length ? `(${open.length}) ${t("app.center")}` : t("app.center");
  }

  private row(a: Alert): HTMLElement {
    const can = store.session?.can.work_alerts ?? false;
    const still = stillInBreach(a);
    const classes = ["alert", `sev-${a.severity}`, `status-${a.status}`];
    if (still) classes.push("still-breach");
    if (a.id === this.selected) classes.push("selected");
    if (this.fresh.has(a.id)) classes.push("fresh");
    return h(
      "li",
      {
        class: classes.join(" "),
        "data-alert-id": a.id,
        "data-status": a.status,
        onclick: () => this.select(a.id),
      },
      h(
        "div",
        { class: "line" },
        h("span", { class: "sev" }, term("severity", a.severity)),
        h("strong", { class: "type" }, alertTitle(a)),
        h("span", { class: "status" }, still ? t("alert.stillInBreach") : term("status", a.status)),
      ),
      h(
        "div",
        { class: "line" },
        h("span", { class: "who" }, `${personName(a.supervisee)} · ${a.supervisee}`),
      ),
      a.id === this.selected ? this.notified(a) : null,
      h(
        "div",
        { class: "line muted" },
        `${t("alert.raised")} ${formatTime(a.raised_at)} · `,
        h("span", { class: "age", "data-raised": a.raised_at }, t("alert.since", { d: age(a) })),
      ),
      h(
        "div",
        { class: "tags" },
        a.escalation > 0
          ? h("span", { class: "tag esc" }, t("alert.escalation", { n: a.escalation }))
          : null,
        heldBadge(a),
        a.late ? h("span", { class: "tag" }, t("alert.late")) : null,
        a.active ? null : h("span", { class: "tag ok" }, t("alert.cleared")),
      ),
      still
        ? h("div", { class: "line still-hint" }, t("alert.stillHint", { disposition: outcome(a) }))
        : null,
      h(
        "div",
        { class: "actions" },
        can && a.status === "open"
          ? h(
              "button",
              { type: "button", class: "ack", onclick: () => void this.acknowledge(a) },
              `${t("alert.ack")} (a)`,
            )
          : null,
        can && a.status !== "resolved"
          ? h(
              "button",
              { type: "button", class: "resolve", onclick: () => this.openResolve(a) },
              `${t("alert.resolve")} (r)`,
            )
          : null,
        can
          ? h(
              "button",
              { type: "button", class: "locate", onclick: () => this.actions.locate(a) },
              `${t("alert.locate")} (l)`,
            )
          : null,
        h(
          "button",
          { type: "button", class: "link", onclick: () => this.actions.openPerson(a.supervisee) },
          `${t("alert.openFile")} (o)`,
        ),
        h(
          "button",
          { type: "button", class: "link", onclick: () => this.actions.showOnMap(a.supervisee) },
          `${t("alert.showMap")} (m)`,
        ),
        evidenceButton(() => [`/alerts/${a.id}/evidence`, {}]),
      ),
    );
  }

  /** Who has been told of the selected alert: its timeline's last routing step, asked for
   * again when the alert escalates (and at most every few seconds until it was routed). */
  private notified(a: Alert): HTMLElement | null {
    const known = this.told.get(a.id);
    const asked = this.askedAt.get(a.id) ?? 0;
    if ((!known || known.escalation !== a.escalation) && Date.now() - asked > ASK_TOLD_MS) {
      this.askedAt.set(a.id, Date.now());
      void api<Alert & { timeline: AlertEvent[] }>(`/alerts/${a.id}`)
        .then((full) => {
          const step = full.timeline.findLast(
            (e) => e.action === "routed" || e.action === "escalated",
          );
          if (typeof step?.detail.to_zh !== "string") return;
          this.told.set(a.id, { escalation: a.escalation, who: step.detail.to_zh });
          this.render();
        })
        .catch(() => undefined); // the line is a help, not the alert: it just stays away
    }
    return known
      ? h("div", { class: "line muted notified" }, t("alert.told", { who: known.who }))
      : null;
  }

  private tick(): void {
    for (const el of this.list.querySelectorAll<HTMLElement>(".age")) {
      const raised = el.dataset.raised ?? "";
      el.textContent = t("alert.since", { d: formatAge(Date.now() - Date.parse(raised)) });
    }
  }

  private async acknowledge(a: Alert): Promise<void> {
    if (!store.session?.can.work_alerts || a.status !== "open") return;
    try {
      putAlert(await api<Alert>(`/alerts/${a.id}/acknowledge`, { method: "POST" }));
      this.fresh.delete(a.id);
    } catch (error) {
      showError(error);
    }
  }

  private openResolve(a: Alert): void {
    if (!store.session?.can.work_alerts || a.status === "resolved") return;
    this.select(a.id);
    const name = personName(a.supervisee);
    const note = h("textarea", { name: "note", rows: 3, placeholder: t("alert.note") });
    const message = h("p", { class: "error", role: "alert" });
    // While the breach goes on: said from the start, and confirmed before it is sent.
    const warning = h("p", { class: "active-warning", role: "alert" });
    const confirmation = h("p", { class: "confirm-active", role: "alert", hidden: true });
    const submitButton = h("button", { type: "submit", class: "primary" });
    const reason = h(
      "select",
      { name: "reason" },
      h("option", { value: "" }, t("alert.reasonPick")),
      REASONS.map((r) => h("option", { value: r }, term("reason", r))),
    );
    const reasonRow = h("label", { class: "reason" }, `${t("alert.reason")}：`, reason);
    let confirmed = false;
    // The API's word that the breach goes on, should this console not have heard yet.
    let refused = false;
    const isLive = (): boolean => refused || inBreach(store.alerts.get(a.id) ?? a);
    const chosen = (): string | undefined =>
      this.dialog?.querySelector<HTMLInputElement>("input[name=disposition]:checked")?.value;
    const update = (): void => {
      const live = isLive();
      warning.hidden = !live;
      fill(warning, live ? t("alert.activeWarning", { name }) : "");
      confirmation.hidden = !(live && confirmed);
      fill(confirmation, t("alert.confirmActive", { name }));
      reasonRow.hidden = chosen() !== "false_alarm";
      fill(
        submitButton,
        live && confirmed ? t("alert.confirmSubmit") : `${t("alert.submit")} (Ctrl+Enter)`,
      );
    };
    const choices = DISPOSITIONS.map((d, i) =>
      h(
        "label",
        {},
        h("input", {
          type: "radio",
          name: "disposition",
          value: d,
          checked: i === 0,
          onchange: update,
        }),
        ` ${i + 1}. ${term("disposition", d)}`,
      ),
    );
    const submit = async (): Promise<void> => {
      const disposition = chosen();
      const live = isLive();
      message.textContent = "";
      if (!note.value.trim()) {
        message.textContent = t("alert.noteNeeded");
        return;
      }
      if (disposition === "false_alarm" && live && !reason.value) {
        message.textContent = t("alert.reasonNeeded");
        reason.focus();
        return;
      }
      if (live && !confirmed) {
        confirmed = true;
        update();
        submitButton.focus();
        return;
      }
      try {
        putAlert(
          await api<Alert>(`/alerts/${a.id}/resolve`, {
            method: "POST",
            body: {
              disposition,
              note: note.value.trim(),
              reason: disposition === "false_alarm" && reason.value ? reason.value : undefined,
              while_active: confirmed,
            },
          }),
        );
        this.closeDialog();
      } catch (error) {
        message.textContent = error instanceof Error ? error.message : String(error);
        // The breach came back while the dialog was open: the operator confirms it now.
        if (error instanceof ApiError && error.status === 409 && isStillInBreach(error)) {
          refused = true;
          update();
        }
      }
    };
    this.dialog = h(
      "div",
      { class: "overlay" },
      h(
        "form",
        {
          class: "dialog resolve-dialog",
          onsubmit: onSubmit(submit),
        },
        h("h3", {}, `${t("alert.resolve")}：${term("type", a.type)} · ${name}`),
        warning,
        h("fieldset", {}, h("legend", {}, t("alert.disposition")), choices),
        reasonRow,
        note,
        confirmation,
        message,
        h(
          "div",
          { class: "actions" },
          submitButton,
          h(
            "button",
            { type: "button", onclick: () => this.closeDialog() },
            `${t("alert.cancel")} (Esc)`,
          ),
        ),
      ),
    );
    update();
    this.refreshDialog = update;
    document.body.append(this.dialog);
    // On the choices, so 1–4 pick one and then move on to the note.
    this.dialog.querySelector<HTMLInputElement>("input:checked")?.focus();
  }

  private dialogKey(event: KeyboardEvent): boolean {
    const form = this.dialog?.querySelector("form");
    if (event.key === "Escape") {
      this.closeDialog();
      return true;
    }
    if (event.key === "Enter" && event.ctrlKey) {
      form?.requestSubmit();
      return true;
    }
    const n = Number(event.key);
    const typing =
      event.target instanceof HTMLTextAreaElement || event.target instanceof HTMLSelectElement;
    if (typing || !(n >= 1 && n <= DISPOSITIONS.length)) return false;
    const radio = form?.querySelector<HTMLInputElement>(`input[value=${DISPOSITIONS[n - 1]}]`);
    if (radio) radio.checked = true;
    this.refreshDialog?.();
    // The key is used up here (not typed), so the note starts empty; a false alarm first
    // asks why.
    const reason = form?.querySelector<HTMLElement>("label.reason:not([hidden]) select");
    (reason ?? form?.querySelector("textarea"))?.focus();
    return true;
  }

  private closeDialog(): void {
    this.dialog?.remove();
    this.dialog = null;
    this.refreshDialog = null;
  }
}

/** The alert's type, and for an exclusion zone which one: the name the service recorded
 * when it was raised, else its id. */
function alertTitle(a: Alert): string {
  const zone = a.detail.zone_name ?? a.detail.zone;
  const said = typeof zone === "string" && zone ? zone : explanation(a);
  return said ? `${term("type", a.type)}：${said}` : term("type", a.type);
}

/** 人机分离 in a few words: how far the phone is from the person, or which of the
 * person's devices kept reporting when this one fell silent. */
function explanation(a: Alert): string {
  const d = a.detail;
  if (a.type === "device_separation" && typeof d.distance_m === "number") {
    const km = (d.distance_m / 1000).toFixed(1);
    return t("alert.apart", { device: a.device, with: String(d.with_person), km });
  }
  const still = d.stationary as { still_s?: number; usual_s?: number } | undefined;
  if (still?.still_s !== undefined && still.usual_s !== undefined) {
    const hours = (s: number): string => String(Math.round(s / 360) / 10);
    return t("alert.stationary", { h: hours(still.still_s), usual: hours(still.usual_s) });
  }
  if (Array.isArray(d.still_reporting) && d.still_reporting.length) {
    return t("alert.stillReporting", { devices: d.still_reporting.join("、") });
  }
  return "";
}

/** How a resolved alert was closed: 误报：定位漂移. */
function outcome(a: Alert): string {
  const why = a.reason ? `：${term("reason", a.reason)}` : "";
  return `${term("disposition", a.disposition)}${why}`;
}

function isStillInBreach(error: ApiError): boolean {
  return (error.detail as { still_in_breach?: boolean } | null)?.still_in_breach === true;
}

function age(a: Alert): string {
  return formatAge(Date.now() - Date.parse(a.raised_at));
}
