"""Server-rendered pages: the admin console and the member cockpit."""
