"""Gamification: badges, challenges, streaks and leaderboards."""
