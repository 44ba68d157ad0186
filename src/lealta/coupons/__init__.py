"""Coupons: unique codes, cart validation, redemption at checkout, rollback and expiry."""
