// The /api/v1 client: bearer token from sessionStorage, errors in the user's language.

import { currentLang } from "./i18n";
import type { Problem } from "./types";

const TOKEN = "fencewatch.token";
export const API = "/api/v1";

export function token(): string | null {
  return sessionStorage.getItem(TOKEN);
}

export function setToken(value: string | null): void {
  if (value === null) sessionStorage.removeItem(TOKEN);
  else sessionStorage.setItem(TOKEN, value);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly raw: string,
    readonly detail: unknown,
  ) {
    super(explain(raw, detail));
  }
}

type Query = Record<string, string | undefined>;

export async function api<T>(
  path: string,
  options: { method?: string; body?: unknown; query?: Query } = {},
): Promise<T> {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) params.set(k, v);
  const url = `${API}${path}${params.size ? `?${params}` : ""}`;
  const headers: Record<string, string> = { Authorization: `Bearer ${token() ?? ""}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method: options.method ?? "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 204) return undefined as T;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new ApiError(
      response.status,
      String(data.error ?? response.statusText),
      data.detail,
    );
    if (response.status === 401) window.dispatchEvent(new CustomEvent("fencewatch:logout"));
    throw error;
  }
  return data as T;
}

/** Fetch a file the API answers as an attachment (an evidence bundle) and hand it to the
 * browser as a download under the name the API gives; returns that name. */
export async function download(path: string, query: Query = {}): Promise<string> {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, v);
  const url = `${API}${path}${params.size ? `?${params}` : ""}`;
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token() ?? ""}` } });
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    if (response.status === 401) window.dispatchEvent(new CustomEvent("fencewatch:logout"));
    throw new ApiError(response.status, String(data.error ?? response.statusText), data.detail);
  }
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const named = disposition.match(/filename\*=UTF-8''([^;]+)/);
  const name = named ? decodeURIComponent(named[1]) : "evidence.zip";
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  // The browser has taken the file once the click is handled; the object URL can go.
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  return name;
}

// The numbers of a request and how the API bounds them, for its refusals.
const FIELDS: Record<string, string> = { distance_m: "距离（米）", confirm_s: "持续时间（秒）" };
const BOUNDS: Record<string, string> = {
  "greater than": "大于",
  "greater than or equal to": "不小于",
  "less than": "小于",
  "less than or equal to": "不超过",
};

// The API explains refusals in English; operators read Chinese. Known messages are put in
// plain Chinese here, anything else is shown as the API wrote it.
const PLAIN: [RegExp, (m: RegExpMatchArray) => string][] = [
  [/the leave must end after it starts/, () => "返回期限必须晚于外出开始时间"],
  [/destination zone '([^']+)' does not exist/, (m) => `目的地区域 ${m[1]} 不存在`],
  [/(\w+) zone '([^']+)' does not exist/, (m) => `区域 ${m[2]} 不存在`],
  [/zone '([^']+)' is a (\w+) zone and cannot be used as (\w+)/, (m) => `区域 ${m[1]} 的类型不符`],
  [/zone '([^']+)' is still used by (.*)/, (m) => `区域 ${m[1]} 仍被使用：${m[2]}`],
  [/auditor tokens are read-only/, () => "检察监督账号只读，不能修改任何内容"],
  [/(\w+) tokens may not (.*)/, () => "当前账号无此操作权限"],
  [/only an alert that is (.*) can be (\w+)/, () => "该告警已被他人处理，请刷新后查看"],
  [/still in progress: a false alarm needs a reason/, () => "本人仍在越界：判为误报须选择原因"],
  [
    /still in progress: (\S+) is still outside/,
    (m) => `${m[1]} 仍在越界，尚未返回：请确认后再处置`,
  ],
  [/leave '([^']+)' was already reported back/, () => "该外出已销假"],
  [
    /the suspension cannot be: (.*)/,
    (m) =>
      m[1]
        .split("; ")
        .map((p) => p.split(" — ")[1] ?? p)
        .join("；"),
  ],
  [/approved by someone other than who asked/, () => "暂停告警须由申请人以外的人批准"],
  [/suspension '([^']+)' is (\w+)/, () => "该暂停告警已被处理，请刷新后查看"],
  [/leave '([^']+)' is (\w+), not approved/, () => "该外出未获批准，不能销假"],
  [
    /no-contact order '([^']+)' not found/,
    (m) => `禁止接触令 ${m[1]} 不存在或已解除（或不在本单位管辖范围）`,
  ],
  [
    /protected person '([^']+)' not found/,
    (m) => `被保护人 ${m[1]} 不存在或已解除（或不在本单位管辖范围）`,
  ],
  [
    /no such supervisee '([^']+)' \(or outside your offices\)/,
    (m) => `社区矫正对象 ${m[1]} 不存在（或不在本单位管辖范围）`,
  ],
  [/people lists someone twice/, () => "同一人不能在禁止接触令中重复列出"],
  [
    /phone '([^']+)' is \(or reports as\) a supervisee's device/,
    (m) => `手机 ${m[1]} 是（或上报为）社区矫正对象的设备，不能登记为被保护人的手机`,
  ],
  [
    /phone '([^']+)' \(or its OwnTracks\/OsmAnd id\) is another protected person's/,
    (m) => `手机 ${m[1]}（或其上报标识）已登记给另一位被保护人`,
  ],
  [
    /the phone reports by OwnTracks or by OsmAnd/,
    () => "手机须填写 OwnTracks 或 OsmAnd 上报标识之一",
  ],
  [/body\.device\.owntracks: String should match/, () => "OwnTracks 上报标识须为“用户/设备”格式"],
  [
    /body\.device\.osmand: String should match/,
    () => "Traccar Client 设备标识须为 1–64 个英文字母、数字或符号",
  ],
  [/body\.device\.id: String should match/, () => "手机设备编号须为 1–200 个字符，不含空格"],
  [/body\.sms: String should match/, () => "短信预警号码须为 5–20 位数字，可带 +"],
  [/body\.reason: String should have at least 1 character/, () => "请填写原因"],
  [
    /body\.(distance_m|confirm_s): Input should be (greater than or equal to|greater than|less than or equal to|less than) ([\d.]+)/,
    (m) => `${FIELDS[m[1]]}须${BOUNDS[m[2]]} ${m[3]}`,
  ],
  [/(.*) not found \(or outside your offices\)/, (m) => `未找到：${m[1]}（或不在本单位管辖范围）`],
  [/a Point zone needs a positive radius/, () => "圆形区域需要大于 0 的半径（米）"],
  [/schedule times must be HH:MM/, () => "时段时间格式应为 时:分（HH:MM）"],
  [/schedule days must be ISO weekdays/, () => "时段须选择星期一至星期日中的日期"],
  [/the geometry has no area/, () => "区域图形没有面积"],
  [/coordinates out of range/, () => "坐标超出范围（是否把经纬度顺序弄反了？）"],
  [/expected a GeoJSON FeatureCollection/, () => "文件不是 GeoJSON FeatureCollection"],
  [/the feature has no id/, () => "有要素缺少编号（properties.id、id 或 adcode）"],
  [/kind must be one of/, () => "区域类型须为 执行地 / 禁入区域 / 居住地"],
  [/String should have at least 1 character/, () => "必填项不能为空"],
  [/missing bearer token|unknown token/, () => "令牌无效，请重新登录"],
  [/token revoked/, () => "令牌已吊销，请重新登录"],
  [/token expired/, () => "令牌已过期，请重新登录"],
];

/** A rule check's refusals in the user's language (the API gives both); else the error. */
export function explain(raw: string, detail?: unknown): string {
  const refusals = (detail as { refusals?: Problem[] } | null)?.refusals;
  if (Array.isArray(refusals) && refusals.length) return problems(refusals);
  if (currentLang() === "en") return raw;
  for (const [pattern, say] of PLAIN) {
    const match = raw.match(pattern);
    if (match) return say(match);
  }
  return raw;
}

export function problems(list: Problem[]): string {
  return list.map((p) => (currentLang() === "zh" ? p.message_zh : p.message)).join("；");
}
