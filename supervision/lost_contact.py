"""Lost contact (脱离监管, 社区矫正法 Art. 30): what its length leads to, as city justice
bureaus publish it: up to 10 days 训诫 (reprimand), over 10 days 警告 (warning), over a
month a proposal to revoke. The case record shows the duration and this consequence."""

from __future__ import annotations

DAY_MS = 86_400_000


def consequence(duration_ms: int) -> tuple[str, str]:
    """(code, 中文) for a lost-contact episode of this length."""
    days = duration_ms / DAY_MS
    if days > 30:
        return "revocation_proposal", "提请撤销缓刑、假释或暂予监外执行"
    if days > 10:
        return "warning", "警告"
    return "reprimand", "训诫"


def escalate(reprimands: int, warnings: int) -> str | None:
    """Repeated sanctions: two 训诫 make a 警告, two 警告 a revocation proposal."""
    if warnings >= 2:
        return "revocation_proposal"
    if reprimands >= 2:
        return "warning"
    return None
