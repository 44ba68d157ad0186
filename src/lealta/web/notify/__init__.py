"""Pages of notifications: the cockpit inbox, the unsubscribe link and the console's
templates page."""
