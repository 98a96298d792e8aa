// Messages for the user: errors and confirmations as a toast that fades.

import { h } from "./dom";
import { t } from "./i18n";

const toasts = h("div", { class: "toasts" });

export function toast(text: string, kind: "info" | "error" = "info"): void {
  const el = h(
    "div",
    { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    text,
  );
  if (!toasts.isConnected) document.body.append(toasts);
  toasts.append(el);
  window.setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

export function showError(error: unknown): void {
  const reason =
    error instanceof TypeError
      ? t("error.network")
      : error instanceof Error
        ? error.message
        : String(error);
  toast(t("error.prefix") + reason, "error");
}

/** A `<dl>` of label → value rows, skipping empty values. */
export function facts(rows: [string, Node | string | null | undefined][]): HTMLElement {
  return h(
    "dl",
    { class: "facts" },
    rows
      .filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

/** A datetime-local input's value for a Date, in the browser's time zone. */
export function localInput(date: Date): string {
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

/** A form's submit handler that stays on the page and runs `action`. */
export function onSubmit(action: () => Promise<void>): (event: Event) => void {
  return (event) => {
    event.preventDefault();
    void action();
  };
}
