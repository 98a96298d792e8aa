// Leaflet maps drawn in the base tiles' CRS. With no tiles configured (the default on an
// isolated network) the map is the vector layers alone. On GCJ-02 tiles every point is
// converted for drawing; the data, and what is sent back to the API, say which CRS it is.

import type { FeatureCollection } from "geojson";
import L from "leaflet";
import "leaflet/dist/leaflet.css";
import { wgs84ToGcj02 } from "./crs";
import { term } from "./i18n";
import { store } from "./store";
import type { ZoneFeature } from "./types";

const CHINA: L.LatLngTuple = [35, 105];

/** The CRS the map is drawn in (and that clicks on it are in). */
export function mapCrs(): "wgs84" | "gcj02" {
  const settings = store.session?.map;
  return settings?.tiles && settings.tiles_crs === "gcj02" ? "gcj02" : "wgs84";
}

/** A WGS-84 position where the map draws it. */
export function toMap(lat: number, lon: number): L.LatLngTuple {
  return mapCrs() === "gcj02" ? wgs84ToGcj02(lat, lon) : [lat, lon];
}

export function createMap(el: HTMLElement): L.Map {
  const map = L.map(el, { zoomSnap: 0.25, attributionControl: false }).setView(CHINA, 4);
  const settings = store.session?.map;
  if (settings?.tiles) {
    L.tileLayer(settings.tiles, {
      maxZoom: 19,
      subdomains: settings.subdomains,
      attribution: settings.attribution,
    }).addTo(map);
    if (settings.attribution) L.control.attribution({ prefix: false }).addTo(map);
  }
  L.control.scale({ imperial: false }).addTo(map);
  return map;
}

const STYLE: Record<string, L.PathOptions> = {
  jurisdiction: { color: "#2563eb", weight: 2, fillOpacity: 0.04 },
  exclusion: { color: "#dc2626", weight: 2, dashArray: "6 4", fillOpacity: 0.15 },
  home: { color: "#059669", weight: 2, fillOpacity: 0.12 },
};

// A leave destination: allowed only for the leave, so drawn apart from the jurisdiction.
const DESTINATION: L.PathOptions = {
  color: "#059669",
  weight: 2,
  dashArray: "8 5",
  fillOpacity: 0.08,
  className: "leave-destination",
};

/** Zones as a layer: outlines with their names; a Point with a radius is a circle. With
 * `destination`, the zones are a leave's destinations, labelled with what allows them. */
export function zoneLayer(zones: ZoneFeature[], destination?: string): L.GeoJSON {
  return L.geoJSON({ type: "FeatureCollection", features: zones } as FeatureCollection, {
    coordsToLatLng: (c) => L.latLng(toMap(c[1], c[0])),
    pointToLayer: (feature, latlng) =>
      L.circle(latlng, { radius: (feature.properties as ZoneFeature["properties"]).radius ?? 0 }),
    style: (feature) =>
      destination
        ? DESTINATION
        : (STYLE[(feature?.properties as ZoneFeature["properties"]).kind] ?? {}),
    onEachFeature: (feature, layer) => {
      const p = feature.properties as ZoneFeature["properties"];
      const label = `${p.name || p.id}`;
      if (destination) {
        layer.bindTooltip(`${destination}：${label}`, {
          permanent: true,
          direction: "center",
          className: "zone-label destination-label",
        });
      } else if (p.kind === "jurisdiction") {
        layer.bindTooltip(label, { permanent: true, direction: "center", className: "zone-label" });
      } else {
        layer.bindTooltip(`${term("kind", p.kind)}：${label}`);
      }
    },
  });
}

/** Fit the map to the jurisdictions (or all zones) once they are known. */
export function fitZones(map: L.Map, layer: L.GeoJSON): void {
  const bounds = layer.getBounds();
  if (bounds.isValid()) map.fitBounds(bounds, { padding: [20, 20] });
}
