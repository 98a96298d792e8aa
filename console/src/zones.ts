// Zones: the zone list; importing a DataV-style boundary file in its CRS; drawing or editing
// an exclusion or home zone (circle or polygon) and its schedule. Leave is in leave.ts.

import type { Geometry } from "geojson";
import L from "leaflet";
import { api } from "./api";
import { fill, h, select } from "./dom";
import { t, term } from "./i18n";
import { createMap, fitZones, mapCrs, zoneLayer } from "./mapbase";
import { loadZones, on, store } from "./store";
import type { Window, ZoneFeature } from "./types";
import { onSubmit, showError, toast } from "./ui";

type Shape = { kind: "circle"; centre: L.LatLng } | { kind: "polygon"; ring: L.LatLng[] };

export class ZonesView {
  readonly el = h("div", { class: "zones" });
  private readonly side = h("aside", { class: "side" });
  private readonly mapEl = h("div", { class: "map zones-map" });
  private readonly list = h("ul", { class: "zone-list" });
  private map: L.Map | null = null;
  private zonesLayer: L.GeoJSON | null = null;
  private readonly sketch = L.layerGroup();
  private mode: "circle" | "polygon" | null = null;
  private shape: Shape | null = null;
  /** The zone being edited, whose geometry is kept unless a new shape is drawn. */
  private editing: ZoneFeature | null = null;
  private readonly form = new ZoneForm(() => this.redrawSketch());

  constructor() {
    fill(this.el, this.side, this.mapEl);
    on("zones", () => {
      this.drawZones();
      this.renderList();
    });
  }

  show(): void {
    if (!this.map) {
      this.map = createMap(this.mapEl);
      this.sketch.addTo(this.map);
      this.map.on("click", (event: L.LeafletMouseEvent) => this.click(event.latlng));
      this.render();
      this.drawZones();
    }
    this.map.invalidateSize();
  }

  private render(): void {
    const can = store.session?.can;
    fill(
      this.side,
      h("h2", {}, t("zones.list")),
      this.list,
      can?.manage
        ? [this.importForm(), this.drawForm()]
        : h("p", { class: "muted" }, t("zones.readonly")),
    );
    this.renderList();
  }

  private renderList(): void {
    fill(
      this.list,
      store.zones.map((z) => {
        const p = z.properties;
        return h(
          "li",
          { "data-zone-id": p.id },
          h("span", { class: `tag kind-${p.kind}` }, term("kind", p.kind)),
          ` ${p.name || p.id} `,
          h("span", { class: "muted" }, p.id),
          p.schedule.length ? h("div", { class: "muted" }, describeSchedule(p.schedule)) : null,
          store.session?.can.manage && p.kind !== "jurisdiction"
            ? h(
                "button",
                { type: "button", class: "link", onclick: () => this.edit(z) },
                t("zones.edit"),
              )
            : null,
        );
      }),
    );
  }

  private drawZones(): void {
    if (!this.map) return;
    const first = this.zonesLayer === null;
    this.zonesLayer?.remove();
    this.zonesLayer = zoneLayer(store.zones).addTo(this.map);
    this.zonesLayer.bringToBack();
    if (first) fitZones(this.map, this.zonesLayer);
  }

  private importForm(): HTMLElement {
    const file = h("input", {
      type: "file",
      name: "file",
      accept: ".json,.geojson,application/geo+json",
      required: true,
    });
    const crs = select("crs", ["gcj02", "wgs84"], (v) =>
      v === "gcj02" ? "GCJ-02（DataV/高德）" : "WGS-84",
    );
    const kind = select("kind", ["jurisdiction", "exclusion", "home"], (v) => term("kind", v));
    const submit = async (): Promise<void> => {
      const chosen = file.files?.[0];
      if (!chosen) return;
      try {
        const body = JSON.parse(await chosen.text());
        const { ids } = await api<{ ids: string[] }>("/zones/import", {
          method: "POST",
          body,
          query: { crs: crs.value, kind: kind.value },
        });
        toast(t("zones.imported", { n: ids.length, ids: ids.join(", ") }));
        await loadZones();
      } catch (error) {
        showError(error);
      }
    };
    return h(
      "form",
      { class: "card import", onsubmit: onSubmit(submit) },
      h("h3", {}, t("zones.import")),
      h("label", {}, t("zones.file"), " ", file),
      h("label", {}, t("zones.crs"), " ", crs),
      h("label", {}, t("zones.kind"), " ", kind),
      h("button", { type: "submit", class: "primary" }, t("zones.importBtn")),
    );
  }

  private drawForm(): HTMLElement {
    const tool = (mode: "circle" | "polygon", label: string): HTMLElement =>
      h("button", { type: "button", onclick: () => this.startDrawing(mode) }, label);
    return h(
      "form",
      { class: "card draw", onsubmit: onSubmit(() => this.save()) },
      h("h3", {}, t("zones.draw")),
      h("p", { class: "muted" }, t("zones.drawHint")),
      h(
        "div",
        { class: "tools" },
        tool("circle", t("zones.circle")),
        tool("polygon", t("zones.polygon")),
        h("button", { type: "button", onclick: () => (this.mode = null) }, t("zones.finish")),
      ),
      this.form.el,
      h("button", { type: "submit", class: "primary" }, t("zones.save")),
    );
  }

  private startDrawing(mode: "circle" | "polygon"): void {
    this.mode = mode;
    this.shape = null;
    this.redrawSketch();
  }

  private click(at: L.LatLng): void {
    if (this.mode === "circle") {
      this.shape = { kind: "circle", centre: at };
      this.mode = null;
    } else if (this.mode === "polygon") {
      const ring = this.shape?.kind === "polygon" ? this.shape.ring : [];
      this.shape = { kind: "polygon", ring: [...ring, at] };
    } else {
      return;
    }
    this.redrawSketch();
  }

  private redrawSketch(): void {
    this.sketch.clearLayers();
    const style = { color: "#7c3aed", weight: 3, dashArray: "4 4" };
    if (this.shape?.kind === "circle") {
      L.circle(this.shape.centre, { ...style, radius: this.form.radius() }).addTo(this.sketch);
    } else if (this.shape?.kind === "polygon") {
      L.polygon(this.shape.ring, style).addTo(this.sketch);
    } else if (this.editing) {
      zoneLayer([this.editing]).setStyle(style).addTo(this.sketch);
    }
  }

  private edit(zone: ZoneFeature): void {
    this.editing = zone;
    this.shape = null;
    this.mode = null;
    this.form.load(zone.properties);
    this.redrawSketch();
    const bounds = zoneLayer([zone]).getBounds();
    if (this.map && bounds.isValid()) this.map.fitBounds(bounds, { maxZoom: 16 });
  }

  private async save(): Promise<void> {
    const props = this.form.values();
    let geometry: Geometry;
    let crs: string;
    if (this.shape) {
      // Drawn on the map: in the map's CRS, which the API converts from.
      crs = mapCrs();
      geometry =
        this.shape.kind === "circle"
          ? { type: "Point", coordinates: [this.shape.centre.lng, this.shape.centre.lat] }
          : { type: "Polygon", coordinates: [closed(this.shape.ring.map((p) => [p.lng, p.lat]))] };
    } else if (this.editing && this.editing.properties.id === props.id) {
      crs = "wgs84"; // the API hands geometry back in WGS-84
      geometry = this.editing.geometry;
    } else {
      toast(t("zones.noShape"), "error");
      return;
    }
    const radius = geometry.type === "Point" ? this.form.radius() : undefined;
    try {
      await api(`/zones/${encodeURIComponent(props.id)}`, {
        method: "PUT",
        body: { type: "Feature", geometry, properties: { ...props, crs, radius } },
      });
      toast(t("zones.saved", { id: props.id }));
      this.shape = null;
      this.editing = null;
      this.redrawSketch();
      await loadZones();
    } catch (error) {
      showError(error);
    }
  }
}

/** The fields of a drawn zone: id, name, kind, radius and schedule windows. */
class ZoneForm {
  readonly el = h("div", { class: "zone-fields" });
  private readonly id = h("input", { name: "id", required: true, pattern: "[A-Za-z0-9_.:-]+" });
  private readonly name = h("input", { name: "name" });
  private readonly kind = select("kind", ["exclusion", "home"], (v) => term("kind", v));
  private readonly radiusInput = h("input", {
    name: "radius",
    type: "number",
    min: 10,
    step: 10,
    value: 200,
  });
  private readonly windows = h("div", { class: "windows" });

  constructor(onRadius: () => void) {
    this.radiusInput.addEventListener("input", onRadius);
    fill(
      this.el,
      h("label", {}, t("zones.id"), " ", this.id),
      h("label", {}, t("zones.name"), " ", this.name),
      h("label", {}, t("zones.kind"), " ", this.kind),
      h("label", {}, t("zones.radius"), " ", this.radiusInput),
      h(
        "fieldset",
        {},
        h("legend", {}, t("zones.schedule")),
        this.windows,
        h("button", { type: "button", onclick: () => this.addWindow() }, t("zones.addWindow")),
      ),
    );
  }

  radius(): number {
    return Number(this.radiusInput.value) || 0;
  }

  load(p: ZoneFeature["properties"]): void {
    this.id.value = p.id;
    this.name.value = p.name;
    this.kind.value = p.kind;
    if (p.radius) this.radiusInput.value = String(p.radius);
    this.windows.replaceChildren();
    for (const w of p.schedule) this.addWindow(w);
  }

  values(): { id: string; name: string; kind: string; schedule: Window[] } {
    const schedule = [...this.windows.children].map((row) => ({
      days: [...row.querySelectorAll<HTMLInputElement>("input[type=checkbox]:checked")].map((c) =>
        Number(c.value),
      ),
      from: row.querySelector<HTMLInputElement>("input[name=from]")?.value ?? "",
      to: row.querySelector<HTMLInputElement>("input[name=to]")?.value ?? "",
    }));
    return {
      id: this.id.value.trim(),
      name: this.name.value.trim(),
      kind: this.kind.value,
      schedule,
    };
  }

  private addWindow(w: Window = { days: [1, 2, 3, 4, 5, 6, 7], from: "22:00", to: "06:00" }): void {
    const names = t("days").split(",");
    const row = h(
      "div",
      { class: "window" },
      names.map((name, i) =>
        h(
          "label",
          {},
          h("input", { type: "checkbox", value: i + 1, checked: w.days.includes(i + 1) }),
          name,
        ),
      ),
      h("input", { type: "time", name: "from", value: w.from }),
      "–",
      h("input", { type: "time", name: "to", value: w.to }),
      h("button", { type: "button", class: "link", onclick: () => row.remove() }, "✕"),
    );
    this.windows.append(row);
  }
}

function closed(ring: number[][]): number[][] {
  return ring.length ? [...ring, ring[0]] : ring;
}

function describeSchedule(windows: Window[]): string {
  const names = t("days").split(",");
  return windows
    .map((w) => `${w.days.map((d) => names[d - 1]).join("")} ${w.from}–${w.to}`)
    .join("；");
}
