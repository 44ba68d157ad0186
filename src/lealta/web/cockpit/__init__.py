"""The member cockpit at ``/me``: magic-link sign-in and the member's own pages."""
