// WGS-84 → GCJ-02, the same closed-form offset as geofence/crs.py (which has the why).
// Only for drawing on GCJ-02 base tiles: the data and the API stay WGS-84.

const A = 6378245.0;
const EE = 0.00669342162296594323;

function inChina(lat: number, lon: number): boolean {
  return lon >= 72.004 && lon <= 137.8347 && lat >= 0.8293 && lat <= 55.8271;
}

export function wgs84ToGcj02(lat: number, lon: number): [number, number] {
  if (!inChina(lat, lon)) return [lat, lon];
  const x = lon - 105.0;
  const y = lat - 35.0;
  const pi = Math.PI;
  const common = ((20 * Math.sin(6 * x * pi) + 20 * Math.sin(2 * x * pi)) * 2) / 3;
  let dlat = -100 + 2 * x + 3 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
  dlat += common;
  dlat += ((20 * Math.sin(y * pi) + 40 * Math.sin((y / 3) * pi)) * 2) / 3;
  dlat += ((160 * Math.sin((y / 12) * pi) + 320 * Math.sin((y * pi) / 30)) * 2) / 3;
  let dlon = 300 + x + 2 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
  dlon += common;
  dlon += ((20 * Math.sin(x * pi) + 40 * Math.sin((x / 3) * pi)) * 2) / 3;
  dlon += ((150 * Math.sin((x / 12) * pi) + 300 * Math.sin((x / 30) * pi)) * 2) / 3;
  const radlat = (lat / 180) * pi;
  const magic = 1 - EE * Math.sin(radlat) ** 2;
  const sqrtmagic = Math.sqrt(magic);
  dlat = (dlat * 180) / (((A * (1 - EE)) / (magic * sqrtmagic)) * pi);
  dlon = (dlon * 180) / ((A / sqrtmagic) * Math.cos(radlat) * pi);
  return [lat + dlat, lon + dlon];
}
