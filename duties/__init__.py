"""Scheduled duties (duties.scheduler): reminders before orders, terms and leave end
(duties.reminders), the 25th-of-month reports (duties.reports), and the monthly assessment
the API reads (duties.assessment)."""
