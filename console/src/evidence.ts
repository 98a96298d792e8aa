// 导出证据包: download one alert's or one person's signed evidence bundle (a zip the API
// builds and audits); the button waits while the service draws the report.

import { download } from "./api";
import { h } from "./dom";
import { t } from "./i18n";
import { showError, toast } from "./ui";

/** The API path of the bundle and its query, asked for at the click. */
type Target = () => [string, Record<string, string>] | null;

export function evidenceButton(target: Target): HTMLButtonElement {
  const button = h("button", { type: "button", class: "evidence" }, t("evidence.export"));
  button.addEventListener("click", (event) => {
    event.stopPropagation(); // a queue row's click selects it; this is not that
    const asked = target();
    if (asked) void run(button, ...asked);
  });
  return button;
}

async function run(button: HTMLButtonElement, path: string, query: Record<string, string>) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = t("evidence.exporting");
  try {
    toast(t("evidence.done", { name: await download(path, query) }));
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = t("evidence.export");
  }
}
