"""Staff: the admin console's users, their roles, passwords and sessions."""
