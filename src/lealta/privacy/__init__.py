"""GDPR: erasure, retention of inactive members, data export and transparency."""
