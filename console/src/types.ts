// Shapes of the /api/v1 responses the console reads (see the OpenAPI at /docs).

import type { Geometry } from "geojson";

export interface Session {
  subject: string;
  role: "operator" | "officer" | "supervisor" | "auditor";
  office: string | null;
  can: {
    work_alerts: boolean;
    manage: boolean;
    leave: boolean;
    suspend: boolean;
    approve_suspension: boolean;
  };
  map: {
    tiles: string | null;
    tiles_crs: "wgs84" | "gcj02";
    subdomains: string;
    attribution: string;
  };
}

export interface Alert {
  id: number;
  type: string;
  supervisee: string;
  device: string;
  ts: string;
  status: "open" | "acknowledged" | "resolved";
  late: boolean;
  active: boolean;
  raised_at: string;
  cleared_at: string | null;
  severity: string;
  escalation: number;
  disposition: string | null;
  reason: string | null;
  note: string | null;
  detail: Record<string, unknown>;
  /** While a suspension window holds it: not delivered nor escalated until `until`. */
  held?: Held | null;
}

export interface Held {
  suspension: string;
  reason: string;
  reason_zh: string;
  reason_text: string;
  until: string;
}

/** A suspension window (暂停告警). */
export interface Suspension {
  id: string;
  supervisee: string;
  types: string[];
  reason: string;
  reason_text: string;
  from: string;
  to: string;
  status: "requested" | "approved" | "refused" | "revoked";
  in_force: boolean;
  requested_by: string;
  approved_by: string | null;
  refused_by: string | null;
  refusal_reason: string | null;
  revoked_by: string | null;
  revoked_at: string | null;
  revoke_reason: string | null;
}

/** A step of an alert's timeline (GET /alerts/{id}). */
export interface AlertEvent {
  at: string;
  actor: string;
  action: string;
  detail: Record<string, unknown>;
}

export interface Position {
  supervisee: string;
  device: string | null;
  ts: string;
  lat: number;
  lon: number;
  acc: number | null;
  batt: number | null;
  state: string;
}

export interface Window {
  days: number[];
  from: string;
  to: string;
}

export interface ZoneFeature {
  type: "Feature";
  geometry: Geometry;
  properties: {
    id: string;
    kind: "jurisdiction" | "exclusion" | "home";
    name: string;
    crs: string;
    schedule: Window[];
    radius: number | null;
  };
}

export interface Supervisee {
  id: string;
  name: string;
  office: string | null;
  officer: string | null;
  level: string;
  jurisdiction: string[];
  exclusion: string[];
  home: string | null;
  /** A zone id or a place: co-workers there are no gathering (聚集). */
  workplace?: string | { lat: number; lon: number; radius_m: number; name: string } | null;
  term_start: string | null;
  term_end: string | null;
  status: string;
  devices: string[];
}

export interface Officer {
  id: string;
  name: string;
  office: string | null;
  phone: string | null;
  email: string | null;
  role: string;
}

export interface Device {
  id: string;
  kind: string;
  model: string | null;
  supervisee: string | null;
  since: string | null;
}

/** A rule check's finding, in both languages. */
export interface Problem {
  code: string;
  message: string;
  message_zh: string;
}

export interface Leave {
  id: string;
  supervisee: string;
  kind: "leave" | "permit";
  from: string;
  to: string;
  destinations: string[];
  reason: string;
  status: string;
  days: number;
  level: string | null;
  warnings: Problem[];
  applied_by: string | null;
  approved_by: string | null;
  refused_by: string | null;
  refusal_reason: string | null;
  decided_at: string | null;
  returned_at: string | null;
  overdue: boolean;
  created_at: string;
}

export interface MonitoringOrder {
  id: number;
  ground_zh: string;
  ground: string;
  starts_on: string;
  current_end: string;
  active: boolean;
  days_left: number | null;
  end_reason: string | null;
}

/** A person's month in the monthly assessment (每月计分考评). */
export interface Assessment {
  month: string;
  base: number;
  deductions: number;
  score: number;
  violations: {
    alert: number;
    type: string;
    name_zh: string;
    occurred_at: string;
    points: number;
  }[];
}

export interface TrackFix {
  type: "Feature";
  geometry: { type: "Point"; coordinates: [number, number] };
  properties: {
    ts: string;
    device: string;
    seq: number;
    acc: number | null;
    batt: number | null;
    quality: string[];
    zone_state: string | null;
  };
}

/** What the live feed (/api/v1/feed) sends. */
export type FeedMessage =
  | { kind: "hello"; subject: string; role: string }
  | { kind: "positions"; items: Position[] }
  | { kind: "alert"; event: string; alert: Alert };

/** 立即定位: a request and each device's answer (api/routes/locate.py). */
export interface LocateDevice {
  device: string;
  kind: "tag" | "phone";
  asked: boolean;
  via: "downlink" | "owntracks" | null;
  note: string | null;
  command: string | null;
  command_status: "queued" | "delivered_to_broker" | "acknowledged_by_device" | null;
  answer: { ts: string; lat: number; lon: number; acc: number | null; answered_at: string } | null;
}

export interface LocateRequest {
  id: number;
  supervisee: string;
  alert: number | null;
  requested_by: string;
  requested_at: string;
  answer_until: string;
  devices: LocateDevice[];
}

/** 定位签到 (api/routes/checkins.py). */
export interface Checkin {
  id: number;
  supervisee: string;
  due_at: string;
  deadline_at: string;
  kind: "fixed" | "random";
  face: boolean;
  sent_via: string[];
  status: "pending" | "answered" | "missed";
  reason: string | null;
  fix: Record<string, unknown> | null;
  face_verdict: "pass" | "fail" | null;
  alert: number | null;
}

export interface CheckinCalendar {
  items: Checkin[];
  answered: number;
  missed: number;
  pending: number;
  rate: number | null;
}

/** A no-contact order (禁止接触): every two of `people` stay `distance_m` apart. */
export interface NoContactOrder {
  id: string;
  people: string[];
  distance_m: number;
  confirm_s: number;
  updated_at: string;
}

/** A protected person (被保护人): their phone, never where they are. */
export interface ProtectedPerson {
  id: string;
  supervisee: string;
  name: string | null;
  device: string;
  owntracks: string | null;
  osmand: string | null;
  distance_m: number;
  confirm_s: number;
  sms: string | null;
  updated_at: string;
}
