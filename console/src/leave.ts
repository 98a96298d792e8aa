// 外出 (leave), for every role: who is away now (在外), who leaves soon (即将外出), who has
// not reported back (逾期未销假) and what waits for a decision (待审批), each with its
// approval chain — applied for by whom, which level must decide, decided by whom, reported
// back when. Officers and supervisors also apply, approve, refuse and record 销假 here; the
// API refuses those to every other role, so the buttons' absence is only a convenience.

import { api, problems } from "./api";
import { fill, h, select } from "./dom";
import { formatTime, t, term } from "./i18n";
import { personName, store } from "./store";
import type { Leave } from "./types";
import { localInput, onSubmit, showError, toast } from "./ui";

const LISTS = ["active", "upcoming", "overdue", "requested"] as const;
type List = (typeof LISTS)[number];

export class LeaveView {
  readonly el = h("div", { class: "leave-view" });
  private readonly lists = h("section", { class: "leave-lists" });

  constructor(private readonly openPerson: (id: string) => void) {
    const can = store.session?.can.leave;
    fill(
      this.el,
      this.lists,
      h(
        "aside",
        { class: "side" },
        can
          ? leaveForm(() => void this.load())
          : h("p", { class: "muted readonly-note" }, t("leave.readonly")),
      ),
    );
  }

  show(): void {
    void this.load();
  }

  private async load(): Promise<void> {
    try {
      const found = await Promise.all(
        LISTS.map((status) =>
          api<{ items: Leave[] }>("/leaves", { query: { status, limit: "500" } }),
        ),
      );
      fill(
        this.lists,
        LISTS.map((list, i) => this.section(list, found[i].items)),
      );
    } catch (error) {
      showError(error);
    }
  }

  private section(list: List, items: Leave[]): HTMLElement {
    return h(
      "section",
      { class: `leave-section list-${list}`, "data-list": list },
      h("h2", {}, `${t(`leaves.${list}`)} `, h("span", { class: "count" }, String(items.length))),
      items.length
        ? h(
            "ul",
            { class: "leave-rows" },
            items.map((l) => this.row(l)),
          )
        : h("p", { class: "muted" }, t("leaves.none")),
    );
  }

  private row(l: Leave): HTMLElement {
    return h(
      "li",
      { class: "leave-row", "data-leave-id": l.id, "data-supervisee": l.supervisee },
      h(
        "div",
        { class: "line" },
        h(
          "button",
          { type: "button", class: "link who", onclick: () => this.openPerson(l.supervisee) },
          `${personName(l.supervisee)} · ${l.supervisee}`,
        ),
        h("span", { class: "tag" }, term("leaveKind", l.kind)),
        l.overdue ? h("span", { class: "tag warn" }, t("leave.overdue")) : null,
      ),
      leaveSummary(l),
      approvalChain(l),
      leaveActions(l, () => void this.load()),
    );
  }
}

/** When, where to and why, with the rule check's warnings. */
export function leaveSummary(l: Leave): HTMLElement {
  return h(
    "div",
    { class: "leave-summary" },
    h(
      "div",
      {},
      `${formatTime(l.from)} — ${formatTime(l.to)} · ${t("leaves.days", { n: l.days })}`,
    ),
    l.destinations.length
      ? h("div", {}, `${t("leave.destinations")}：${l.destinations.map(zoneName).join("、")}`)
      : null,
    l.reason ? h("div", { class: "muted" }, `${t("leave.reason")}：${l.reason}`) : null,
    l.warnings.length ? h("div", { class: "warn" }, problems(l.warnings)) : null,
  );
}

/** Who applied, which level decides, who decided (or that it still waits), and 销假. */
export function approvalChain(l: Leave): HTMLElement {
  const step = (what: string, who: string | null, at: string | null, cls = ""): HTMLElement =>
    h(
      "li",
      { class: cls },
      h("span", { class: "step" }, what),
      who ? ` ${who}` : "",
      at ? h("span", { class: "muted" }, ` ${formatTime(at)}`) : null,
    );
  const steps: HTMLElement[] = [
    l.applied_by
      ? step(t("chain.applied"), l.applied_by, l.created_at)
      : step(t("chain.loaded"), null, l.created_at),
  ];
  if (l.level) steps.push(step(t("chain.needs", { level: term("office", l.level) }), null, null));
  if (l.status === "requested") steps.push(step(t("chain.waiting"), null, null, "waiting"));
  else if (l.status === "approved")
    steps.push(step(t("chain.approved"), l.approved_by, l.decided_at, "approved"));
  else if (l.status === "refused")
    steps.push(
      step(t("chain.refused"), l.refused_by, l.decided_at, "refused"),
      h("li", { class: "muted" }, l.refusal_reason ?? ""),
    );
  else steps.push(step(term("leave", l.status), null, l.decided_at));
  if (l.returned_at) steps.push(step(t("chain.returned"), null, l.returned_at, "returned"));
  return h("ol", { class: "chain", "aria-label": t("chain.title") }, steps);
}

/** Approve / refuse a request, report back (销假) from approved leave: for the roles that
 * may, nothing for the others. `after` runs once the change is made. */
export function leaveActions(l: Leave, after: () => void): HTMLElement | null {
  if (!store.session?.can.leave) return null;
  const post = async (path: string, body?: unknown): Promise<void> => {
    try {
      await api(`/leaves/${encodeURIComponent(l.id)}/${path}`, { method: "POST", body });
      after();
    } catch (error) {
      showError(error);
    }
  };
  const act = (cls: string, label: string, run: () => void): HTMLElement =>
    h("button", { type: "button", class: cls, onclick: run }, label);
  const refuse = (): void => {
    const reason = window.prompt(t("leave.refuseReason"))?.trim();
    if (reason) void post("refuse", { reason });
  };
  const buttons = [
    l.status === "requested"
      ? act("approve", t("leave.approveBtn"), () => void post("approve", {}))
      : null,
    l.status === "requested" ? act("refuse", t("leave.refuseBtn"), refuse) : null,
    l.status === "approved" && !l.returned_at && Date.parse(l.from) <= Date.now()
      ? act("return", t("person.returnBtn"), () => void post("return"))
      : null,
  ];
  return buttons.some(Boolean) ? h("div", { class: "actions" }, buttons) : null;
}

function zoneName(id: string): string {
  return store.zones.find((z) => z.properties.id === id)?.properties.name || id;
}

function leaveForm(done: () => void): HTMLElement {
  const person = select(
    "supervisee",
    [...store.people.keys()],
    (id) => `${store.people.get(id)?.name || id} (${id})`,
  );
  const now = new Date();
  const from = h("input", {
    type: "datetime-local",
    name: "from",
    value: localInput(now),
    required: true,
  });
  const to = h("input", {
    type: "datetime-local",
    name: "to",
    value: localInput(new Date(now.getTime() + 3 * 86400_000)),
    required: true,
  });
  const destinations = h(
    "select",
    { name: "destinations", multiple: true, size: 5 },
    store.zones.map((z) =>
      h(
        "option",
        { value: z.properties.id },
        `${z.properties.name || z.properties.id} (${term("kind", z.properties.kind)})`,
      ),
    ),
  );
  const reason = h("input", { name: "reason" });
  const approve = h("input", { type: "checkbox", name: "approve" });
  const message = h("p", { class: "error", role: "alert" });
  const submit = async (): Promise<void> => {
    message.textContent = "";
    try {
      const leave = await api<Leave>(`/supervisees/${encodeURIComponent(person.value)}/leaves`, {
        method: "POST",
        body: {
          from: new Date(from.value).toISOString(),
          to: new Date(to.value).toISOString(),
          destinations: [...destinations.selectedOptions].map((o) => o.value),
          reason: reason.value,
          approve: approve.checked,
        },
      });
      toast(t("leave.ok", { status: term("leave", leave.status) }));
      // The rule check's warnings (short notice, two-month total) stay on the form.
      message.textContent = problems(leave.warnings);
      done();
    } catch (error) {
      message.textContent = error instanceof Error ? error.message : String(error);
    }
  };
  return h(
    "form",
    { class: "card leave", onsubmit: onSubmit(submit) },
    h("h3", {}, t("leave.title")),
    h("label", {}, t("leave.person"), " ", person),
    h("label", {}, t("leave.from"), " ", from),
    h("label", {}, t("leave.to"), " ", to),
    h("label", {}, t("leave.destinations"), " ", destinations),
    h("label", {}, t("leave.reason"), " ", reason),
    h("label", {}, approve, " ", t("leave.approve")),
    message,
    h("button", { type: "submit", class: "primary" }, t("leave.submit")),
  );
}
