// 立即定位: ask every device of a person for a fix now and follow the answers as they
// arrive — each device's row says whether it was asked, whether the command reached it, and
// its fix when it comes; the fixes are drawn on the person file's map.

import L from "leaflet";
import { api } from "./api";
import { fill, h } from "./dom";
import { formatTime, t, term } from "./i18n";
import { toMap } from "./mapbase";
import type { LocateDevice, LocateRequest } from "./types";
import { showError } from "./ui";

const POLL_MS = 2_000;
// An operator waiting at the console gives up well before the service stops taking answers.
const WATCH_MS = 3 * 60_000;

export class LocateNow {
  readonly el = h("div", { class: "locate", hidden: true, "aria-live": "polite" });
  private timer = 0;
  private request: LocateRequest | null = null;
  private shown = 0; // answers drawn so far: the map moves only when one more arrives

  constructor(
    private readonly layer: L.LayerGroup,
    private readonly focus: (points: L.LatLngTuple[]) => void,
  ) {}

  /** Ask, then follow the answers until every asked device has one (or WATCH_MS). */
  async ask(supervisee: string, alert?: number): Promise<void> {
    this.stop();
    this.layer.clearLayers();
    this.shown = 0;
    this.el.hidden = false;
    fill(this.el, h("p", { class: "muted" }, t("locate.asking")));
    try {
      this.request = await api<LocateRequest>(
        `/supervisees/${encodeURIComponent(supervisee)}/locate`,
        { method: "POST", body: alert === undefined ? {} : { alert } },
      );
    } catch (error) {
      this.el.hidden = true;
      showError(error);
      return;
    }
    this.render();
    const until = Date.now() + WATCH_MS;
    this.timer = window.setInterval(() => void this.poll(until), POLL_MS);
  }

  /** Stop following (another person's file was opened). */
  stop(): void {
    window.clearInterval(this.timer);
    this.timer = 0;
  }

  /** Forget the request shown: the file now shows someone else. */
  clear(): void {
    this.stop();
    this.request = null;
    this.layer.clearLayers();
    this.el.hidden = true;
  }

  private async poll(until: number): Promise<void> {
    const r = this.request;
    if (!r) return;
    try {
      this.request = await api<LocateRequest>(
        `/supervisees/${encodeURIComponent(r.supervisee)}/locate/${r.id}`,
      );
    } catch (error) {
      this.stop();
      showError(error);
      return;
    }
    const waiting = this.request.devices.some((d) => d.asked && !d.answer);
    if (!waiting || Date.now() > until) this.stop();
    this.render();
  }

  private render(): void {
    const r = this.request;
    if (!r) return;
    this.layer.clearLayers();
    const answered = r.devices.filter((d) => d.answer);
    for (const d of answered) this.draw(d);
    if (answered.length > this.shown) {
      this.focus(answered.map((d) => toMap(d.answer?.lat ?? 0, d.answer?.lon ?? 0)));
    }
    this.shown = answered.length;
    const waiting = this.timer !== 0 && r.devices.some((d) => d.asked && !d.answer);
    fill(
      this.el,
      h("h4", {}, `${t("locate.title")} · ${formatTime(r.requested_at)}`),
      h(
        "ul",
        {},
        r.devices.map((d) =>
          h(
            "li",
            { "data-device": d.device, "data-answered": d.answer ? "yes" : "no" },
            h("strong", {}, d.device),
            ` ${term("device", d.kind)} · `,
            d.answer
              ? t("locate.answer", {
                  t: formatTime(d.answer.ts),
                  m: d.answer.acc === null ? "?" : Math.round(d.answer.acc),
                })
              : d.asked
                ? `${term("command", d.command_status ?? "queued")}，${t("locate.waiting")}`
                : t("locate.noDownlink"),
          ),
        ),
      ),
      !waiting && r.devices.some((d) => d.asked && !d.answer)
        ? h("p", { class: "warn" }, t("locate.noAnswer"))
        : null,
    );
  }

  private draw(d: LocateDevice): void {
    const a = d.answer;
    if (!a) return;
    const at = toMap(a.lat, a.lon);
    if (a.acc) {
      L.circle(at, { radius: a.acc, color: "#7c3aed", weight: 2, fillOpacity: 0.1 }).addTo(
        this.layer,
      );
    }
    L.circleMarker(at, {
      radius: 8,
      color: "#7c3aed",
      fillColor: "#a78bfa",
      fillOpacity: 1,
      weight: 3,
      className: "locate-answer",
    })
      .bindTooltip(`${t("locate.title")} · ${d.device} · ${formatTime(a.ts)}`, { permanent: true })
      .addTo(this.layer);
  }
}
