// 一人一档: one person's profile, devices and battery, leave, alert history with its
// dispositions, and a track playback with a time slider — each fix with its accuracy
// circle, the stretch judged outside drawn red — so an operator can judge an alert in
// seconds. Monitoring orders and monthly scores are not in the API yet: placeholders.

import L from "leaflet";
import { api, ApiError, problems } from "./api";
import { fill, h } from "./dom";
import { formatTime, t, term } from "./i18n";
import { evidenceButton } from "./evidence";
import { LocateNow } from "./locate";
import { createMap, toMap, zoneLayer } from "./mapbase";
import { on, store } from "./store";
import { heldBadge, loadSuspensions, suspensionSection } from "./suspensions";
import type { Alert, Device, Leave, MonitoringOrder, TrackFix } from "./types";
import { facts, localInput, onSubmit, showError, toast } from "./ui";

const PLAY_STEP_MS = 300;
// The range ends a little after now, so fixes arriving while the file is open are in it.
const LEAD_MS = 5 * 60_000;
// Quality flags that make a fix less trustworthy (GCJ02 only says it was converted).
const DOUBTFUL = new Set(["ACC_UNKNOWN", "ACC_POOR", "JUMP", "LATE", "OUT_OF_ORDER", "NO_FIX"]);
const ZONE_COLOUR: Record<string, string> = { in: "#2563eb", uncertain: "#d97706", out: "#dc2626" };

export class PersonFile {
  readonly el = h("div", { class: "person" });
  private readonly picker = h("select", { class: "picker", "aria-label": t("person.pick") });
  private readonly info = h("div", { class: "person-info" });
  private readonly mapEl = h("div", { class: "map track-map" });
  private readonly from = h("input", { type: "datetime-local", name: "from" });
  private readonly to = h("input", { type: "datetime-local", name: "to" });
  private readonly slider = h("input", {
    type: "range",
    class: "track-slider",
    min: 0,
    max: 0,
    value: 0,
    disabled: true,
  });
  private readonly playButton = h(
    "button",
    { type: "button", class: "play", disabled: true },
    t("track.play"),
  );
  private readonly summary = h("div", { class: "track-summary muted" });
  private readonly current = h("div", { class: "track-current-info" });
  private map: L.Map | null = null;
  private trackLayer = L.layerGroup();
  private locateLayer = L.layerGroup();
  private readonly locating = new LocateNow(this.locateLayer, (points) =>
    this.map?.fitBounds(L.latLngBounds(points), { padding: [40, 40], maxZoom: 17 }),
  );
  private zonesLayer: L.GeoJSON | null = null;
  private cursor: { dot: L.CircleMarker; circle: L.Circle } | null = null;
  private fixes: TrackFix[] = [];
  private playing = 0;
  private id: string | null = null;

  constructor() {
    this.picker.addEventListener("change", () => {
      location.hash = `#/person/${encodeURIComponent(this.picker.value)}`;
    });
    this.slider.addEventListener("input", () => this.showFix(Number(this.slider.value)));
    this.playButton.addEventListener("click", () => this.togglePlay());
    fill(
      this.el,
      h("aside", { class: "side" }, this.picker, this.info),
      h(
        "section",
        { class: "playback" },
        h(
          "form",
          {
            class: "track-range",
            onsubmit: onSubmit(() => this.loadTrack()),
          },
          h("h2", {}, t("track.title")),
          h("label", {}, t("track.from"), " ", this.from),
          h("label", {}, t("track.to"), " ", this.to),
          h("button", { type: "submit", class: "primary load-track" }, t("track.load")),
          evidenceButton(() =>
            this.id ? [`/supervisees/${encodeURIComponent(this.id)}/evidence`, this.range()] : null,
          ),
        ),
        this.mapEl,
        h("div", { class: "slider-row" }, this.playButton, this.slider),
        this.summary,
        this.current,
      ),
    );
    on("people", () => this.fillPicker());
    on("zones", () => this.drawZones());
  }

  show(): void {
    if (!this.map) {
      this.map = createMap(this.mapEl);
      this.trackLayer.addTo(this.map);
      this.locateLayer.addTo(this.map);
      this.drawZones();
    }
    this.map.invalidateSize();
  }

  /** Open a person's file; with an alert, the track around it. */
  async open(id: string, alert?: Alert): Promise<void> {
    const changed = id !== this.id;
    if (changed) this.locating.clear();
    this.id = id;
    this.fillPicker();
    // The last day by default; around the alert when opened from one.
    const end = Math.max(Date.now(), alert ? Date.parse(alert.ts) : 0) + LEAD_MS;
    if (alert) this.setRange(Date.parse(alert.ts) - 3600_000, end);
    else if (changed) this.setRange(Date.now() - 24 * 3600_000, end);
    this.drawZones();
    try {
      await this.loadInfo(id);
      if (changed || alert) await this.loadTrack();
    } catch (error) {
      showError(error);
    }
  }

  /** 立即定位 for the person whose file this is (from `alert`, if given). */
  async locate(id: string, alert?: number): Promise<void> {
    if (id !== this.id) await this.open(id);
    await this.locating.ask(id, alert);
  }

  private setRange(from: number, to: number): void {
    this.from.value = localInput(new Date(from));
    this.to.value = localInput(new Date(to));
  }

  private fillPicker(): void {
    const people = [...store.people.values()];
    fill(
      this.picker,
      h("option", { value: "", disabled: true, selected: this.id === null }, t("person.pick")),
      people.map((p) =>
        h("option", { value: p.id, selected: p.id === this.id }, `${p.name || p.id} (${p.id})`),
      ),
    );
  }

  private drawZones(): void {
    if (!this.map) return;
    this.zonesLayer?.remove();
    const person = this.id ? store.people.get(this.id) : undefined;
    if (!person) return;
    const mine = new Set([...person.jurisdiction, ...person.exclusion, person.home ?? ""]);
    this.zonesLayer = zoneLayer(store.zones.filter((z) => mine.has(z.properties.id))).addTo(
      this.map,
    );
    this.zonesLayer.bringToBack();
  }

  private async loadInfo(id: string): Promise<void> {
    const person = store.people.get(id);
    if (!person) return;
    const [devices, leaves, alerts, orders, suspensions] = await Promise.all([
      Promise.all(person.devices.map((d) => api<Device>(`/devices/${encodeURIComponent(d)}`))),
      api<{ items: Leave[] }>(`/supervisees/${encodeURIComponent(id)}/leaves`),
      api<{ items: Alert[] }>("/alerts", { query: { supervisee: id, limit: "200" } }),
      // Monitoring orders are newer than the rest of the API: a service without them
      // answers 404, and the file says so.
      api<{ items: MonitoringOrder[] }>(`/supervisees/${encodeURIComponent(id)}/orders`).then(
        (r) => r.items,
        (error) => {
          if (error instanceof ApiError && error.status === 404) return null;
          throw error;
        },
      ),
      loadSuspensions(id),
    ]);
    const zoneName = (z: string): string =>
      store.zones.find((f) => f.properties.id === z)?.properties.name || z;
    const position = store.positions.get(id);
    fill(
      this.info,
      h("h2", {}, `${person.name || person.id}`),
      h("h3", {}, t("person.profile")),
      facts([
        [t("person.id"), person.id],
        [t("person.level"), term("level", person.level)],
        [
          t("person.status"),
          person.status === "active" ? t("person.active") : t("person.released"),
        ],
        [t("person.office"), person.office],
        [t("person.officer"), person.officer],
        [
          t("person.term"),
          person.term_start || person.term_end
            ? `${person.term_start ?? "?"} — ${person.term_end ?? "?"}`
            : null,
        ],
        [t("person.jurisdiction"), person.jurisdiction.map(zoneName).join("、")],
        [t("person.exclusion"), person.exclusion.map(zoneName).join("、")],
        [t("person.home"), person.home ? zoneName(person.home) : null],
      ]),
      h("h3", {}, t("person.devices")),
      store.session?.can.work_alerts
        ? h(
            "button",
            { type: "button", class: "locate-now", onclick: () => void this.locate(id) },
            t("alert.locate"),
          )
        : null,
      this.locating.el,
      h(
        "ul",
        { class: "devices" },
        devices.map((d) =>
          h(
            "li",
            {},
            h("strong", {}, d.id),
            ` ${term("device", d.kind)}${d.model ? ` · ${d.model}` : ""}`,
            position?.device === d.id && position.batt !== null
              ? h(
                  "span",
                  { class: position.batt < 20 ? "tag warn" : "tag" },
                  `${t("person.battery")} ${position.batt}%`,
                )
              : null,
            position?.device === d.id
              ? h("div", { class: "muted" }, `${t("person.lastFix")}：${formatTime(position.ts)}`)
              : null,
          ),
        ),
      ),
      h("h3", {}, t("person.orders")),
      this.orders(orders),
      h("h3", {}, t("person.score")),
      h("p", { class: "placeholder" }, t("person.pending")),
      h("h3", {}, t("person.leaves")),
      leaves.items.length
        ? h(
            "ul",
            { class: "leaves" },
            leaves.items.map((l) => this.leaveRow(l, zoneName)),
          )
        : h("p", { class: "muted" }, t("person.noLeaves")),
      suspensionSection(id, suspensions, () => this.loadInfo(id)),
      h("h3", {}, t("person.alerts")),
      alerts.items.length
        ? h(
            "ul",
            { class: "history" },
            alerts.items.map((a) => this.alertRow(a)),
          )
        : h("p", { class: "muted" }, t("person.noAlerts")),
    );
  }

  private leaveRow(l: Leave, zoneName: (z: string) => string): HTMLElement {
    const can = store.session?.can.leave;
    const post = async (path: string, body?: unknown): Promise<void> => {
      try {
        await api(`/leaves/${encodeURIComponent(l.id)}/${path}`, { method: "POST", body });
        if (this.id) await this.loadInfo(this.id);
      } catch (error) {
        showError(error);
      }
    };
    const act = (label: string, run: () => void): HTMLElement =>
      h("button", { type: "button", onclick: run }, label);
    const refuse = (): void => {
      const reason = window.prompt(t("leave.refuseReason"))?.trim();
      if (reason) void post("refuse", { reason });
    };
    return h(
      "li",
      { "data-leave-id": l.id },
      `${formatTime(l.from)} — ${formatTime(l.to)} · `,
      h("strong", {}, term("leave", l.status)),
      l.overdue ? h("span", { class: "tag warn" }, t("leave.overdue")) : null,
      l.level
        ? h("div", {}, t("leave.level", { n: l.days, level: term("office", l.level) }))
        : null,
      l.destinations.length ? h("div", {}, l.destinations.map(zoneName).join("、")) : null,
      l.reason ? h("div", { class: "muted" }, l.reason) : null,
      l.warnings.length ? h("div", { class: "warn" }, problems(l.warnings)) : null,
      l.refusal_reason ? h("div", { class: "muted" }, l.refusal_reason) : null,
      l.returned_at ? h("div", {}, t("person.returned", { t: formatTime(l.returned_at) })) : null,
      can && l.status === "requested"
        ? act(t("leave.approveBtn"), () => void post("approve", {}))
        : null,
      can && l.status === "requested" ? act(t("leave.refuseBtn"), refuse) : null,
      can && l.status === "approved" && !l.returned_at
        ? act(t("person.returnBtn"), () => void post("return"))
        : null,
    );
  }

  private orders(orders: MonitoringOrder[] | null): HTMLElement {
    if (orders === null) return h("p", { class: "placeholder" }, t("person.pending"));
    if (!orders.length) return h("p", { class: "muted" }, t("person.noOrders"));
    return h(
      "ul",
      { class: "orders" },
      orders.map((o) =>
        h(
          "li",
          {},
          h("div", {}, o.ground_zh || o.ground),
          t("order.until", { from: o.starts_on, to: o.current_end }),
          o.active && o.days_left !== null
            ? h(
                "span",
                { class: o.days_left <= 7 ? "tag warn" : "tag" },
                t("order.left", { n: o.days_left }),
              )
            : h("span", { class: "tag" }, t("order.ended")),
        ),
      ),
    );
  }

  private alertRow(a: Alert): HTMLElement {
    return h(
      "li",
      {
        class: `sev-${a.severity}`,
        "data-alert-id": a.id,
        onclick: () => void this.open(a.supervisee, a),
      },
      h("strong", {}, term("type", a.type)),
      ` · ${term("status", a.status)} · ${formatTime(a.raised_at)}`,
      heldBadge(a),
      a.disposition
        ? h(
            "div",
            { class: "disposition" },
            `${t("alert.disposition")}：${term("disposition", a.disposition)}`,
          )
        : null,
      a.note ? h("div", { class: "muted" }, a.note) : null,
    );
  }

  /** The range chosen above the map, for the track and the evidence bundle. */
  private range(): Record<string, string> {
    return {
      from: new Date(this.from.value).toISOString(),
      to: new Date(this.to.value).toISOString(),
    };
  }

  private async loadTrack(): Promise<void> {
    if (!this.id || !this.map) return;
    this.stop();
    const query = this.range();
    try {
      const track = await api<{ features: TrackFix[] }>(
        `/supervisees/${encodeURIComponent(this.id)}/track`,
        { query },
      );
      this.fixes = track.features;
    } catch (error) {
      showError(error);
      return;
    }
    this.drawTrack();
  }

  private drawTrack(): void {
    if (!this.map) return;
    this.trackLayer.clearLayers();
    this.cursor = null;
    const fixes = this.fixes;
    const n = fixes.length;
    this.slider.max = String(Math.max(n - 1, 0));
    this.slider.value = String(Math.max(n - 1, 0));
    this.slider.disabled = this.playButton.disabled = n === 0;
    if (!n) {
      fill(this.summary, t("track.empty"));
      fill(this.current);
      toast(t("track.empty"));
      return;
    }
    // Many fixes: draw the bulk on one canvas, only the cursor as SVG.
    const canvas = L.canvas();
    const at = fixes.map((f) => toMap(f.geometry.coordinates[1], f.geometry.coordinates[0]));
    L.polyline(at, { color: "#64748b", weight: 2, renderer: canvas }).addTo(this.trackLayer);
    for (const stretch of breachStretches(fixes)) {
      L.polyline(
        stretch.map((i) => at[i]),
        { color: "#dc2626", weight: 5, renderer: canvas },
      ).addTo(this.trackLayer);
    }
    fixes.forEach((f, i) => {
      const colour = ZONE_COLOUR[f.properties.zone_state ?? ""] ?? "#64748b";
      const doubtful = f.properties.quality.some((q) => DOUBTFUL.has(q));
      if (f.properties.acc) {
        L.circle(at[i], {
          radius: f.properties.acc,
          color: colour,
          weight: 1,
          opacity: 0.3,
          fillOpacity: 0.04,
          renderer: canvas,
          interactive: false,
        }).addTo(this.trackLayer);
      }
      L.circleMarker(at[i], {
        radius: 3,
        color: colour,
        fillColor: doubtful ? "#fff" : colour,
        fillOpacity: 1,
        weight: 1.5,
        renderer: canvas,
        interactive: false,
      }).addTo(this.trackLayer);
    });
    const out = fixes.filter((f) => f.properties.zone_state === "out").length;
    fill(this.summary, t("track.count", { n }), out ? ` · ${t("track.breach", { n: out })}` : "");
    this.map.fitBounds(L.latLngBounds(at), { padding: [30, 30], maxZoom: 16 });
    this.showFix(n - 1);
  }

  private showFix(i: number): void {
    const f = this.fixes[i];
    if (!f || !this.map) return;
    const p = f.properties;
    const at = toMap(f.geometry.coordinates[1], f.geometry.coordinates[0]);
    const state = p.zone_state ?? "";
    if (!this.cursor) {
      this.cursor = {
        circle: L.circle(at, {
          radius: 0,
          weight: 2,
          fillOpacity: 0.15,
          className: "track-current-acc",
        }),
        dot: L.circleMarker(at, {
          radius: 7,
          weight: 3,
          color: "#111827",
          fillOpacity: 1,
          className: "track-current",
        }),
      };
      this.trackLayer.addLayer(this.cursor.circle).addLayer(this.cursor.dot);
    }
    const colour = ZONE_COLOUR[state] ?? "#64748b";
    this.cursor.dot.setLatLng(at).setStyle({ fillColor: colour });
    this.cursor.circle
      .setLatLng(at)
      .setRadius(p.acc ?? 0)
      .setStyle({ color: colour });
    this.slider.value = String(i);
    fill(
      this.current,
      h("strong", {}, formatTime(p.ts)),
      ` · ${p.device} #${p.seq} · `,
      p.acc === null ? t("track.accUnknown") : t("track.acc", { m: Math.round(p.acc) }),
      state ? h("span", { class: `tag zone-${state}` }, term("zone", state)) : null,
      p.quality.map((q) =>
        h("span", { class: DOUBTFUL.has(q) ? "tag warn" : "tag" }, term("quality", q)),
      ),
      p.batt === null ? null : ` · ${t("person.battery")} ${p.batt}%`,
    );
  }

  private togglePlay(): void {
    if (this.playing) {
      this.stop();
      return;
    }
    let i = Number(this.slider.value);
    if (i >= this.fixes.length - 1) i = 0;
    this.playButton.textContent = t("track.pause");
    this.playing = window.setInterval(() => {
      this.showFix(i);
      i += 1;
      if (i >= this.fixes.length) this.stop();
    }, PLAY_STEP_MS);
  }

  private stop(): void {
    window.clearInterval(this.playing);
    this.playing = 0;
    this.playButton.textContent = t("track.play");
  }
}

/** Runs of consecutive fixes judged outside the allowed area, as index lists; a run
 * includes the fixes on either side, so the red line meets the rest of the track. */
function breachStretches(fixes: TrackFix[]): number[][] {
  const runs: number[][] = [];
  let run: number[] = [];
  fixes.forEach((f, i) => {
    if (f.properties.zone_state === "out") {
      if (!run.length && i > 0) run.push(i - 1);
      run.push(i);
    } else if (run.length) {
      run.push(i);
      runs.push(run);
      run = [];
    }
  });
  if (run.length) runs.push(run);
  return runs;
}
