// The live map: zones, and everyone's latest position coloured by state, with the
// accuracy circle the engine judged it by. Markers are SVG so each has an element
// (class `pos`, data-supervisee, data-state) that tests and styles can find.

import L from "leaflet";
import { h } from "./dom";
import { formatTime, t, term } from "./i18n";
import { createMap, fitZones, toMap, zoneLayer } from "./mapbase";
import { STATES, mapState, on, personName, store } from "./store";
import type { Position } from "./types";

// States that get a permanent name label: the ones an operator must look at.
const LABELLED = new Set([
  "sos",
  "tamper",
  "breach",
  "still_breach",
  "outside",
  "offline",
  "low_battery",
]);

interface Marker {
  dot: L.CircleMarker;
  circle: L.Circle;
  state: string;
}

export class LiveMap {
  readonly el = h("div", { class: "map", id: "live-map" });
  private map: L.Map | null = null;
  private zones: L.GeoJSON | null = null;
  private readonly people = L.layerGroup();
  private readonly markers = new Map<string, Marker>();
  private readonly svg = L.svg();
  private fitted = false;

  constructor(private readonly openPerson: (id: string) => void) {
    on("zones", () => this.drawZones());
    on("positions", () => this.drawPositions());
  }

  /** Called when the view is shown: Leaflet needs a sized container. */
  show(): void {
    if (!this.map) {
      this.map = createMap(this.el);
      this.people.addTo(this.map);
      this.legend().addTo(this.map);
      this.drawZones();
      this.drawPositions();
    }
    this.map.invalidateSize();
  }

  focus(supervisee: string): void {
    const p = store.positions.get(supervisee);
    if (this.map && p) {
      this.map.setView(toMap(p.lat, p.lon), Math.max(this.map.getZoom(), 15));
      this.markers.get(supervisee)?.dot.openPopup();
    }
  }

  private drawZones(): void {
    if (!this.map) return;
    this.zones?.remove();
    this.zones = zoneLayer(store.zones).addTo(this.map);
    this.zones.bringToBack();
    if (!this.fitted && store.zones.length) {
      fitZones(this.map, this.zones);
      this.fitted = true;
    }
  }

  private drawPositions(): void {
    if (!this.map) return;
    for (const [id, marker] of this.markers) {
      if (!store.positions.has(id)) {
        this.people.removeLayer(marker.dot).removeLayer(marker.circle);
        this.markers.delete(id);
      }
    }
    for (const p of store.positions.values()) this.drawPosition(p);
  }

  private drawPosition(p: Position): void {
    const state = mapState(p);
    const at = toMap(p.lat, p.lon);
    let marker = this.markers.get(p.supervisee);
    if (!marker) {
      marker = {
        circle: L.circle(at, { radius: 0, weight: 1, fillOpacity: 0.08, interactive: false }),
        dot: L.circleMarker(at, { radius: 7, weight: 2, fillOpacity: 0.9, renderer: this.svg }),
        state: "",
      };
      const id = p.supervisee;
      marker.dot.bindPopup(() => this.popup(id));
      this.people.addLayer(marker.circle).addLayer(marker.dot);
      this.markers.set(id, marker);
      marker.dot.getElement()?.setAttribute("data-supervisee", id);
    }
    marker.dot.setLatLng(at);
    marker.circle.setLatLng(at).setRadius(p.acc ?? 0);
    if (marker.state !== state) {
      marker.state = state;
      // Colours come from the stylesheet, by state class.
      const el = marker.dot.getElement();
      el?.setAttribute("class", `leaflet-interactive pos state-${state}`);
      el?.setAttribute("data-state", state);
      marker.circle.getElement()?.setAttribute("class", `acc state-${state}`);
      marker.dot.unbindTooltip().bindTooltip(personName(p.supervisee), {
        permanent: LABELLED.has(state),
        direction: "right",
        offset: [8, 0],
        className: `person-label state-${state}`,
      });
    }
  }

  private popup(id: string): HTMLElement {
    const p = store.positions.get(id);
    const state = p ? mapState(p) : "unknown";
    return h(
      "div",
      { class: "popup" },
      h("strong", {}, personName(id)),
      ` (${id})`,
      h("div", {}, term("state", state)),
      p ? h("div", {}, `${t("alert.fixTime")}：${formatTime(p.ts)}`) : null,
      p?.acc == null ? null : h("div", {}, t("track.acc", { m: Math.round(p.acc) })),
      p?.batt == null ? null : h("div", {}, `${t("person.battery")}：${p.batt}%`),
      h("button", { type: "button", onclick: () => this.openPerson(id) }, t("alert.openFile")),
    );
  }

  private legend(): L.Control {
    const control = new L.Control({ position: "bottomleft" });
    control.onAdd = () =>
      h(
        "div",
        { class: "legend" },
        h("strong", {}, t("map.legend")),
        STATES.map((s) =>
          h("div", {}, h("span", { class: `swatch state-${s}` }), term("state", s)),
        ),
        store.session?.map.tiles ? null : h("div", { class: "muted" }, t("map.noTiles")),
      );
    return control;
  }
}
