"""Customers who buy without joining the programme: their orders and refunds, recorded so
the dashboard can compare members with non-members (participation, retention, CLV)."""
