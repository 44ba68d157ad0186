"""Paid plans: fee, billing period, trial, benefits (a tier floor, a points multiplier,
perks), renewal, cancellation at period end and grace on a failed payment, billed through a
payment provider's signed webhooks."""
