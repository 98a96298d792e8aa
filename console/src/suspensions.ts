// 暂停告警 in the person file: the person's suspension windows with who asked and who
// approved, the buttons the caller's role allows (approve or refuse a request, revoke one
// that has not ended), and the form an officer asks with. Everything else — holding the
// alerts, resuming them — is the service's.

import { api } from "./api";
import { h } from "./dom";
import { formatTime, t, term } from "./i18n";
import { store } from "./store";
import type { Alert, Suspension } from "./types";
import { localInput, onSubmit, showError, toast } from "./ui";

// The alert types a suspension may hold (the service never holds engine_fault).
const HOLDABLE = [
  "jurisdiction_exit",
  "exclusion_enter",
  "curfew_breach",
  "device_offline",
  "no_fix",
  "low_battery",
  "strap_tamper",
  "sos",
  "device_separation",
  "checkin_missed",
  "contact",
  "gathering",
] as const;
const REASONS = ["hospital", "detention", "court", "other"] as const;
const DEFAULT_DAYS = 3;

export async function loadSuspensions(person: string): Promise<Suspension[]> {
  const list = await api<{ items: Suspension[] }>(
    `/supervisees/${encodeURIComponent(person)}/suspensions`,
  );
  return list.items;
}

/** The 已暂停 badge of a held alert: the reason and when it resumes (the circumstances on
 * hover). */
export function heldBadge(a: Alert): HTMLElement | null {
  if (!a.held) return null;
  const reason = term("suspendReason", a.held.reason);
  return h(
    "span",
    { class: "tag held", title: a.held.reason_text || reason },
    t("alert.heldWhy", { reason, until: formatTime(a.held.until) }),
  );
}

/** The person file's section; `changed` reloads the file after a step. */
export function suspensionSection(
  person: string,
  items: Suspension[],
  changed: () => Promise<void>,
): HTMLElement[] {
  const post = async (s: Suspension, step: string, body?: unknown): Promise<void> => {
    try {
      await api(`/suspensions/${encodeURIComponent(s.id)}/${step}`, { method: "POST", body });
      await changed();
    } catch (error) {
      showError(error);
    }
  };
  return [
    h("h3", {}, t("person.suspensions")),
    items.length
      ? h(
          "ul",
          { class: "suspensions" },
          items.map((s) => row(s, post)),
        )
      : h("p", { class: "muted" }, t("person.noSuspensions")),
    store.session?.can.suspend ? askForm(person, changed) : null,
  ].filter((el): el is HTMLElement => el !== null);
}

function row(
  s: Suspension,
  post: (s: Suspension, step: string, body?: unknown) => Promise<void>,
): HTMLElement {
  const can = store.session?.can;
  const ended = Date.parse(s.to) <= Date.now();
  const live = (s.status === "requested" || s.status === "approved") && !ended;
  const ask = (prompt: string, step: string): void => {
    const reason = window.prompt(prompt)?.trim();
    if (reason) void post(s, step, { reason });
  };
  const button = (cls: string, label: string, run: () => void): HTMLElement =>
    h("button", { type: "button", class: cls, onclick: run }, label);
  return h(
    "li",
    { "data-suspension-id": s.id, "data-status": s.status },
    h("strong", {}, term("suspendReason", s.reason)),
    ` · ${formatTime(s.from)} — ${formatTime(s.to)} · `,
    h("span", { class: "state" }, term("suspension", s.status)),
    s.in_force ? h("span", { class: "tag held" }, t("suspension.inForce")) : null,
    h(
      "div",
      {},
      s.types.length
        ? s.types.map((type) => term("type", type)).join("、")
        : t("suspension.allTypes"),
    ),
    s.reason_text ? h("div", { class: "muted" }, s.reason_text) : null,
    h(
      "div",
      { class: "muted chain" },
      t("suspension.askedBy", { who: s.requested_by }),
      s.approved_by ? ` · ${t("suspension.approvedBy", { who: s.approved_by })}` : null,
      s.refusal_reason ? ` · ${s.refusal_reason}` : null,
      s.revoked_by
        ? ` · ${t("suspension.revokedBy", { who: s.revoked_by, t: formatTime(s.revoked_at) })}`
        : null,
      s.revoke_reason ? `（${s.revoke_reason}）` : null,
    ),
    can?.approve_suspension && s.status === "requested" && !ended
      ? button("approve", t("suspension.approveBtn"), () => void post(s, "approve", {}))
      : null,
    can?.approve_suspension && s.status === "requested"
      ? button("refuse", t("suspension.refuseBtn"), () =>
          ask(t("suspension.refuseReason"), "refuse"),
        )
      : null,
    can?.suspend && live
      ? button("revoke", t("suspension.revokeBtn"), () =>
          ask(t("suspension.revokeReason"), "revoke"),
        )
      : null,
  );
}

function askForm(person: string, changed: () => Promise<void>): HTMLElement {
  const all = h("input", { type: "checkbox", name: "all", checked: true });
  const types = HOLDABLE.map((type) => h("input", { type: "checkbox", name: "type", value: type }));
  const reason = h(
    "select",
    { name: "reason" },
    REASONS.map((r) => h("option", { value: r }, term("suspendReason", r))),
  );
  const reasonText = h("input", { type: "text", name: "reason_text", maxlength: 2000 });
  const to = h("input", {
    type: "datetime-local",
    name: "to",
    required: true,
    value: localInput(new Date(Date.now() + DEFAULT_DAYS * 86_400_000)),
  });
  // "All" and single types exclude each other.
  all.addEventListener("change", () => {
    if (all.checked) for (const box of types) box.checked = false;
  });
  for (const box of types) box.addEventListener("change", () => (all.checked = false));
  const submit = async (): Promise<void> => {
    const chosen = all.checked ? [] : types.filter((b) => b.checked).map((b) => b.value);
    try {
      await api(`/supervisees/${encodeURIComponent(person)}/suspensions`, {
        method: "POST",
        body: {
          types: chosen,
          reason: reason.value,
          reason_text: reasonText.value.trim(),
          to: new Date(to.value).toISOString(),
        },
      });
      toast(t("suspension.ok"));
      await changed();
    } catch (error) {
      showError(error);
    }
  };
  return h(
    "form",
    { class: "suspend-form", onsubmit: onSubmit(submit) },
    h("p", { class: "muted" }, t("suspension.help")),
    h(
      "fieldset",
      {},
      h("legend", {}, t("suspension.types")),
      h("label", {}, all, ` ${t("suspension.allTypes")}`),
      types.map((box) => h("label", {}, box, ` ${term("type", box.value)}`)),
    ),
    h("label", {}, t("suspension.reason"), " ", reason),
    h("label", {}, t("suspension.reasonText"), " ", reasonText),
    h("label", {}, t("suspension.to"), " ", to),
    h("button", { type: "submit", class: "primary" }, t("suspension.submit")),
  );
}
