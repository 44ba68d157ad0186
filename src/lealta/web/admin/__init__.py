"""The admin console: sign-in, roles, and the pages of the marketing and support teams."""
