// 定位签到 in the person file: the last week's check-ins day by day — each one's time and
// whether it was answered, missed (and why) or still open — and the rate answered.

import { fill, h } from "./dom";
import { locale, t, term } from "./i18n";
import type { Checkin, CheckinCalendar } from "./types";

const MARK = { answered: "✓", missed: "✗", pending: "…" } as const;

export function checkinCalendar(calendar: CheckinCalendar): HTMLElement {
  const el = h("div", { class: "checkins" });
  if (!calendar.items.length) {
    fill(el, h("p", { class: "muted" }, t("checkin.none")));
    return el;
  }
  const days = new Map<string, Checkin[]>();
  for (const c of calendar.items) {
    const day = new Date(c.due_at).toLocaleDateString(locale(), {
      month: "numeric",
      day: "numeric",
      weekday: "short",
    });
    days.set(day, [...(days.get(day) ?? []), c]);
  }
  fill(
    el,
    h(
      "p",
      { class: "rate" },
      calendar.rate === null
        ? t("checkin.noRate")
        : t("checkin.rate", {
            pct: Math.round(calendar.rate * 100),
            answered: calendar.answered,
            missed: calendar.missed,
          }),
    ),
    h(
      "table",
      { class: "calendar" },
      [...days].map(([day, items]) =>
        h(
          "tr",
          {},
          h("th", {}, day),
          h(
            "td",
            {},
            [...items].reverse().map((c) =>
              h(
                "span",
                {
                  class: `checkin ${c.status}`,
                  "data-checkin-id": c.id,
                  title: c.reason
                    ? term("checkinReason", c.reason)
                    : term("checkinStatus", c.status),
                },
                `${new Date(c.due_at).toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit", hour12: false })} ${MARK[c.status]}`,
              ),
            ),
          ),
        ),
      ),
    ),
  );
  return el;
}
