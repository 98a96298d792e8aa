// 一人一档: one person's profile, devices and battery, leave, alert history with its
// dispositions, and a track playback with a time slider, in its context: the view fits the
// track together with the allowed area, the zones that apply and the destinations of leave
// in the range are drawn, each crossing is marked (the last fix inside, the first outside),
// the stretch judged outside is red, and each fix has its accuracy circle — never smaller
// than a few pixels, so it shows at any zoom, and hidden with a toggle — so an operator can
// judge an alert in seconds.

import L from "leaflet";
import { api } from "./api";
import { apartSection, loadApart } from "./apart";
import { fill, h } from "./dom";
import { formatTime, t, term } from "./i18n";
import { evidenceButton } from "./evidence";
import { approvalChain, leaveActions, leaveSummary } from "./leave";
import { checkinCalendar } from "./checkins";
import { LocateNow } from "./locate";
import { createMap, toMap, zoneLayer } from "./mapbase";
import { on, store } from "./store";
import { heldBadge, loadSuspensions, suspensionSection } from "./suspensions";
import type {
  Alert,
  Assessment,
  CheckinCalendar,
  Device,
  Leave,
  MonitoringOrder,
  Officer,
  TrackFix,
} from "./types";
import { facts, localInput, onSubmit, showError, toast } from "./ui";

const PLAY_STEP_MS = 300;
// The range ends a little after now, so fixes arriving while the file is open are in it.
const LEAD_MS = 5 * 60_000;
// Quality flags that make a fix less trustworthy (GCJ02 only says it was converted).
const DOUBTFUL = new Set(["ACC_UNKNOWN", "ACC_POOR", "JUMP", "LATE", "OUT_OF_ORDER", "NO_FIX"]);
const ZONE_COLOUR: Record<string, string> = { in: "#2563eb", uncertain: "#d97706", out: "#dc2626" };
// The smallest accuracy circle drawn, in screen pixels: a 10 m circle is under a pixel
// across when the map shows a whole county.
const MIN_ACC_PX = 6;
const EARTH_M = 40_075_016.686;

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
  private readonly crossings = h("div", { class: "track-crossings" });
  private readonly showAcc = h("input", { type: "checkbox", class: "show-acc", checked: true });
  private readonly current = h("div", { class: "track-current-info" });
  private map: L.Map | null = null;
  private trackLayer = L.layerGroup();
  private locateLayer = L.layerGroup();
  private readonly locating = new LocateNow(this.locateLayer, (points) =>
    this.map?.fitBounds(L.latLngBounds(points), { padding: [40, 40], maxZoom: 17 }),
  );
  private accLayer = L.layerGroup();
  private rings: { ring: L.CircleMarker; acc: number; lat: number }[] = [];
  private zonesLayer: L.GeoJSON | null = null;
  private destinationsLayer: L.GeoJSON | null = null;
  private cursor: { dot: L.CircleMarker; circle: L.CircleMarker } | null = null;
  private fixes: TrackFix[] = [];
  private leaves: Leave[] = [];
  private playing = 0;
  private id: string | null = null;

  constructor() {
    this.picker.addEventListener("change", () => {
      location.hash = `#/person/${encodeURIComponent(this.picker.value)}`;
    });
    this.slider.addEventListener("input", () => this.showFix(Number(this.slider.value)));
    this.playButton.addEventListener("click", () => this.togglePlay());
    this.showAcc.addEventListener("change", () => this.toggleRings());
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
        h(
          "div",
          { class: "slider-row" },
          this.playButton,
          this.slider,
          h("label", {}, this.showAcc, " ", t("track.showAcc")),
        ),
        this.summary,
        this.crossings,
        this.current,
      ),
    );
    // The people are loaded before the views are made: fill it now, and again on changes.
    this.fillPicker();
    on("people", () => this.fillPicker());
    on("zones", () => this.drawZones());
  }

  show(): void {
    if (!this.map) {
      this.map = createMap(this.mapEl);
      this.trackLayer.addTo(this.map);
      this.locateLayer.addTo(this.map);
      this.accLayer.addTo(this.map);
      this.map.on("zoomend", () => this.sizeRings());
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
    const [
      devices,
      leaves,
      alerts,
      orders,
      score,
      suspensions,
      offices,
      officers,
      calendar,
      apart,
    ] = await Promise.all([
      Promise.all(person.devices.map((d) => api<Device>(`/devices/${encodeURIComponent(d)}`))),
      api<{ items: Leave[] }>(`/supervisees/${encodeURIComponent(id)}/leaves`),
      api<{ items: Alert[] }>("/alerts", { query: { supervisee: id, limit: "200" } }),
      api<{ items: MonitoringOrder[] }>(`/supervisees/${encodeURIComponent(id)}/orders`),
      api<Assessment>(`/supervisees/${encodeURIComponent(id)}/assessment`),
      loadSuspensions(id),
      api<{ items: { id: string; name: string }[] }>("/offices"),
      api<{ items: Officer[] }>("/officers"),
      api<CheckinCalendar>(`/supervisees/${encodeURIComponent(id)}/checkins`),
      loadApart(id),
    ]);
    this.leaves = leaves.items;
    const office = offices.items.find((o) => o.id === person.office);
    const officer = officers.items.find((o) => o.id === person.officer);
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
        [t("person.office"), office?.name ?? person.office],
        [
          t("person.officer"),
          officer ? [officer.name, officer.phone].filter(Boolean).join(" · ") : person.officer,
        ],
        [
          t("person.term"),
          person.term_start || person.term_end
            ? `${person.term_start ?? "?"} — ${person.term_end ?? "?"}`
            : null,
        ],
        [t("person.jurisdiction"), person.jurisdiction.map(zoneName).join("、")],
        [t("person.exclusion"), person.exclusion.map(zoneName).join("、")],
        [t("person.home"), person.home ? zoneName(person.home) : null],
        [
          t("person.workplace"),
          typeof person.workplace === "string"
            ? zoneName(person.workplace)
            : person.workplace
              ? t("person.workplaceCircle", {
                  name: person.workplace.name || `${person.workplace.lat},${person.workplace.lon}`,
                  r: person.workplace.radius_m,
                })
              : null,
        ],
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
      h("h3", {}, t("person.checkins")),
      checkinCalendar(calendar),
      h("h3", {}, t("person.orders")),
      this.orders(orders.items),
      apartSection(id, apart, () => this.loadInfo(id)),
      h("h3", {}, t("person.score")),
      this.assessment(score),
      h("h3", {}, t("person.leaves")),
      leaves.items.length
        ? h(
            "ul",
            { class: "leaves" },
            leaves.items.map((l) => this.leaveRow(l)),
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

  private leaveRow(l: Leave): HTMLElement {
    return h(
      "li",
      { "data-leave-id": l.id },
      h("strong", {}, term("leave", l.status)),
      l.overdue ? h("span", { class: "tag warn" }, t("leave.overdue")) : null,
      leaveSummary(l),
      approvalChain(l),
      leaveActions(l, () => {
        if (this.id) void this.loadInfo(this.id);
      }),
    );
  }

  /** This month's score (每月计分考评): the base less each confirmed violation's points. */
  private assessment(a: Assessment): HTMLElement {
    return h(
      "div",
      { class: "assessment" },
      h(
        "div",
        {},
        t("score.month", { month: a.month }),
        h("strong", { class: "score" }, t("score.points", { n: a.score })),
        a.deductions ? ` ${t("score.deducted", { base: a.base, n: a.deductions })}` : "",
      ),
      a.violations.length
        ? h(
            "ul",
            { class: "violations" },
            a.violations.map((v) =>
              h("li", {}, `${formatTime(v.occurred_at)} · ${v.name_zh} −${v.points}`),
            ),
          )
        : h("p", { class: "muted" }, t("score.none")),
    );
  }

  private orders(orders: MonitoringOrder[]): HTMLElement {
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
    this.accLayer.clearLayers();
    this.rings = [];
    this.cursor = null;
    fill(this.crossings);
    this.drawDestinations();
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
        const ring = L.circleMarker(at[i], {
          radius: this.ringRadius(f.properties.acc, at[i][0]),
          color: colour,
          weight: 1,
          opacity: 0.3,
          fillOpacity: 0.04,
          renderer: canvas,
          interactive: false,
        }).addTo(this.accLayer);
        this.rings.push({ ring, acc: f.properties.acc, lat: at[i][0] });
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
    this.markCrossings(at);
    // The track with the area it is judged against: where the person may be, not only
    // where they went.
    const bounds = L.latLngBounds(at);
    for (const layer of [this.zonesLayer, this.destinationsLayer]) {
      const area = layer?.getBounds();
      if (area?.isValid()) bounds.extend(area);
    }
    this.map.fitBounds(bounds, { padding: [30, 30], maxZoom: 16 });
    this.showFix(n - 1);
  }

  /** The destinations of the approved leave that overlaps the range, labelled. */
  private drawDestinations(): void {
    this.destinationsLayer?.remove();
    this.destinationsLayer = null;
    if (!this.map) return;
    const from = new Date(this.from.value).getTime();
    const to = new Date(this.to.value).getTime();
    const ids = new Set(
      this.leaves
        .filter(
          (l) =>
            l.status === "approved" &&
            Date.parse(l.from) < to &&
            Date.parse(l.returned_at ?? l.to) > from,
        )
        .flatMap((l) => l.destinations),
    );
    if (!ids.size) return;
    this.destinationsLayer = zoneLayer(
      store.zones.filter((z) => ids.has(z.properties.id)),
      t("track.destination"),
    ).addTo(this.map);
    this.destinationsLayer.bringToBack();
  }

  /** Where each breach stretch began: the last fix judged inside before it and the first
   * judged outside, marked on the map and listed under it; a click plays from there. */
  private markCrossings(at: L.LatLngTuple[]): void {
    const rows: HTMLElement[] = [];
    let lastIn = -1;
    this.fixes.forEach((f, i) => {
      const state = f.properties.zone_state;
      if (state === "in") lastIn = i;
      if (state !== "out" || this.fixes[i - 1]?.properties.zone_state === "out") return;
      const ends = lastIn >= 0 ? [lastIn, i] : [i];
      for (const k of ends) {
        const side = k === i ? "out" : "in";
        L.marker(at[k], {
          icon: L.divIcon({
            className: `crossing crossing-${side}`,
            html: side === "out" ? "✕" : "●",
            iconSize: [18, 18],
          }),
          keyboard: false,
          title: this.describe(k, side),
        })
          .on("click", () => this.showFix(k))
          .addTo(this.trackLayer);
      }
      rows.push(
        h(
          "div",
          { class: "crossing-row" },
          `${t("track.crossing")}：`,
          ends.map((k) =>
            h(
              "button",
              {
                type: "button",
                class: `link crossing-jump crossing-${k === i ? "out" : "in"}`,
                onclick: () =>
                  this.zoomTo(
                    ends.map((e) => at[e]),
                    k,
                  ),
              },
              this.describe(k, k === i ? "out" : "in"),
            ),
          ),
        ),
      );
    });
    fill(this.crossings, rows);
  }

  /** Close in on a crossing (its two fixes apart on screen) and show fix `i`. */
  private zoomTo(points: L.LatLngTuple[], i: number): void {
    this.map?.fitBounds(L.latLngBounds(points), { padding: [80, 80], maxZoom: 17 });
    this.showFix(i);
  }

  private describe(i: number, side: "in" | "out"): string {
    const p = this.fixes[i].properties;
    const acc = p.acc === null ? t("track.accUnknown") : t("track.acc", { m: Math.round(p.acc) });
    const what = side === "out" ? t("track.firstOut") : t("track.lastIn");
    return `${what} #${p.seq} ${formatTime(p.ts)}（${acc}）`;
  }

  /** An accuracy circle's radius on screen: its true size, but never below MIN_ACC_PX. */
  private ringRadius(acc: number, lat: number): number {
    if (!this.map) return MIN_ACC_PX;
    const metresPerPixel =
      (EARTH_M * Math.cos((lat * Math.PI) / 180)) / 2 ** (this.map.getZoom() + 8);
    return Math.max(MIN_ACC_PX, acc / metresPerPixel);
  }

  private sizeRings(): void {
    for (const { ring, acc, lat } of this.rings) ring.setRadius(this.ringRadius(acc, lat));
    if (this.cursor) this.showFix(Number(this.slider.value));
  }

  private toggleRings(): void {
    if (!this.map) return;
    if (this.showAcc.checked) this.accLayer.addTo(this.map);
    else this.accLayer.remove();
  }

  private showFix(i: number): void {
    const f = this.fixes[i];
    if (!f || !this.map) return;
    const p = f.properties;
    const at = toMap(f.geometry.coordinates[1], f.geometry.coordinates[0]);
    const state = p.zone_state ?? "";
    if (!this.cursor) {
      this.cursor = {
        circle: L.circleMarker(at, {
          radius: 0,
          weight: 2,
          fillOpacity: 0.15,
          className: "track-current-acc",
          interactive: false,
        }),
        dot: L.circleMarker(at, {
          radius: 7,
          weight: 3,
          color: "#111827",
          fillOpacity: 1,
          className: "track-current",
        }),
      };
      this.accLayer.addLayer(this.cursor.circle);
      this.trackLayer.addLayer(this.cursor.dot);
    }
    const colour = ZONE_COLOUR[state] ?? "#64748b";
    this.cursor.dot.setLatLng(at).setStyle({ fillColor: colour });
    this.cursor.circle
      .setLatLng(at)
      .setRadius(p.acc ? this.ringRadius(p.acc, at[0]) : 0)
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
