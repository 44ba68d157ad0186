"""Messages to people: email over SMTP (more channels come with the workflows issue)."""
