// What the console knows, loaded from the API and kept current by the live feed. Views
// subscribe to changes instead of asking each other.

import { api } from "./api";
import type { Alert, FeedMessage, Position, Session, Supervisee, ZoneFeature } from "./types";

type Topic = "positions" | "alerts" | "zones" | "people" | "raised";
type Listener = (detail?: unknown) => void;

export const store = {
  session: null as Session | null,
  people: new Map<string, Supervisee>(),
  positions: new Map<string, Position>(),
  /** Alerts still to be worked (open or acknowledged), and breaches resolved while the
   * person is still outside (仍在越界), kept until the service sees them back. */
  alerts: new Map<number, Alert>(),
  zones: [] as ZoneFeature[],
};

const listeners = new Map<Topic, Set<Listener>>();
let loaded = false;
// Counts changes from the feed and this console's own actions: what changed while a reload
// was on its way is newer than the reload's answer, which must not wipe it out.
let changes = 0;
const changedPositions = new Map<string, number>();
const changedAlerts = new Map<number, number>();

export function on(topic: Topic, listener: Listener): () => void {
  const set = listeners.get(topic) ?? new Set();
  listeners.set(topic, set);
  set.add(listener);
  return () => set.delete(listener);
}

export function emit(topic: Topic, detail?: unknown): void {
  for (const listener of listeners.get(topic) ?? []) listener(detail);
}

export function personName(id: string): string {
  return store.people.get(id)?.name || id;
}

export async function loadPeople(): Promise<void> {
  const { items } = await api<{ items: Supervisee[] }>("/supervisees");
  store.people = new Map(items.map((p) => [p.id, p]));
  emit("people");
}

export async function loadZones(): Promise<void> {
  store.zones = (await api<{ features: ZoneFeature[] }>("/zones")).features;
  emit("zones");
}

/** Positions and alerts: at start, on every feed (re)connect, and now and then, because
 * another operator's acknowledgements do not come through the feed. */
export async function loadLive(): Promise<void> {
  const asked = changes;
  const [positions, open, acknowledged, resolvedActive] = await Promise.all([
    api<{ items: Position[] }>("/positions"),
    api<{ items: Alert[] }>("/alerts", { query: { status: "open", limit: "1000" } }),
    api<{ items: Alert[] }>("/alerts", { query: { status: "acknowledged", limit: "1000" } }),
    api<{ items: Alert[] }>("/alerts", {
      query: { status: "resolved", active: "true", limit: "1000" },
    }),
  ]);
  const still = resolvedActive.items.filter(stillInBreach);
  const known = new Set(store.alerts.keys());
  const first = !loaded;
  loaded = true;
  store.positions = keepFresh(
    store.positions,
    new Map(positions.items.map((p) => [p.supervisee, p])),
    changedPositions,
    asked,
  );
  store.alerts = keepFresh(
    store.alerts,
    new Map([...open.items, ...acknowledged.items, ...still].map((a) => [a.id, a])),
    changedAlerts,
    asked,
  );
  emit("positions");
  emit("alerts");
  // Alerts raised while the feed was down get the same alarm as live ones.
  for (const a of open.items) if (!first && !known.has(a.id)) emit("raised", a);
}

/** The reloaded entries, except those the feed changed since the reload was asked for. */
function keepFresh<K, V>(
  current: Map<K, V>,
  reloaded: Map<K, V>,
  changed: Map<K, number>,
  asked: number,
): Map<K, V> {
  for (const [key, at] of changed) {
    if (at <= asked) {
      changed.delete(key);
      continue;
    }
    const value = current.get(key);
    if (value === undefined) reloaded.delete(key);
    else reloaded.set(key, value);
  }
  return reloaded;
}

export function applyFeed(message: FeedMessage): void {
  if (message.kind === "positions") {
    for (const p of message.items) {
      const seen = store.positions.get(p.supervisee);
      if (!seen || seen.ts <= p.ts) store.positions.set(p.supervisee, p);
      changedPositions.set(p.supervisee, ++changes);
    }
    emit("positions");
  } else if (message.kind === "alert") {
    const before = store.alerts.get(message.alert.id);
    putAlert(message.alert);
    // A breach back after its alert was resolved reopens the case: as loud as a new one.
    const reopened = message.event === "reopened" && message.alert.status === "open";
    if (message.event === "raised" || (reopened && before?.status !== "open")) {
      emit("raised", message.alert);
    }
  }
}

/** Record an alert's new state (from the feed or from this console's own action). */
export function putAlert(alert: Alert): void {
  changedAlerts.set(alert.id, ++changes);
  if (alert.status === "resolved" && !stillInBreach(alert)) store.alerts.delete(alert.id);
  else store.alerts.set(alert.id, alert);
  emit("alerts");
  emit("positions"); // an open alert changes how the person is drawn
}

// How an open alert of each type draws its person; types not named here leave the feed's
// state alone.
const ALERT_STATE: Record<string, string> = {
  sos: "sos",
  strap_tamper: "tamper",
  jurisdiction_exit: "breach",
  exclusion_enter: "breach",
  curfew_breach: "breach",
  engine_fault: "unknown",
  device_offline: "offline",
  no_fix: "offline",
  power_off: "offline",
  low_battery: "low_battery",
};
export const SEVERITY_RANK: Record<string, number> = { critical: 0, high: 1, normal: 2, low: 3 };

/** A breach the service still sees: the person is still outside (or in the zone). */
export function inBreach(a: Alert): boolean {
  return a.active && ALERT_STATE[a.type] === "breach";
}

/** A breach resolved while still going on (仍在越界): shown until it ends. */
export function stillInBreach(a: Alert): boolean {
  return a.status === "resolved" && inBreach(a);
}

// Map states, worst first: what decides between the feed's state and an alert's.
export const STATES = [
  "sos",
  "tamper",
  "breach",
  "still_breach",
  "outside",
  "offline",
  "low_battery",
  "uncertain",
  "unknown",
  "ok",
] as const;

/** The map colour of a person: the worse of the feed's state and the state of their most
 * severe alert not yet resolved, so nobody with an open alert is drawn as OK. A breach
 * whose alert was resolved while it goes on is drawn as such (仍在越界), unless another
 * alert still waits to be worked. */
export function mapState(p: Position): string {
  let worst: Alert | null = null;
  for (const a of store.alerts.values()) {
    if (a.supervisee !== p.supervisee || !(a.type in ALERT_STATE)) continue;
    if (!worst || rank(a) < rank(worst)) worst = a;
  }
  if (!worst) return p.state;
  const alerted = stillInBreach(worst) ? "still_breach" : ALERT_STATE[worst.type];
  // The feed's breach is this same one, already worked.
  if (alerted === "still_breach" && p.state === "breach") return alerted;
  return stateRank(alerted) < stateRank(p.state) ? alerted : p.state;
}

function rank(a: Alert): number {
  return (stillInBreach(a) ? 10 : 0) + (SEVERITY_RANK[a.severity] ?? 9);
}

function stateRank(state: string): number {
  const i = (STATES as readonly string[]).indexOf(state);
  return i < 0 ? STATES.length : i;
}
