"""Members: the CRM core (profile, attributes, tags, consent)."""
