// 禁止接触 in the person file: the no-contact orders naming the person and the people
// protected from them (被保护人), and — for the roles the API lets change them, the
// monitoring centre — adding an order, registering a protected person, replacing their
// phone and ending either, each end confirmed with its reason. A protected person is shown
// by their phone and distance only, never where they are; their number as the API masks it.
// The API checks every value: its refusals are shown as it gives them (api.ts puts them in
// Chinese), so no limit is copied here.

import { api } from "./api";
import { h } from "./dom";
import { t } from "./i18n";
import { store } from "./store";
import type { NoContactOrder, ProtectedPerson } from "./types";
import { onSubmit, showError, toast } from "./ui";

type Changed = () => Promise<void>;

export interface Apart {
  orders: NoContactOrder[];
  shielded: ProtectedPerson[];
}

export async function loadApart(person: string): Promise<Apart> {
  const at = `/supervisees/${encodeURIComponent(person)}`;
  const [orders, shielded] = await Promise.all([
    api<{ items: NoContactOrder[] }>(`${at}/no-contact`),
    api<{ items: ProtectedPerson[] }>(`${at}/protected`),
  ]);
  return { orders: orders.items, shielded: shielded.items };
}

/** The person file's section; `changed` reloads the file after a change. */
export function apartSection(person: string, apart: Apart, changed: Changed): HTMLElement[] {
  const manage = store.session?.can.manage ?? false;
  const { orders, shielded } = apart;
  return [
    h("h3", {}, t("person.apart")),
    orders.length || shielded.length
      ? h(
          "ul",
          { class: "apart" },
          orders.map((o) => orderRow(person, o, manage, changed)),
          shielded.map((p) => protectedRow(p, manage, changed)),
        )
      : h("p", { class: "muted" }, t("person.noApart")),
    manage ? orderForm(person, changed) : null,
    manage ? protectedForm(person, changed) : null,
  ].filter((el): el is HTMLElement => el !== null);
}

function named(p: string): string {
  const name = store.people.get(p)?.name;
  return name ? `${name}（${p}）` : p;
}

function orderRow(
  person: string,
  o: NoContactOrder,
  manage: boolean,
  changed: Changed,
): HTMLElement {
  const li = h(
    "li",
    { "data-no-contact": o.id },
    h(
      "span",
      { class: "what" },
      t("apart.order", {
        id: o.id,
        others: o.people
          .filter((p) => p !== person)
          .map(named)
          .join("、"),
        m: o.distance_m,
        min: Math.round(o.confirm_s / 60),
      }),
    ),
  );
  if (manage)
    li.append(
      endButton(li, t("apart.endOrderWarn"), async (reason) => {
        await api(`/no-contact/${encodeURIComponent(o.id)}/end`, {
          method: "POST",
          body: { reason },
        });
        toast(t("apart.orderEnded", { id: o.id }));
        await changed();
      }),
    );
  return li;
}

function protectedRow(p: ProtectedPerson, manage: boolean, changed: Changed): HTMLElement {
  const li = h(
    "li",
    { "data-protected": p.id },
    h(
      "span",
      { class: "what" },
      t("apart.protected", {
        who: p.name ? `${p.name}（${p.id}）` : p.id,
        device: p.device,
        via: p.owntracks ? "OwnTracks" : "Traccar Client",
        m: p.distance_m,
        s: p.confirm_s,
      }),
      " · ",
      p.sms ? t("apart.sms", { sms: p.sms }) : t("apart.noSms"),
    ),
  );
  if (!manage) return li;
  const replace = h("button", { type: "button", class: "replace-phone" }, t("apart.replacePhone"));
  replace.addEventListener("click", () => {
    replace.hidden = true;
    const phone = phoneFields();
    const form = h(
      "form",
      { class: "phone-form" },
      phone.fields,
      h("button", { type: "submit", class: "primary" }, t("apart.replaceSubmit")),
      cancelButton(() => {
        form.remove();
        replace.hidden = false;
      }),
    );
    form.addEventListener(
      "submit",
      onSubmit(() =>
        attempt(async () => {
          // The number is shown masked, so it cannot be sent back: the API keeps it.
          await api(`/protected/${encodeURIComponent(p.id)}`, {
            method: "PUT",
            body: {
              supervisee: p.supervisee,
              name: p.name,
              device: phone.value(),
              distance_m: p.distance_m,
              confirm_s: p.confirm_s,
              keep_sms: true,
            },
          });
          toast(t("apart.phoneReplaced", { id: p.id }));
          await changed();
        }),
      ),
    );
    li.append(form);
  });
  li.append(
    h(
      "div",
      { class: "apart-actions" },
      replace,
      " ",
      endButton(li, t("apart.endProtectedWarn"), async (reason) => {
        await api(`/protected/${encodeURIComponent(p.id)}/end`, {
          method: "POST",
          body: { reason },
        });
        toast(t("apart.protectedEnded", { id: p.id }));
        await changed();
      }),
    ),
  );
  return li;
}

/** 解除: asks, in the row, for a confirmation that says what ending does and for the
 * reason, which the API keeps in the audit log. */
function endButton(
  row: HTMLElement,
  warning: string,
  end: (reason: string) => Promise<void>,
): HTMLElement {
  const button = h("button", { type: "button", class: "end danger" }, t("apart.end"));
  button.addEventListener("click", () => {
    button.hidden = true;
    const reason = h("input", { type: "text", name: "reason", required: true, maxlength: 2000 });
    const form = h(
      "form",
      { class: "confirm-end", role: "alertdialog" },
      h("p", { class: "warn" }, warning),
      h("label", {}, t("apart.endReason"), " ", reason),
      h("button", { type: "submit", class: "confirm danger" }, t("apart.endConfirm")),
      cancelButton(() => {
        form.remove();
        button.hidden = false;
      }),
    );
    form.addEventListener(
      "submit",
      onSubmit(() => attempt(() => end(reason.value.trim()))),
    );
    row.append(form);
    reason.focus();
  });
  return button;
}

function cancelButton(cancel: () => void): HTMLElement {
  return h("button", { type: "button", class: "cancel", onclick: cancel }, t("apart.cancel"));
}

async function attempt(run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (error) {
    showError(error);
  }
}

/** A generated id: the API keys orders and protections by id and replaces what an id
 * names, so a typed one could silently replace someone else's. */
function newId(prefix: string): string {
  const stamp = new Date().toISOString().replace(/\D/g, "").slice(0, 14);
  return `${prefix}-${stamp}-${Math.random().toString(36).slice(2, 6)}`;
}

function number(name: string, value: number): HTMLInputElement {
  return h("input", { type: "number", name, value, step: "any" });
}

function orderForm(person: string, changed: Changed): HTMLElement {
  const others = [...store.people.values()].filter((p) => p.id !== person && p.status === "active");
  const other = h(
    "select",
    { name: "other", required: true },
    h("option", { value: "", selected: true, disabled: true }, t("apart.pickOther")),
    others.map((p) => h("option", { value: p.id }, named(p.id))),
  );
  const distance = number("distance_m", 200);
  const confirm = number("confirm_s", 300);
  const note = h("input", { type: "text", name: "note", maxlength: 2000 });
  const submit = (): Promise<void> =>
    attempt(async () => {
      const id = newId("NC");
      await api(`/no-contact/${encodeURIComponent(id)}`, {
        method: "PUT",
        body: {
          people: [person, other.value],
          distance_m: Number(distance.value),
          confirm_s: Number(confirm.value),
          note: note.value.trim() || null,
        },
      });
      toast(t("apart.orderAdded", { id }));
      await changed();
    });
  return h(
    "form",
    { class: "no-contact-form", onsubmit: onSubmit(submit) },
    h("h4", {}, t("apart.addOrder")),
    h("label", {}, t("apart.other"), " ", other),
    h("label", {}, t("apart.distance"), " ", distance),
    h("label", {}, t("apart.confirmS"), " ", confirm),
    h("label", {}, t("apart.note"), " ", note),
    h("button", { type: "submit", class: "primary" }, t("apart.addOrderSubmit")),
  );
}

/** The phone's device id and how it reports (OwnTracks topic or Traccar Client's id). */
function phoneFields(): { fields: HTMLElement[]; value: () => Record<string, string> } {
  const id = h("input", { type: "text", name: "device", required: true });
  const via = h(
    "select",
    { name: "via" },
    h("option", { value: "owntracks" }, "OwnTracks"),
    h("option", { value: "osmand" }, "Traccar Client (OsmAnd)"),
  );
  const ident = h("input", { type: "text", name: "ident", required: true });
  return {
    fields: [
      h("label", {}, t("apart.phoneId"), " ", id),
      h("label", {}, t("apart.via"), " ", via),
      h("label", {}, t("apart.ident"), " ", ident),
    ],
    value: () => ({ id: id.value.trim(), [via.value]: ident.value.trim() }),
  };
}

function protectedForm(person: string, changed: Changed): HTMLElement {
  const name = h("input", { type: "text", name: "name", maxlength: 200 });
  const phone = phoneFields();
  const distance = number("distance_m", 500);
  const confirm = number("confirm_s", 60);
  const sms = h("input", { type: "tel", name: "sms" });
  const note = h("input", { type: "text", name: "note", maxlength: 2000 });
  const submit = (): Promise<void> =>
    attempt(async () => {
      const id = newId("PP");
      await api(`/protected/${encodeURIComponent(id)}`, {
        method: "PUT",
        body: {
          supervisee: person,
          name: name.value.trim() || null,
          device: phone.value(),
          distance_m: Number(distance.value),
          confirm_s: Number(confirm.value),
          sms: sms.value.trim() || null,
          note: note.value.trim() || null,
        },
      });
      toast(t("apart.protectedAdded", { id }));
      await changed();
    });
  return h(
    "form",
    { class: "protected-form", onsubmit: onSubmit(submit) },
    h("h4", {}, t("apart.addProtected")),
    h("label", {}, t("apart.name"), " ", name),
    phone.fields,
    h("label", {}, t("apart.distance"), " ", distance),
    h("label", {}, t("apart.confirmS"), " ", confirm),
    h("label", {}, t("apart.smsNumber"), " ", sms),
    h("label", {}, t("apart.note"), " ", note),
    h("p", { class: "muted" }, t("apart.protectedHelp")),
    h("button", { type: "submit", class: "primary" }, t("apart.addProtectedSubmit")),
  );
}
